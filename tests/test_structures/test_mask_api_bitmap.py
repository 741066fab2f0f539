"""BitmapMasks: the rest of mmdetection's API (random, cat, indexing, geometric ops, errors).

Expected pixels are worked out by hand on tiny masks; RoIAlign results are checked against
a direct ``torchvision.ops.roi_align`` call and a hand-computed case.
"""
import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from mmdet_lite.structures.bbox import HorizontalBoxes
from mmdet_lite.structures.mask import BaseInstanceMasks, BitmapMasks, PolygonMasks

H, W = 6, 8


def _one_block() -> BitmapMasks:
    """One mask with a 2 x 3 block: rows 1..2, cols 2..4."""
    arr = np.zeros((1, H, W), np.uint8)
    arr[0, 1:3, 2:5] = 1
    return BitmapMasks(arr, H, W)


def test_base_class_declares_the_whole_api():
    for name in ('rescale', 'resize', 'flip', 'pad', 'crop', 'crop_and_resize', 'expand',
                 'areas', 'to_ndarray', 'translate', 'rotate', 'cat'):
        assert name in BaseInstanceMasks.__abstractmethods__, name
    with pytest.raises(TypeError):
        BaseInstanceMasks()


def test_random_shapes_dtypes_and_seed():
    masks = BitmapMasks.random()
    assert repr(masks) == 'BitmapMasks(num_masks=3, height=32, width=32)'
    assert masks.masks.dtype == np.uint8
    masks = BitmapMasks.random(num_masks=4, height=7, width=9, dtype=np.float32, rng=3)
    assert masks.masks.shape == (4, 7, 9) and masks.masks.dtype == np.float32
    # independent formula: each pixel is foreground when its uniform draw exceeds 0.1
    expected = (np.random.RandomState(3).rand(4, 7, 9) > 0.1).astype(np.float32)
    np.testing.assert_array_equal(masks.masks, expected)
    # a RandomState is used as given (its stream advances)
    rng = np.random.RandomState(5)
    first, second = BitmapMasks.random(rng=rng), BitmapMasks.random(rng=rng)
    assert not np.array_equal(first.masks, second.masks)
    # bool is stored as uint8 (documented difference), values unchanged
    as_bool = BitmapMasks.random(num_masks=2, height=3, width=4, dtype=bool, rng=1)
    assert as_bool.masks.dtype == np.uint8
    assert len(BitmapMasks.random(num_masks=0)) == 0


def test_repr_len_iter_and_getitem():
    masks = BitmapMasks.random(num_masks=5, height=H, width=W, rng=0)
    assert repr(masks) == f'BitmapMasks(num_masks=5, height={H}, width={W})'
    assert repr(BitmapMasks([], 3, 4)) == 'BitmapMasks(num_masks=0, height=3, width=4)'
    assert len(masks) == 5
    items = list(masks)
    assert len(items) == 5 and items[2].shape == (H, W)
    np.testing.assert_array_equal(masks[2].masks, masks.masks[2:3])
    np.testing.assert_array_equal(masks[1:3].masks, masks.masks[1:3])
    np.testing.assert_array_equal(masks[[4, 0]].masks, masks.masks[[4, 0]])
    keep = np.array([True, False, True, False, False])
    np.testing.assert_array_equal(masks[keep].masks, masks.masks[[0, 2]])
    np.testing.assert_array_equal(masks[torch.tensor([3])].masks, masks.masks[[3]])
    assert isinstance(masks[0], BitmapMasks) and (masks[0].height, masks[0].width) == (H, W)


def test_cat_and_its_errors():
    a = BitmapMasks.random(2, H, W, rng=0)
    b = BitmapMasks.random(3, H, W, rng=1)
    merged = BitmapMasks.cat([a, b])
    assert (len(merged), merged.height, merged.width) == (5, H, W)
    np.testing.assert_array_equal(merged.masks, np.concatenate([a.masks, b.masks]))
    with pytest.raises(ValueError, match='empty'):
        BitmapMasks.cat([])
    with pytest.raises(AssertionError):
        BitmapMasks.cat([a, PolygonMasks([], H, W)])
    with pytest.raises(AssertionError):
        BitmapMasks.cat(a)  # not a sequence


def test_constructor_errors_are_assertions():
    with pytest.raises(AssertionError):
        BitmapMasks(np.zeros((1, 4, 4)), 5, 4)
    with pytest.raises(AssertionError):
        BitmapMasks('masks', 5, 4)


def test_rescale_and_resize_nearest():
    masks = _one_block()
    doubled = masks.rescale(2.0)
    assert (doubled.height, doubled.width) == (2 * H, 2 * W)
    np.testing.assert_array_equal(doubled.masks[0], np.kron(masks.masks[0], np.ones((2, 2))))
    # (long, short) edges: (16, 12) fits 8 x 6 scaled by 2
    assert doubled.masks.shape == masks.rescale((16, 12)).masks.shape
    halved = masks.resize((3, 4))
    # nearest picks source rows 0, 2, 4 and cols 0, 2, 4, 6
    np.testing.assert_array_equal(halved.masks[0], masks.masks[0][0::2, 0::2])
    assert BitmapMasks([], H, W).resize((3, 4)).masks.shape == (0, 3, 4)
    assert BitmapMasks([], H, W).rescale(0.5).masks.shape == (0, 3, 4)


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_flip(direction):
    flipped = _one_block().flip(direction)
    rows = slice(H - 3, H - 1) if direction != 'horizontal' else slice(1, 3)
    cols = slice(W - 5, W - 2) if direction != 'vertical' else slice(2, 5)
    expected = np.zeros((H, W), np.uint8)
    expected[rows, cols] = 1
    np.testing.assert_array_equal(flipped.masks[0], expected)


def test_pad_crop_expand():
    masks = _one_block()
    padded = masks.pad((8, 10), pad_val=7)
    assert padded.masks.shape == (1, 8, 10)
    assert (padded.masks[0, H:, :] == 7).all() and (padded.masks[0, :, W:] == 7).all()
    np.testing.assert_array_equal(padded.masks[0, :H, :W], masks.masks[0])

    cropped = masks.crop(np.array([3, 0, 7, 2]))  # cols 3..6, rows 0..1
    assert (cropped.height, cropped.width) == (2, 4)
    np.testing.assert_array_equal(cropped.masks[0], [[0, 0, 0, 0], [1, 1, 0, 0]])
    clipped = masks.crop(np.array([-5, -5, 100, 100]))
    np.testing.assert_array_equal(clipped.masks, masks.masks)

    expanded = masks.expand(10, 12, top=3, left=1)
    assert expanded.masks.shape == (1, 10, 12)
    assert expanded.masks[0, 4:6, 3:6].all() and expanded.areas[0] == 6


def test_translate_offsets_and_border():
    masks = _one_block()
    right = masks.translate((H, W), 3, 'horizontal', interpolation='nearest')
    np.testing.assert_array_equal(right.masks[0, 1:3, 5:8], np.ones((2, 3)))
    assert right.areas[0] == 6
    up = masks.translate((H, W), -1, 'vertical', interpolation='nearest')
    np.testing.assert_array_equal(up.masks[0, 0:2, 2:5], np.ones((2, 3)))
    assert up.areas[0] == 6
    # border_value fills the uncovered left columns
    filled = masks.translate((H, W), 2, 'horizontal', border_value=1, interpolation='nearest')
    assert filled.masks[0, :, :2].all()
    # another out_shape: the masks are first zero-padded / cropped at the bottom-right
    bigger = masks.translate((H + 2, W + 4), 1, 'horizontal', interpolation='nearest')
    assert bigger.masks.shape == (1, H + 2, W + 4)
    np.testing.assert_array_equal(np.argwhere(bigger.masks[0]),
                                  np.argwhere(masks.masks[0]) + [0, 1])
    assert masks.translate((4, 5), 0).masks.shape == (1, 4, 5)
    with pytest.raises(AssertionError):
        masks.translate((H, W), 1, 'diagonal')


def test_shear_moves_each_row_by_magnitude_times_y():
    arr = np.zeros((1, H, W), np.uint8)
    arr[0, 2, 1] = 1  # (x=1, y=2)
    arr[0, 4, 0] = 1  # (x=0, y=4)
    masks = BitmapMasks(arr, H, W)
    sheared = masks.shear((H, W), 1.0, 'horizontal', interpolation='nearest')  # x' = x + y
    np.testing.assert_array_equal(np.argwhere(sheared.masks[0]), [[2, 3], [4, 4]])
    sheared = masks.shear((H, W), 1.0, 'vertical', interpolation='nearest')  # y' = y + x
    np.testing.assert_array_equal(np.argwhere(sheared.masks[0]), [[3, 1], [4, 0]])
    assert masks.shear((H, W), 0.0).masks.tolist() == arr.tolist()


def test_rotate_90_by_hand():
    arr = np.zeros((1, 5, 5), np.uint8)
    arr[0, 0, 1:4] = 1  # top row, x = 1..3
    arr[0, 1, 3] = 1  # (x=3, y=1)
    masks = BitmapMasks(arr, 5, 5)
    rotated = masks.rotate((5, 5), 90, interpolation='nearest')  # about (2, 2), clockwise
    # clockwise on screen: (x, y) -> (cx - (y - cy), cy + (x - cx)) = (4 - y, x)
    expected = np.zeros((5, 5), np.uint8)
    expected[1:4, 4] = 1  # top row -> right column
    expected[3, 3] = 1  # (3, 1) -> (3, 3)
    np.testing.assert_array_equal(rotated.masks[0], expected)
    np.testing.assert_array_equal(rotated.masks[0], np.rot90(arr[0], k=-1))
    back = masks.rotate((5, 5), -90, interpolation='nearest')
    np.testing.assert_array_equal(back.masks[0], np.rot90(arr[0], k=1))
    # an explicit centre: about the top-left pixel, a 180 turn leaves only that pixel
    corner = BitmapMasks(np.pad(np.ones((1, 1, 1), np.uint8), ((0, 0), (0, 4), (0, 4))), 5, 5)
    assert corner.rotate((5, 5), 180, center=(0., 0.)).areas.tolist() == [1]
    assert BitmapMasks([], 5, 5).rotate((5, 5), 30).masks.shape == (0, 5, 5)


def test_crop_and_resize_matches_torchvision_roi_align():
    masks = BitmapMasks.random(3, 20, 24, rng=7)
    boxes = np.array([[1.5, 2.0, 17.0, 13.5], [0., 0., 24., 20.], [5.2, 3.3, 9.9, 18.1]],
                     dtype=np.float32)
    inds = np.array([2, 0, 2])
    soft = masks.crop_and_resize(boxes, (7, 9), inds, binarize=False)
    rois = torch.cat([torch.arange(3.)[:, None], torch.from_numpy(boxes)], dim=1)
    feats = torch.from_numpy(masks.masks[inds]).float()[:, None]
    expected = roi_align(feats, rois, (7, 9), 1.0, 0, aligned=True)[:, 0].numpy()
    assert (soft.height, soft.width) == (7, 9)
    np.testing.assert_allclose(soft.masks, expected, atol=1e-6)
    hard = masks.crop_and_resize(torch.from_numpy(boxes), (7, 9), torch.from_numpy(inds))
    np.testing.assert_array_equal(hard.masks, (expected >= 0.5).astype(np.uint8))


def test_crop_and_resize_by_hand():
    arr = np.zeros((1, 10, 12), np.uint8)
    arr[0, 2:6, 3:8] = 1
    masks = BitmapMasks(arr, 10, 12)
    # box [1, 0, 9, 8] onto 16 x 16: half-pixel bins, the block lands on cols 4..13, rows 4..11
    out = masks.crop_and_resize(np.array([[1., 0., 9., 8.]]), (16, 16), np.array([0]))
    expected = np.zeros((16, 16), np.uint8)
    expected[4:12, 4:14] = 1
    np.testing.assert_array_equal(out.masks[0], expected)
    # a bin sampled a quarter pixel into the block reads 0.75, three quarters out 0.25
    soft = masks.crop_and_resize(np.array([[1., 0., 9., 8.]]), (16, 16), np.array([0]),
                                 binarize=False)
    np.testing.assert_allclose(soft.masks[0, 8, 3:5], [0.25, 0.75], atol=1e-6)
    empty = BitmapMasks([], 10, 12).crop_and_resize(np.zeros((2, 4)), (5, 5), np.zeros(2))
    assert empty.masks.shape == (0, 5, 5)


def test_areas_get_bboxes_and_conversions():
    arr = np.zeros((3, H, W), np.uint8)
    arr[0, 1:3, 2:5] = 1
    arr[1, 5, 7] = 1
    masks = BitmapMasks(arr, H, W)
    assert masks.areas.tolist() == [6, 1, 0]
    boxes = masks.get_bboxes()
    assert isinstance(boxes, HorizontalBoxes)
    np.testing.assert_array_equal(boxes.numpy(), [[2, 1, 5, 3], [7, 5, 8, 6], [0, 0, 0, 0]])
    np.testing.assert_array_equal(masks.get_bboxes('hbox').numpy(), boxes.numpy())
    np.testing.assert_array_equal(masks.get_bboxes(HorizontalBoxes).numpy(), boxes.numpy())
    assert masks.to_ndarray() is masks.masks
    t = masks.to_tensor(dtype=torch.float32, device='cpu')
    assert t.dtype == torch.float32 and t.shape == (3, H, W) and t.sum() == 7


@pytest.mark.parametrize('call', [
    lambda m: m.flip('sideways'),
    lambda m: m.pad((2, 2)),
    lambda m: m.crop(np.array([1, 2, 3])),
    lambda m: m.shear((H, W), 0.5, 'diagonal'),
])
def test_bad_arguments_raise_assertion_errors(call):
    with pytest.raises(AssertionError):
        call(_one_block())


@pytest.mark.parametrize('op', ['rotate', 'translate', 'shear'])
def test_warps_match_mmcv_image_functions(op):
    """mmdetection warps the masks with mmcv's image functions: same pixels here."""
    import mmcv
    masks = BitmapMasks.random(3, 9, 11, rng=2)
    stacked = masks.masks.transpose(1, 2, 0)  # mmcv works on [H, W, C]
    if op == 'rotate':
        ours, ref = masks.rotate((9, 11), 33), mmcv.imrotate(stacked, 33)
    elif op == 'translate':
        ours, ref = masks.translate((9, 11), -3, 'vertical'), mmcv.imtranslate(
            stacked, -3, 'vertical')
    else:
        ours, ref = masks.shear((9, 11), 0.3, 'vertical'), mmcv.imshear(stacked, 0.3, 'vertical')
    np.testing.assert_array_equal(ours.masks, ref.transpose(2, 0, 1))
