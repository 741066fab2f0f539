"""PolygonMasks ops on hand-drawn polygons, and agreement with their rasterised bitmaps."""
import numpy as np
import pytest
import torch

from mmdet_lite.structures.mask import BitmapMasks, PolygonMasks

H, W = 10, 12
SQUARE = [3., 2., 8., 2., 8., 6., 3., 6.]  # 5 x 4 = 20, covers pixels rows 2..5, cols 3..7
TRIANGLE = [0., 0., 4., 0., 0., 4.]  # area 8
SMALL_BOX = [6., 6., 10., 6., 10., 9., 6., 9.]  # 4 x 3 = 12


def _masks() -> PolygonMasks:
    return PolygonMasks([[np.array(SQUARE)], [np.array(TRIANGLE), np.array(SMALL_BOX)]], H, W)


def test_construction_validation_and_areas():
    masks = _masks()
    assert (len(masks), masks.height, masks.width) == (2, H, W)
    np.testing.assert_allclose(masks.areas, [20., 20.])
    as_lists = PolygonMasks([[SQUARE]], H, W)  # plain float lists are accepted
    assert isinstance(as_lists.masks[0][0], np.ndarray)
    with pytest.raises(TypeError, match='masks'):
        PolygonMasks(np.zeros((1, 8)), H, W)
    with pytest.raises(TypeError, match=r'masks\[0\]'):
        PolygonMasks([np.array(SQUARE)], H, W)
    with pytest.raises(ValueError, match='flat'):
        PolygonMasks([[np.array([1., 2., 3.])]], H, W)


def test_indexing_and_cat():
    masks = _masks()
    assert len(masks[1].masks[0]) == 2  # int index keeps the object's two polygons
    np.testing.assert_allclose(masks[[1, 0]].areas, [20., 20.])
    assert len(masks[np.array([True, False])]) == 1
    assert len(masks[torch.tensor([1])]) == 1
    assert len(masks[1:]) == 1
    assert len(PolygonMasks.cat([masks, masks[0]])) == 3
    assert [len(obj) for obj in masks] == [1, 2]


def test_rasterise_matches_polygon_areas():
    masks = _masks()
    arr = masks.to_ndarray()
    assert arr.shape == (2, H, W) and arr.dtype == np.uint8
    expected = np.zeros((H, W), np.uint8)
    expected[2:6, 3:8] = 1
    np.testing.assert_array_equal(arr[0], expected)
    bitmap = masks.to_bitmap()
    assert isinstance(bitmap, BitmapMasks)
    # pixel-aligned square is exact; the triangle's slanted edge is within a few pixels
    assert bitmap.areas[0] == 20
    assert abs(int(bitmap.areas[1]) - 20) <= 3
    assert masks.to_tensor(torch.bool).shape == (2, H, W)
    assert PolygonMasks([], H, W).to_ndarray().shape == (0, H, W)
    torch.testing.assert_close(masks.get_bboxes().tensor[0], torch.tensor([3., 2., 8., 6.]))


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_flip_agrees_with_bitmap_flip(direction):
    masks = _masks()[0:1]
    flipped = masks.flip(direction)
    np.testing.assert_array_equal(flipped.to_ndarray(), masks.to_bitmap().flip(direction).masks)
    np.testing.assert_allclose(flipped.areas, masks.areas)


def test_horizontal_flip_vertices():
    flipped = _masks().flip('horizontal')
    np.testing.assert_allclose(flipped.masks[0][0], [9., 2., 4., 2., 4., 6., 9., 6.])
    with pytest.raises(ValueError, match='flip_direction'):
        _masks().flip('up')


def test_resize_rescale_pad_expand_translate():
    resized = _masks().resize((20, 24))
    assert (resized.height, resized.width) == (20, 24)
    np.testing.assert_allclose(resized.masks[0][0], np.array(SQUARE) * 2)
    np.testing.assert_allclose(resized.areas, [80., 80.])
    rescaled = _masks().rescale(2.0)
    np.testing.assert_allclose(rescaled.masks[0][0], np.array(SQUARE) * 2)

    padded = _masks().pad((16, 16))
    assert padded.to_ndarray().shape == (2, 16, 16)
    np.testing.assert_allclose(padded.masks[0][0], SQUARE)

    expanded = _masks().expand(14, 16, top=2, left=3)
    np.testing.assert_allclose(expanded.masks[0][0], [6., 4., 11., 4., 11., 8., 6., 8.])
    assert expanded.to_ndarray()[0].sum() == 20

    moved = _masks().translate((H, W), 5, 'horizontal')
    # x + 5 is clipped at the width 12: the square becomes [8, 12] wide
    np.testing.assert_allclose(moved.masks[0][0], [8., 2., 12., 2., 12., 6., 8., 6.])
    with pytest.raises(ValueError, match='direction'):
        _masks().translate((H, W), 1, 'diagonal')


def test_rotate_and_shear_move_vertices():
    masks = _masks()[0:1]
    rotated = masks.rotate((H, W), 180, center=(6., 5.))  # point p -> 2 * centre - p
    np.testing.assert_allclose(rotated.masks[0][0], [9., 8., 4., 8., 4., 4., 9., 4.], atol=1e-9)
    sheared = masks.shear((H, W), 0.5, 'horizontal')  # x' = x + 0.5 y
    np.testing.assert_allclose(sheared.masks[0][0][0::2], [4., 9., 11., 6.])


def test_crop_clips_polygons_to_the_box():
    cropped = _masks().crop(np.array([5, 0, 12, 10]))
    assert (cropped.height, cropped.width) == (10, 7)
    # square keeps x in [5, 8] -> 3 x 4; the triangle (x <= 4) disappears; small box moves left
    np.testing.assert_allclose(cropped.areas, [12., 12.])
    assert len(cropped.masks[1]) == 1
    # an object cropped away entirely keeps a placeholder polygon with an empty mask
    gone = _masks().crop(np.array([0, 7, 2, 10]))
    assert len(gone) == 2 and gone.to_ndarray().sum() == 0
    np.testing.assert_allclose(cropped.masks[1][0], [1., 6., 5., 6., 5., 9., 1., 9.])
    np.testing.assert_array_equal(cropped.to_ndarray(), _masks().to_bitmap().crop(
        np.array([5, 0, 12, 10])).masks)


def test_crop_and_resize_full_and_half_regions():
    boxes = np.array([[3., 2., 8., 6.],  # exactly the square: all ones
                      [3., 2., 13., 6.]])  # twice as wide: the square fills the left half
    out = _masks().crop_and_resize(boxes, (28, 28), inds=np.array([0, 0]))
    assert isinstance(out, PolygonMasks)
    arr = out.to_ndarray()
    assert arr.shape == (2, 28, 28)
    assert arr[0].all()
    assert arr[1, :, :14].all() and not arr[1, :, 14:].any()
    with pytest.raises(ValueError, match='binarize'):
        _masks().crop_and_resize(boxes, (28, 28), np.array([0, 0]), binarize=False)
    empty = _masks().crop_and_resize(np.zeros((0, 4)), (28, 28), np.zeros(0, np.int64))
    assert empty.to_ndarray().shape == (0, 28, 28)
