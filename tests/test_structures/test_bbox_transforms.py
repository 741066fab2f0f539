"""Box conversions, flips, scaling and roi packing.

Every public function here is one of mmdetection 3.x's ``mmdet/structures/bbox/transforms.py``
(users import them), so each has a hand-computed expectation.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmdet_lite.structures.bbox import (bbox2distance, bbox2roi, bbox_cxcywh_to_xyxy, bbox_flip,
                                        bbox_mapping_back, bbox_project, bbox_rescale,
                                        bbox_xyxy_to_cxcywh, distance2bbox, empty_box_as,
                                        get_box_tensor, get_box_wh, roi2bbox, scale_boxes)

BOX = torch.tensor([[1., 2., 4., 6.]])
IMG_SHAPE = (10, 12)  # (h, w)


def test_xyxy_cxcywh_values_and_round_trip():
    xyxy = torch.tensor([[0., 0., 10., 20.], [1., 2., 4., 6.]])
    cxcywh = bbox_xyxy_to_cxcywh(xyxy)
    torch.testing.assert_close(cxcywh, torch.tensor([[5., 10., 10., 20.], [2.5, 4., 3., 4.]]))
    torch.testing.assert_close(bbox_cxcywh_to_xyxy(cxcywh), xyxy)
    batched = torch.rand(2, 5, 4)
    torch.testing.assert_close(bbox_xyxy_to_cxcywh(bbox_cxcywh_to_xyxy(batched)), batched)


@pytest.mark.parametrize('direction,expected', [
    ('horizontal', [8., 2., 11., 6.]),  # x1' = w - x2 = 12 - 4, x2' = 12 - 1
    ('vertical', [1., 4., 4., 8.]),  # y1' = h - y2 = 10 - 6
    ('diagonal', [8., 4., 11., 8.]),
])
def test_flip_directions_tensor_and_numpy(direction, expected):
    torch.testing.assert_close(bbox_flip(BOX, IMG_SHAPE, direction), torch.tensor([expected]))
    flipped_np = bbox_flip(BOX.numpy(), IMG_SHAPE, direction)
    assert isinstance(flipped_np, np.ndarray)
    np.testing.assert_allclose(flipped_np, [expected])
    # flipping twice is the identity and the input is untouched
    torch.testing.assert_close(bbox_flip(bbox_flip(BOX, IMG_SHAPE, direction), IMG_SHAPE,
                                         direction), BOX)
    assert BOX.tolist() == [[1., 2., 4., 6.]]


def test_flip_handles_several_boxes_per_row_and_rejects_bad_direction():
    two = torch.tensor([[1., 2., 4., 6., 0., 0., 12., 10.]])
    expected = torch.tensor([[8., 2., 11., 6., 0., 0., 12., 10.]])
    torch.testing.assert_close(bbox_flip(two, IMG_SHAPE, 'horizontal'), expected)
    with pytest.raises(ValueError, match='direction'):
        bbox_flip(BOX, IMG_SHAPE, 'sideways')


def test_bbox_rescale_about_centre_for_boxes_and_rois():
    torch.testing.assert_close(bbox_rescale(torch.tensor([[0., 0., 10., 10.]]), 2.0),
                               torch.tensor([[-5., -5., 15., 15.]]))
    torch.testing.assert_close(bbox_rescale(torch.tensor([[1., 0., 0., 10., 10.]]), 0.5),
                               torch.tensor([[1., 2.5, 2.5, 7.5, 7.5]]))
    with pytest.raises(ValueError, match='bboxes'):
        bbox_rescale(torch.zeros(2, 3))


def test_scale_boxes_uses_w_then_h_factor():
    torch.testing.assert_close(scale_boxes(torch.tensor([[1., 2., 3., 4.]]), (2.0, 3.0)),
                               torch.tensor([[2., 6., 6., 12.]]))
    scaled = scale_boxes(np.array([[1., 2., 3., 4.]], np.float32), (2.0, 3.0))
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[2., 6., 6., 12.]])
    with pytest.raises(ValueError, match='scale_factor'):
        scale_boxes(BOX, (1., 2., 3.))


def test_mapping_back_takes_one_two_or_four_scale_factors():
    aug = torch.tensor([[10., 20., 30., 40.]])
    for factor in ((2., 4.), [2., 4., 2., 4.], torch.tensor([2., 4., 2., 4.])):
        torch.testing.assert_close(bbox_mapping_back(aug, (100, 100), factor, flip=False),
                                   torch.tensor([[5., 5., 15., 10.]]))
    torch.testing.assert_close(bbox_mapping_back(aug, (100, 100), 2., flip=False), aug / 2)
    with pytest.raises(ValueError, match='one number, \\(w, h\\) or 4 numbers'):
        bbox_mapping_back(aug, (100, 100), (1., 2., 3.), flip=False)


def test_mapping_back_undoes_resize_and_flip_by_hand():
    # [4, 6, 10, 10] on a 20x24 (h x w) augmented image.
    aug = torch.tensor([[4., 6., 10., 10.]])
    # Not flipped, resized by (w 2, h 0.5): divide x by 2 and y by 0.5.
    torch.testing.assert_close(bbox_mapping_back(aug, (20, 24), (2., .5), flip=False),
                               torch.tensor([[2., 12., 5., 20.]]))
    # Flipped: first unflip (x1 = 24 - 10, x2 = 24 - 4), then divide by 2.
    torch.testing.assert_close(bbox_mapping_back(aug, (20, 24), (2., 2.), flip=True),
                               torch.tensor([[7., 3., 10., 5.]]))
    torch.testing.assert_close(
        bbox_mapping_back(aug, (20, 24), (2., 2.), flip=True, flip_direction='vertical'),
        torch.tensor([[2., 5., 5., 7.]]))  # y1 = 20 - 10, y2 = 20 - 6, then / 2
    # Resized x2 then flipped on a 20x24 image -> back to BOX on the original image.
    aug = bbox_flip(scale_boxes(BOX, (2., 2.)), (20, 24), 'horizontal')
    torch.testing.assert_close(bbox_mapping_back(aug, (20, 24), (2., 2.), flip=True), BOX)


def test_bbox_project_with_translation_homography():
    mat = np.array([[1., 0., 2.], [0., 1., 3.], [0., 0., 1.]], np.float32)
    torch.testing.assert_close(bbox_project(BOX, mat), torch.tensor([[3., 5., 6., 9.]]))
    out = bbox_project(BOX.numpy(), mat, img_shape=(8, 12))
    np.testing.assert_allclose(out, [[3., 5., 6., 8.]])


def test_bbox_project_rotation_and_perspective_by_hand():
    # (x, y) -> (10 - y, x): a quarter turn. BOX's corners (1, 2), (4, 2), (1, 6), (4, 6)
    # go to (8, 1), (8, 4), (4, 1), (4, 4): the hull is [4, 1, 8, 4].
    turn = torch.tensor([[0., -1., 10.], [1., 0., 0.], [0., 0., 1.]])
    torch.testing.assert_close(bbox_project(BOX, turn), torch.tensor([[4., 1., 8., 4.]]))
    # Homogeneous w = 0.5 doubles every coordinate; then clipped to h 10, w 12 (numpy too).
    halve_w = np.diag([1., 1., .5]).astype(np.float32)
    torch.testing.assert_close(bbox_project(BOX, halve_w), torch.tensor([[2., 4., 8., 12.]]))
    clipped = bbox_project(BOX.numpy() * 3 - 4, halve_w, img_shape=IMG_SHAPE)
    assert clipped.dtype == np.float32  # [-1, 2, 8, 14] * 2 = [-2, 4, 16, 28], then clipped
    np.testing.assert_allclose(clipped, [[0., 4., 12., 10.]])


def test_bbox2roi_and_roi2bbox():
    boxes = [torch.tensor([[0., 0., 2., 2.], [1., 1., 3., 3.]]), torch.zeros(0, 4),
             torch.tensor([[5., 5., 6., 6., 0.9]])]  # extra score column is dropped
    rois = bbox2roi(boxes)
    assert rois.shape == (3, 5)
    assert rois[:, 0].tolist() == [0., 0., 2.]
    torch.testing.assert_close(rois[2], torch.tensor([2., 5., 5., 6., 6.]))
    back = roi2bbox(rois)
    # as mmdetection: one entry per batch index present (image 1 has no rois, no entry)
    assert [b.shape[0] for b in back] == [2, 1]
    torch.testing.assert_close(back[0], boxes[0])
    torch.testing.assert_close(back[1], boxes[2][:, :4])
    assert roi2bbox(torch.zeros(0, 5)) == []
    with pytest.raises(TypeError, match='bbox_list'):
        bbox2roi(torch.zeros(2, 4))


def test_box_tensor_helpers():
    assert get_box_tensor(BOX) is BOX
    # mmdetection's box types (BaseBoxes) carry their tensor in ``.tensor``.
    assert get_box_tensor(SimpleNamespace(tensor=BOX)) is BOX
    with pytest.raises(TypeError, match='boxes'):
        get_box_tensor([[0, 0, 1, 1]])
    empty = empty_box_as(BOX.double())
    assert empty.shape == (0, 4) and empty.dtype == torch.float64
    assert empty.device == BOX.device
    w, h = get_box_wh(torch.tensor([[1., 2., 4., 6.], [0., 0., 0., 5.]]))
    assert w.tolist() == [3., 0.] and h.tolist() == [4., 5.]


def test_distance_round_trip():
    points = torch.tensor([[2., 3.]])
    dist = bbox2distance(points, BOX)
    torch.testing.assert_close(dist, torch.tensor([[1., 1., 2., 3.]]))
    torch.testing.assert_close(distance2bbox(points, dist), BOX)
    torch.testing.assert_close(distance2bbox(points, dist * 10, max_shape=IMG_SHAPE),
                               torch.tensor([[0., 0., 12., 10.]]))


def test_distance2bbox_clips_each_image_of_a_batch_to_its_own_shape():
    points = torch.tensor([[5., 5.], [50., 10.]]).expand(2, 2, 2)
    dist = torch.full((2, 2, 4), 20.)  # boxes (-15, -15, 25, 25) and (30, -10, 70, 30)
    shapes = [(30, 40), (100, 60)]  # (h, w) per image
    expected = torch.tensor([[[0., 0., 25., 25.], [30., 0., 40., 30.]],
                             [[0., 0., 25., 25.], [30., 0., 60., 30.]]])
    torch.testing.assert_close(distance2bbox(points, dist, shapes), expected)
    torch.testing.assert_close(distance2bbox(points, dist, torch.tensor(shapes)), expected)
    torch.testing.assert_close(distance2bbox(points[0], dist[0], (30, 40, 3)), expected[0])
    with pytest.raises(ValueError, match='3 image shapes'):
        distance2bbox(points, dist, [(30, 40)] * 3)


def test_bbox2distance_max_dis_clamps_to_zero_and_below_max_dis():
    # Point (2, 3) in BOX: distances (1, 1, 2, 3); max_dis 2.5 - eps 0.1 caps them at 2.4.
    torch.testing.assert_close(bbox2distance(torch.tensor([[2., 3.]]), BOX, max_dis=2.5),
                               torch.tensor([[1., 1., 2., 2.4]]))
    # Point (0, 0) outside BOX: negative left/top distances (-1, -2) are clamped to 0.
    torch.testing.assert_close(
        bbox2distance(torch.tensor([[0., 0.]]), BOX, max_dis=10., eps=0.5),
        torch.tensor([[0., 0., 4., 6.]]))
