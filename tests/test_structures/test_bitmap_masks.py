"""BitmapMasks ops on two tiny 10x12 masks with hand-computed pixels."""
import numpy as np
import pytest
import torch

from mmdet_lite.structures.mask import BitmapMasks

H, W = 10, 12


def _masks() -> BitmapMasks:
    arr = np.zeros((2, H, W), np.uint8)
    arr[0, 2:6, 3:8] = 1  # rows 2..5, cols 3..7: area 20
    arr[1, :, :6] = 1  # left half: area 60
    return BitmapMasks(arr, H, W)


def test_construction_and_validation():
    masks = _masks()
    assert (len(masks), masks.height, masks.width) == (2, H, W)
    from_list = BitmapMasks(list(masks.masks), H, W)
    np.testing.assert_array_equal(from_list.masks, masks.masks)
    assert BitmapMasks([], H, W).to_ndarray().shape == (0, H, W)
    assert BitmapMasks(np.ones((1, H, W), bool), H, W).masks.dtype == np.uint8
    with pytest.raises(ValueError, match='shape'):
        BitmapMasks(np.zeros((2, H, W + 1)), H, W)
    with pytest.raises(TypeError, match='masks'):
        BitmapMasks('not masks', H, W)


def test_indexing_iteration_and_cat():
    masks = _masks()
    assert masks[1].areas.tolist() == [60]
    assert masks[0:1].areas.tolist() == [20]
    assert masks[[1, 0]].areas.tolist() == [60, 20]
    assert masks[np.array([False, True])].areas.tolist() == [60]
    assert masks[torch.tensor([True, False])].areas.tolist() == [20]
    assert len(masks[np.array([], dtype=np.int64)]) == 0
    assert [m.shape for m in masks] == [(H, W), (H, W)]
    joined = BitmapMasks.cat([masks, masks[0]])
    assert joined.areas.tolist() == [20, 60, 20]
    with pytest.raises(TypeError, match='BitmapMasks'):
        BitmapMasks.cat([masks, masks.masks])


def test_conversions_and_boxes():
    masks = _masks()
    t = masks.to_tensor(dtype=torch.float32, device='cpu')
    assert t.shape == (2, H, W) and t.dtype == torch.float32
    assert t.sum().item() == 80
    assert masks.to_ndarray() is masks.masks
    torch.testing.assert_close(masks.get_bboxes().tensor,
                               torch.tensor([[3., 2., 8., 6.], [0., 0., 6., 10.]]))


def test_resize_and_rescale():
    resized = _masks().resize((20, 24))
    assert resized.to_ndarray().shape == (2, 20, 24)
    assert resized.areas.tolist() == [80, 240]
    rescaled = _masks().rescale(2.0)
    assert (rescaled.height, rescaled.width) == (20, 24)
    np.testing.assert_array_equal(rescaled.masks, resized.masks)
    # a (long, short) edge pair keeps the aspect ratio: 12x10 fits in 36x15 as 18x15
    assert BitmapMasks([], H, W).rescale((36, 15)).to_ndarray().shape == (0, 15, 18)


@pytest.mark.parametrize('direction,rows,cols', [
    ('horizontal', slice(2, 6), slice(4, 9)),  # cols 3..7 -> 11-7 .. 11-3
    ('vertical', slice(4, 8), slice(3, 8)),  # rows 2..5 -> 9-5 .. 9-2
    ('diagonal', slice(4, 8), slice(4, 9)),
])
def test_flip(direction, rows, cols):
    flipped = _masks().flip(direction)
    expected = np.zeros((H, W), np.uint8)
    expected[rows, cols] = 1
    np.testing.assert_array_equal(flipped.masks[0], expected)
    with pytest.raises(ValueError, match='flip_direction'):
        _masks().flip('up')


def test_pad_keeps_pixels_and_fills_border():
    padded = _masks().pad((16, 16), pad_val=0)
    assert padded.to_ndarray().shape == (2, 16, 16)
    np.testing.assert_array_equal(padded.masks[:, :H, :W], _masks().masks)
    assert padded.masks[:, H:, :].sum() == 0 and padded.masks[:, :, W:].sum() == 0
    with pytest.raises(ValueError, match='out_shape'):
        _masks().pad((5, 5))


def test_crop():
    cropped = _masks().crop(np.array([3, 2, 8, 6]))
    assert (cropped.height, cropped.width) == (4, 5)
    assert cropped.masks[0].all()
    np.testing.assert_array_equal(cropped.masks[1].sum(0), [4, 4, 4, 0, 0])
    # a box running past the image is clipped to it
    clipped = _masks().crop(np.array([6, -4, 20, 30]))
    assert clipped.to_ndarray().shape == (2, H, 6)
    with pytest.raises(ValueError, match='bbox'):
        _masks().crop(np.array([0, 0, 1]))


def test_crop_and_resize_full_and_half_regions():
    masks = _masks()
    # RoIAlign (aligned=True) samples pixel centres, so a box inset by half a pixel from
    # mask 0's border only sees foreground.
    boxes = np.array([[3.5, 2.5, 7.5, 5.5],
                      [3., 0., 9., 10.]])  # mask 1 covers cols 3..5 of 3..8: the left half
    out = masks.crop_and_resize(boxes, (28, 28), inds=np.array([0, 1]))
    assert isinstance(out, BitmapMasks)
    arr = out.to_ndarray()
    assert arr.shape == (2, 28, 28)
    assert arr[0].all()
    assert arr[1, :, :14].all() and not arr[1, :, 14:].any()
    # the box exactly on mask 0's border loses only the corners, where two edges blend
    exact = masks.crop_and_resize(np.array([[3., 2., 8., 6.]]), (28, 28), np.array([0]))
    assert exact.masks[0, 2:-2, 2:-2].all() and exact.masks[0, 14, :].all()

    soft = masks.crop_and_resize(torch.from_numpy(boxes), (28, 28), torch.tensor([0, 1]),
                                 binarize=False).to_ndarray()
    assert soft.dtype == np.float32
    np.testing.assert_allclose(soft[0], 1.0)
    np.testing.assert_allclose(soft[1].mean(), 0.5, atol=1e-6)  # symmetric ramp at the edge


def test_crop_and_resize_empty():
    assert _masks().crop_and_resize(np.zeros((0, 4)), (28, 28), np.zeros(0)).to_ndarray().shape \
        == (0, 28, 28)
    assert BitmapMasks([], H, W).crop_and_resize(np.array([[0., 0., 2., 2.]]), (7, 7),
                                                 np.array([0])).to_ndarray().shape == (0, 7, 7)
    with pytest.raises(ValueError, match='inds'):
        _masks().crop_and_resize(np.array([[0., 0., 2., 2.]]), (7, 7), np.array([0, 1]))


def test_expand():
    expanded = _masks().expand(14, 16, top=2, left=3)
    assert expanded.to_ndarray().shape == (2, 14, 16)
    np.testing.assert_array_equal(expanded.masks[:, 2:12, 3:15], _masks().masks)
    assert expanded.areas.tolist() == [20, 60]
    with pytest.raises(ValueError, match='fit'):
        _masks().expand(10, 12, top=1, left=0)


def test_translate():
    right = _masks().translate((H, W), 2, 'horizontal', interpolation='nearest')
    expected = np.zeros((H, W), np.uint8)
    expected[2:6, 5:10] = 1
    np.testing.assert_array_equal(right.masks[0], expected)
    up = _masks().translate((H, W), -2, 'vertical', interpolation='nearest')
    expected = np.zeros((H, W), np.uint8)
    expected[0:4, 3:8] = 1
    np.testing.assert_array_equal(up.masks[0], expected)
    # pushed left by 4: mask 0 keeps cols 0..3 (16 px), mask 1 keeps cols 0..1 (20 px)
    left = _masks().translate((H, W), -4, 'horizontal', border_value=0, interpolation='nearest')
    assert left.areas.tolist() == [16, 20]
    with pytest.raises(ValueError, match='direction'):
        _masks().translate((H, W), 1, 'diagonal')


def test_rotate_180_equals_diagonal_flip_and_zero_shear_is_identity():
    masks = _masks()
    rotated = masks.rotate((H, W), 180, interpolation='nearest')
    np.testing.assert_array_equal(rotated.masks, masks.flip('diagonal').masks)
    sheared = masks.shear((H, W), 0.0, 'horizontal', interpolation='nearest')
    np.testing.assert_array_equal(sheared.masks, masks.masks)
