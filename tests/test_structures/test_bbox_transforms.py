"""Box conversions, flips, scaling and roi packing."""
import numpy as np
import pytest
import torch

from mmdet_lite.structures.bbox import (bbox2distance, bbox2roi, bbox_clip, bbox_cxcywh_to_xyxy,
                                        bbox_flip, bbox_mapping_back, bbox_project, bbox_rescale,
                                        bbox_translate, bbox_xyxy_to_cxcywh, distance2bbox,
                                        empty_box_as, get_box_tensor, get_box_wh, roi2bbox,
                                        scale_boxes)

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


def test_clip_translate_and_mapping_back():
    boxes = torch.tensor([[-3., 2., 15., 11.]])
    torch.testing.assert_close(bbox_clip(boxes, IMG_SHAPE), torch.tensor([[0., 2., 12., 10.]]))
    np.testing.assert_allclose(bbox_clip(boxes.numpy(), IMG_SHAPE), [[0., 2., 12., 10.]])
    torch.testing.assert_close(bbox_translate(BOX, (2, -1)), torch.tensor([[3., 1., 6., 5.]]))
    # resized x2 then flipped on a 20x24 image -> back to BOX on the original image
    aug = bbox_flip(scale_boxes(BOX, (2., 2.)), (20, 24), 'horizontal')
    torch.testing.assert_close(bbox_mapping_back(aug, (20, 24), (2., 2.), flip=True), BOX)


def test_bbox_project_with_translation_homography():
    mat = np.array([[1., 0., 2.], [0., 1., 3.], [0., 0., 1.]], np.float32)
    torch.testing.assert_close(bbox_project(BOX, mat), torch.tensor([[3., 5., 6., 9.]]))
    out = bbox_project(BOX.numpy(), mat, img_shape=(8, 12))
    np.testing.assert_allclose(out, [[3., 5., 6., 8.]])


def test_bbox2roi_and_roi2bbox():
    boxes = [torch.tensor([[0., 0., 2., 2.], [1., 1., 3., 3.]]), torch.zeros(0, 4),
             torch.tensor([[5., 5., 6., 6., 0.9]])]  # extra score column is dropped
    rois = bbox2roi(boxes)
    assert rois.shape == (3, 5)
    assert rois[:, 0].tolist() == [0., 0., 2.]
    torch.testing.assert_close(rois[2], torch.tensor([2., 5., 5., 6., 6.]))
    back = roi2bbox(rois)
    assert [b.shape[0] for b in back] == [2, 0, 1]
    torch.testing.assert_close(back[0], boxes[0])
    assert roi2bbox(torch.zeros(0, 5)) == []
    with pytest.raises(TypeError, match='bbox_list'):
        bbox2roi(torch.zeros(2, 4))


def test_box_tensor_helpers():
    assert get_box_tensor(BOX) is BOX
    with pytest.raises(TypeError, match='boxes'):
        get_box_tensor([[0, 0, 1, 1]])
    assert empty_box_as(BOX).shape == (0, 4)
    w, h = get_box_wh(BOX)
    assert (w.item(), h.item()) == (3., 4.)


def test_distance_round_trip():
    points = torch.tensor([[2., 3.]])
    dist = bbox2distance(points, BOX)
    torch.testing.assert_close(dist, torch.tensor([[1., 1., 2., 3.]]))
    torch.testing.assert_close(distance2bbox(points, dist), BOX)
    torch.testing.assert_close(distance2bbox(points, dist * 10, max_shape=IMG_SHAPE),
                               torch.tensor([[0., 0., 12., 10.]]))
