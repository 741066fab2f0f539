"""HorizontalBoxes: every geometric method against a plain-tensor formula or hand values."""
import math

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from mmdet_lite.structures.bbox import BaseBoxes, HorizontalBoxes
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks

XYXY = torch.tensor([[1., 2., 4., 6.], [0., 0., 10., 5.], [3., 3., 3.5, 9.]])
IMG_SHAPE = (20, 12)  # (h, w)


def test_construction_modes_and_layouts():
    boxes = HorizontalBoxes(XYXY)
    assert isinstance(boxes, BaseBoxes) and boxes.box_dim == 4
    assert boxes.tensor is not XYXY  # clone=True by default
    torch.testing.assert_close(boxes.tensor, XYXY)
    shared = HorizontalBoxes(XYXY, clone=False)
    assert shared.tensor is XYXY
    cxcywh = torch.tensor([[5., 5., 4., 2.]])
    torch.testing.assert_close(
        HorizontalBoxes(cxcywh, in_mode='cxcywh').tensor, torch.tensor([[3., 4., 7., 6.]]))
    torch.testing.assert_close(HorizontalBoxes(XYXY, in_mode='xyxy').tensor, XYXY)
    # cxcywh round trip against hand values
    torch.testing.assert_close(boxes.cxcywh[0], torch.tensor([2.5, 4., 3., 4.]))
    back = HorizontalBoxes(boxes.cxcywh, in_mode='cxcywh')
    torch.testing.assert_close(back.tensor, XYXY)
    with pytest.raises(ValueError, match='invalid mode'):
        HorizontalBoxes(XYXY, in_mode='xywh')
    numpy_boxes = HorizontalBoxes(XYXY.numpy().astype(np.float64), dtype=torch.float32)
    assert numpy_boxes.dtype == torch.float32


@pytest.mark.parametrize('bad', [torch.zeros(4), torch.zeros(2, 5)])
def test_bad_shape_is_assertion_error(bad):
    with pytest.raises(AssertionError, match='last dimension'):
        HorizontalBoxes(bad)


def test_empty_data():
    assert HorizontalBoxes([]).shape == (0, 4)
    assert HorizontalBoxes(torch.zeros(0)).shape == (0, 4)


def test_measures():
    boxes = HorizontalBoxes(XYXY)
    w = XYXY[:, 2] - XYXY[:, 0]
    h = XYXY[:, 3] - XYXY[:, 1]
    torch.testing.assert_close(boxes.widths, w)
    torch.testing.assert_close(boxes.heights, h)
    torch.testing.assert_close(boxes.areas, w * h)
    torch.testing.assert_close(boxes.centers, (XYXY[:, :2] + XYXY[:, 2:]) / 2)


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_flip(direction):
    img_h, img_w = IMG_SHAPE
    x1, y1, x2, y2 = XYXY.unbind(-1)
    if direction == 'horizontal':
        expected = torch.stack([img_w - x2, y1, img_w - x1, y2], -1)
    elif direction == 'vertical':
        expected = torch.stack([x1, img_h - y2, x2, img_h - y1], -1)
    else:
        expected = torch.stack([img_w - x2, img_h - y2, img_w - x1, img_h - y1], -1)
    boxes = HorizontalBoxes(XYXY)
    assert boxes.flip_(IMG_SHAPE, direction) is None  # in place
    torch.testing.assert_close(boxes.tensor, expected)


def test_flip_bad_direction():
    with pytest.raises(AssertionError, match='direction'):
        HorizontalBoxes(XYXY).flip_(IMG_SHAPE, 'sideways')


def test_translate_rescale_resize():
    boxes = HorizontalBoxes(XYXY)
    boxes.translate_((2., -1.))
    torch.testing.assert_close(boxes.tensor, XYXY + torch.tensor([2., -1., 2., -1.]))

    boxes = HorizontalBoxes(XYXY)
    boxes.rescale_((2., 0.5))
    torch.testing.assert_close(boxes.tensor, XYXY * torch.tensor([2., 0.5, 2., 0.5]))

    boxes = HorizontalBoxes(torch.tensor([[2., 2., 6., 4.]]))  # center (4, 3), w 4, h 2
    boxes.resize_((0.5, 3.))  # w 2, h 6 around the same center
    torch.testing.assert_close(boxes.tensor, torch.tensor([[3., 0., 5., 6.]]))
    with pytest.raises(AssertionError, match='scale_factor'):
        boxes.rescale_((1., 2., 3.))
    with pytest.raises(AssertionError, match='distances'):
        boxes.translate_((1., ))


def test_clip():
    boxes = HorizontalBoxes(torch.tensor([[-3., -1., 15., 25.], [1., 2., 4., 6.]]))
    boxes.clip_(IMG_SHAPE)
    torch.testing.assert_close(boxes.tensor, torch.tensor([[0., 0., 12., 20.], [1., 2., 4., 6.]]))


def test_rotate_90_by_hand():
    # Clockwise 90 degrees on screen (y down) about (cx, cy): (x, y) -> (cx - (y - cy),
    # cy + (x - cx)). Box (1, 2)-(5, 4) about (0, 0): corners map to x in [-4, -2], y in [1, 5].
    boxes = HorizontalBoxes(torch.tensor([[1., 2., 5., 4.]]))
    boxes.rotate_((0., 0.), 90)
    torch.testing.assert_close(boxes.tensor, torch.tensor([[-4., 1., -2., 5.]]), atol=1e-5,
                               rtol=0)
    # about (3, 3): x' = 3 - (y - 3) in [2, 4], y' = 3 + (x - 3) in [1, 5]
    boxes = HorizontalBoxes(torch.tensor([[1., 2., 5., 4.]]))
    boxes.rotate_((3., 3.), 90)
    torch.testing.assert_close(boxes.tensor, torch.tensor([[2., 1., 4., 5.]]), atol=1e-5,
                               rtol=0)


def test_rotate_45_hull():
    # A 2x2 square about its own center, rotated 45 degrees: hull half-size sqrt(2).
    boxes = HorizontalBoxes(torch.tensor([[0., 0., 2., 2.]]))
    boxes.rotate_((1., 1.), 45)
    r = math.sqrt(2)
    torch.testing.assert_close(boxes.tensor, torch.tensor([[1 - r, 1 - r, 1 + r, 1 + r]]))


def test_project_hand_homography():
    # scale x by 2, translate y by 3
    matrix = np.array([[2., 0., 0.], [0., 1., 3.], [0., 0., 1.]])
    boxes = HorizontalBoxes(XYXY)
    boxes.project_(matrix)
    expected = XYXY * torch.tensor([2., 1., 2., 1.]) + torch.tensor([0., 3., 0., 3.])
    torch.testing.assert_close(boxes.tensor, expected)
    # a projective matrix: w = x + 1 divides; box (0,0)-(1,1) corners
    # (0,0)->(0,0), (1,0)->(0.5,0), (0,1)->(0,1), (1,1)->(0.5,0.5)
    proj = torch.tensor([[1., 0., 0.], [0., 1., 0.], [1., 0., 1.]])
    boxes = HorizontalBoxes(torch.tensor([[0., 0., 1., 1.]]))
    boxes.project_(proj)
    torch.testing.assert_close(boxes.tensor, torch.tensor([[0., 0., 0.5, 1.]]))


def test_is_inside():
    boxes = HorizontalBoxes(
        torch.tensor([[-6., -6., -1.5, -1.5], [-2., 1., 3., 4.], [1., 1., 11., 19.],
                      [11., 1., 13., 4.], [1., 1., 12., 20.]]))
    # partly inside: x1 < w, y1 < h, x2 > 0, y2 > 0
    assert boxes.is_inside(IMG_SHAPE).tolist() == [False, True, True, True, True]
    # fully inside: x1 >= 0, y1 >= 0, x2 < w, y2 < h
    assert boxes.is_inside(IMG_SHAPE, all_inside=True).tolist() == [
        False, False, True, False, False]
    # border 2: x1 >= -2, y1 >= -2, x2 < 14, y2 < 22
    assert boxes.is_inside(IMG_SHAPE, all_inside=True, allowed_border=2).tolist() == [
        False, True, True, True, True]
    # border 2: x2 > -2 now holds for the first box
    assert boxes.is_inside(IMG_SHAPE, allowed_border=2).tolist() == [True] * 5


def test_find_inside_points():
    boxes = HorizontalBoxes(torch.tensor([[0., 0., 2., 2.], [1., 1., 5., 5.]]))
    points = torch.tensor([[1., 1.], [3., 3.], [6., 0.]])
    expected = torch.tensor([[True, True], [False, True], [False, False]])
    assert torch.equal(boxes.find_inside_points(points), expected)
    aligned = boxes.find_inside_points(points[:2], is_aligned=True)
    assert aligned.tolist() == [True, True]
    with pytest.raises(AssertionError):
        boxes.find_inside_points(points, is_aligned=True)


def test_overlaps_vs_torchvision():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(6, 2, generator=g) * 20
    b1 = torch.cat([xy, xy + torch.rand(6, 2, generator=g) * 10 + 1], -1)
    xy = torch.rand(4, 2, generator=g) * 20
    b2 = torch.cat([xy, xy + torch.rand(4, 2, generator=g) * 10 + 1], -1)
    ious = HorizontalBoxes.overlaps(HorizontalBoxes(b1), HorizontalBoxes(b2))
    torch.testing.assert_close(ious, box_iou(b1, b2))
    aligned = HorizontalBoxes.overlaps(HorizontalBoxes(b1[:4]), HorizontalBoxes(b2),
                                       is_aligned=True)
    torch.testing.assert_close(aligned, box_iou(b1[:4], b2).diagonal())
    iof = HorizontalBoxes.overlaps(HorizontalBoxes(torch.tensor([[0., 0., 2., 2.]])),
                                   HorizontalBoxes(torch.tensor([[1., 0., 5., 5.]])),
                                   mode='iof')
    torch.testing.assert_close(iof, torch.tensor([[0.5]]))  # 2 / area 4


def test_from_instance_masks_bitmap():
    masks = np.zeros((3, 6, 8), dtype=np.uint8)
    masks[0, 1:3, 2:5] = 1  # rows 1..2, cols 2..4 -> (2, 1, 5, 3)
    masks[1, 5, 7] = 1  # single pixel -> (7, 5, 8, 6)
    boxes = HorizontalBoxes.from_instance_masks(BitmapMasks(masks, 6, 8))
    assert isinstance(boxes, HorizontalBoxes) and boxes.dtype == torch.float32
    torch.testing.assert_close(
        boxes.tensor, torch.tensor([[2., 1., 5., 3.], [7., 5., 8., 6.], [0., 0., 0., 0.]]))


def test_from_instance_masks_polygon():
    polys = [[np.array([1., 2., 5., 2., 3., 7.])],
             [np.array([0., 0., 1., 1., 0., 1.]), np.array([4., 4., 6., 5., 5., 6.])]]
    boxes = HorizontalBoxes.from_instance_masks(PolygonMasks(polys, 10, 10))
    torch.testing.assert_close(boxes.tensor, torch.tensor([[1., 2., 5., 7.], [0., 0., 6., 6.]]))
    with pytest.raises(TypeError, match='masks'):
        HorizontalBoxes.from_instance_masks(np.zeros((1, 3, 3)))


def test_corner_helpers():
    corners = HorizontalBoxes.hbox2corner(torch.tensor([[1., 2., 3., 4.]]))
    torch.testing.assert_close(corners,
                               torch.tensor([[[1., 2.], [3., 2.], [1., 4.], [3., 4.]]]))
    torch.testing.assert_close(HorizontalBoxes.corner2hbox(corners),
                               torch.tensor([[1., 2., 3., 4.]]))
    assert HorizontalBoxes.corner2hbox(torch.zeros(0, 4, 2)).shape == (0, 4)


def test_create_masks_fills_each_box_with_truncated_corners():
    boxes = HorizontalBoxes(torch.tensor([[1.7, 0.2, 3.9, 2.0], [0., 0., 0., 0.]]))
    masks = boxes.create_masks((3, 5))
    expected = np.zeros((2, 3, 5), dtype=np.uint8)
    expected[0, 0:2, 1:3] = 1  # rows [0, 2), columns [1, 3)
    assert (masks.height, masks.width) == (3, 5)
    np.testing.assert_array_equal(masks.masks, expected)
