"""PolygonMasks: the rest of mmdetection's API, and agreement with BitmapMasks.

Polygon vertices are checked against hand-computed coordinates; the same geometric op on
the polygons and on their rasterised bitmap must give the same pixels. A polygon pixel
[j, j + 1) has its centre at j + 0.5, a bitmap pixel at j, so a rotation centre c for the
bitmap is c + 0.5 for the polygons.
"""
import numpy as np
import pytest
import torch

from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks, polygon_area

H, W = 10, 12
SQUARE = [3., 2., 8., 2., 8., 6., 3., 6.]  # pixels rows 2..5, cols 3..7
L_SHAPE = [1., 6., 5., 6., 5., 7., 2., 7., 2., 9., 1., 9.]  # area 4 + 2 = 6


def _masks() -> PolygonMasks:
    return PolygonMasks([[np.array(SQUARE)], [np.array(L_SHAPE)]], H, W)


def test_random_shapes_dtypes_and_seed():
    masks = PolygonMasks.random()
    assert repr(masks) == 'PolygonMasks(num_masks=3, height=32, width=32)'
    assert all(len(obj) == 1 and obj[0].shape == (10, ) for obj in masks.masks)
    assert masks.masks[0][0].dtype == np.float32
    masks = PolygonMasks.random(num_masks=6, height=20, width=40, n_verts=7, dtype=np.float64,
                                rng=0)
    assert (len(masks), masks.height, masks.width) == (6, 20, 40)
    for (poly, ) in masks.masks:
        assert poly.shape == (14, ) and poly.dtype == np.float64
        assert (poly[0::2] >= 0).all() and (poly[0::2] <= 40).all()
        assert (poly[1::2] >= 0).all() and (poly[1::2] <= 20).all()
    # simple (non self-crossing) polygons: shoelace area matches the rasterised area
    raster = masks.to_ndarray().sum((1, 2))
    np.testing.assert_allclose(raster, masks.areas, rtol=0.25, atol=6)
    again = PolygonMasks.random(num_masks=6, height=20, width=40, n_verts=7, dtype=np.float64,
                                rng=0)
    for a, b in zip(masks.masks, again.masks):
        np.testing.assert_array_equal(a[0], b[0])
    ints = PolygonMasks.random(dtype=np.int64, rng=1)
    assert ints.masks[0][0].dtype == np.int64
    assert len(PolygonMasks.random(num_masks=0)) == 0


def test_repr_len_iter_getitem_and_cat():
    masks = _masks()
    assert repr(masks) == f'PolygonMasks(num_masks=2, height={H}, width={W})'
    assert len(masks) == 2 and [len(obj) for obj in masks] == [1, 1]
    first = masks[0]
    assert isinstance(first, PolygonMasks) and len(first) == 1
    np.testing.assert_array_equal(first.masks[0][0], SQUARE)
    np.testing.assert_array_equal(masks[np.array([False, True])].masks[0][0], L_SHAPE)
    np.testing.assert_array_equal(masks[[1, 0]].masks[1][0], SQUARE)
    assert len(masks[1:]) == 1 and len(masks[torch.tensor([0, 1, 0])]) == 3
    merged = PolygonMasks.cat([masks, masks[1:]])
    assert len(merged) == 3 and (merged.height, merged.width) == (H, W)
    np.testing.assert_array_equal(merged.masks[2][0], L_SHAPE)
    with pytest.raises(ValueError, match='empty'):
        PolygonMasks.cat([])
    with pytest.raises(AssertionError):
        PolygonMasks.cat([masks, BitmapMasks([], H, W)])


def test_constructor_errors_are_assertions():
    with pytest.raises(AssertionError):
        PolygonMasks(np.zeros((1, 6)), H, W)
    with pytest.raises(AssertionError):
        PolygonMasks([np.zeros(6)], H, W)  # a polygon where an object's list is expected


def test_areas_get_bboxes_to_bitmap_and_tensor():
    masks = _masks()
    np.testing.assert_allclose(masks.areas, [20., 6.])
    assert masks.areas[1] == polygon_area(np.array(L_SHAPE))
    bitmaps = masks.to_bitmap()
    assert isinstance(bitmaps, BitmapMasks) and (bitmaps.height, bitmaps.width) == (H, W)
    np.testing.assert_array_equal(bitmaps.masks, masks.to_ndarray())
    assert bitmaps.areas.tolist() == [20, 6]
    assert bitmaps.masks[1, 6, 1:5].all() and bitmaps.masks[1, 7:9, 1].all()
    boxes = masks.get_bboxes()
    assert isinstance(boxes, HorizontalBoxes)
    np.testing.assert_array_equal(boxes.numpy(), [[3, 2, 8, 6], [1, 6, 5, 9]])
    # same boxes as the rasterised bitmaps for pixel-aligned polygons
    np.testing.assert_array_equal(bitmaps.get_bboxes('hbox').numpy(), boxes.numpy())
    t = masks.to_tensor(torch.uint8, 'cpu')
    assert t.dtype == torch.uint8 and t.shape == (2, H, W) and t.sum() == 26
    assert PolygonMasks([], H, W).to_tensor(torch.bool, 'cpu').shape == (0, H, W)


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_flip_vertices_and_agreement(direction):
    flipped = _masks().flip(direction)
    xs, ys = flipped.masks[0][0][0::2], flipped.masks[0][0][1::2]
    flip_x, flip_y = direction != 'vertical', direction != 'horizontal'
    np.testing.assert_allclose(xs, W - np.array(SQUARE[0::2]) if flip_x else SQUARE[0::2])
    np.testing.assert_allclose(ys, H - np.array(SQUARE[1::2]) if flip_y else SQUARE[1::2])
    np.testing.assert_array_equal(flipped.to_ndarray(),
                                  _masks().to_bitmap().flip(direction).masks)


def test_resize_rescale_pad_crop_agree_with_bitmaps():
    polys, bitmaps = _masks(), _masks().to_bitmap()
    np.testing.assert_array_equal(polys.resize((20, 24)).to_ndarray(),
                                  bitmaps.resize((20, 24)).masks)
    np.testing.assert_array_equal(polys.rescale(2.0).to_ndarray(), bitmaps.rescale(2.0).masks)
    np.testing.assert_array_equal(polys.pad((12, 15)).to_ndarray(), bitmaps.pad((12, 15)).masks)
    window = np.array([2, 1, 7, 8])
    np.testing.assert_array_equal(polys.crop(window).to_ndarray(), bitmaps.crop(window).masks)
    np.testing.assert_array_equal(
        polys.expand(14, 16, top=3, left=2).to_ndarray(),
        bitmaps.expand(14, 16, top=3, left=2).masks)


def test_translate_clips_and_agrees_with_bitmaps():
    polys, bitmaps = _masks(), _masks().to_bitmap()
    left = polys.translate((H, W), -2, 'horizontal')
    # x - 2 clipped at 0: the L shape's x = 1 column lands on 0
    np.testing.assert_allclose(left.masks[1][0][0::2], [0., 3., 3., 0., 0., 0.])
    np.testing.assert_allclose(left.masks[0][0][0::2], np.array(SQUARE[0::2]) - 2)
    down = polys.translate((H, W), 3, 'vertical')
    np.testing.assert_allclose(down.masks[0][0][1::2], [5., 5., 9., 9.])
    np.testing.assert_allclose(down.masks[1][0][1::2], [9., 9., 10., 10., 10., 10.])
    for offset, direction in ((-2, 'horizontal'), (3, 'vertical'), (4, 'horizontal')):
        np.testing.assert_array_equal(
            polys.translate((H, W), offset, direction).to_ndarray(),
            bitmaps.translate((H, W), offset, direction, interpolation='nearest').masks)
    with pytest.raises(AssertionError):
        polys.translate((H, W), 1, border_value=255)  # polygons have no border to fill


def test_rotate_90_by_hand_and_agreement():
    polys = _masks()[0]
    # clockwise on screen about (6, 5): (x, y) -> (6 - (y - 5), 5 + (x - 6)) = (11 - y, x - 1)
    rotated = polys.rotate((H, W), 90, center=(6., 5.))
    np.testing.assert_allclose(rotated.masks[0][0], [9., 2., 9., 7., 5., 7., 5., 2.],
                               atol=1e-9)
    bitmap = polys.to_bitmap().rotate((H, W), 90, center=(5.5, 4.5), interpolation='nearest')
    np.testing.assert_array_equal(rotated.to_ndarray(), bitmap.masks)
    # vertices leaving the canvas are clipped to it
    far = polys.rotate((H, W), 90, center=(0., 0.))  # (x, y) -> (-y, x)
    np.testing.assert_allclose(far.masks[0][0][0::2], 0.)
    np.testing.assert_allclose(far.masks[0][0][1::2], [3., 8., 8., 3.])


def test_shear_vertices_by_hand():
    polys = _masks()[0]
    sheared = polys.shear((H, W), 0.5, 'vertical')  # y' = y + 0.5 x, clipped to H = 10
    np.testing.assert_allclose(sheared.masks[0][0], [3., 3.5, 8., 6., 8., 10., 3., 7.5])
    sheared = polys.shear((H, W), -0.5, 'horizontal')  # x' = x - 0.5 y
    np.testing.assert_allclose(sheared.masks[0][0][0::2], [2., 7., 5., 0.])


def test_crop_and_resize_agrees_with_bitmap_roi_align():
    polys, bitmaps = _masks(), _masks().to_bitmap()
    boxes = np.array([[1., 0., 9., 8.], [0., 4., 6., 10.]])
    inds = np.array([0, 1])
    ours = polys.crop_and_resize(boxes, (16, 16), inds)
    assert isinstance(ours, PolygonMasks) and (ours.height, ours.width) == (16, 16)
    # scale 2 from the box corner: the square's x 3..8 -> 4..14, y 2..6 -> 4..12
    np.testing.assert_allclose(ours.masks[0][0], [4., 4., 14., 4., 14., 12., 4., 12.])
    ref = bitmaps.crop_and_resize(boxes, (16, 16), inds).masks
    np.testing.assert_array_equal(ours.to_ndarray()[0], ref[0])
    # the L shape: boundaries fall on bin edges too (scale 16 / 6), so few pixels may differ
    assert np.abs(ours.to_ndarray()[1].astype(int) - ref[1]).sum() <= 8
    # boxes under 1 px count as 1 px (mmdetection): no division blow-up
    tiny = polys.crop_and_resize(np.array([[3., 2., 3., 2.]]), (4, 4), np.array([0]))
    np.testing.assert_allclose(tiny.masks[0][0][:2], [0., 0.])
    np.testing.assert_allclose(tiny.masks[0][0][2:4], [20., 0.])
    # no masks: empty result, even with binarize=False (checked only when there is work)
    assert len(PolygonMasks([], H, W).crop_and_resize(boxes, (4, 4), inds, binarize=False)) == 0
    with pytest.raises(ValueError, match='binarize'):
        polys.crop_and_resize(boxes, (4, 4), inds, binarize=False)


@pytest.mark.parametrize('call', [
    lambda m: m.flip('sideways'),
    lambda m: m.crop(np.array([1, 2, 3])),
    lambda m: m.shear((H, W), 0.5, 'diagonal'),
])
def test_bad_arguments_raise_assertion_errors(call):
    with pytest.raises(AssertionError):
        call(_masks())
