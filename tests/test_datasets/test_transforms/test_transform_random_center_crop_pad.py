"""RandomCenterCropPad on a float32 20 x 30 (h x w) image, with the random centre pinned.

Train mode, crop_size (w, h) = (16, 12), ratio 1, mean (1, 2, 3) RGB -> (3, 2, 1) BGR:
- centre (y, x) = (8, 10): copied area [2, 2, 18, 14] fills the whole canvas, boxes move by
  (16 // 2 - 10, 12 // 2 - 8) = (-2, -2).
- centre (3, 27): copied area [19, 0, 30, 9] lands on canvas rows 3..11, columns 0..10;
  boxes move by (8 - 27, 6 - 3) = (-19, 3).
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, boxes_array, use_box_kind
from transform_helpers import make_image, make_results

from mmdet_lite.datasets.transforms import RandomCenterCropPad
from mmdet_lite.registry import TRANSFORMS

MEAN, STD = (1, 2, 3), (1, 1, 1)
BOXES = [[4, 4, 10, 10], [15, 10, 25, 18], [16, 11, 20, 16], [12, 3, 20, 13]]


def float_results(boxes, **kwargs) -> dict:
    results = make_results(boxes, masks=None, **kwargs)
    results['img'] = results['img'].astype(np.float32)
    return results


def train_crop(centers, **kwargs) -> RandomCenterCropPad:
    crop = RandomCenterCropPad(crop_size=(16, 12), ratios=(1.0, ), border=4, mean=MEAN,
                               std=STD, to_rgb=True, test_pad_mode=None, **kwargs)
    centers = iter(centers)
    crop._random_center = lambda h_border, w_border, h, w: next(centers)
    return crop


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_train_crop_inside_the_image(box_kind):
    results = use_box_kind(float_results(BOXES, labels=[1, 2, 3, 4],
                                         ignore=[False, False, False, True]), box_kind)
    results = train_crop([(8, 10)])(results)
    assert results['img_shape'] == (12, 16)
    np.testing.assert_array_equal(results['img'], make_image()[2:14, 2:18])
    # Centres (20, 14) and (18, 13.5) are not strictly inside [2, 18] x [2, 14].
    np.testing.assert_allclose(boxes_array(results, box_kind), [[2, 2, 8, 8], [10, 1, 16, 11]])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [1, 4])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, True])


def test_train_crop_pads_with_the_mean_where_the_image_ends():
    results = train_crop([(3, 27)])(float_results([[20, 1, 26, 6]]))
    img = results['img']
    assert img.shape == (12, 16, 3) and img.dtype == np.float32
    np.testing.assert_array_equal(img[3:12, 0:11], make_image()[0:9, 19:30])
    outside = np.ones((12, 16), dtype=bool)
    outside[3:12, 0:11] = False
    assert (img[outside] == [3, 2, 1]).all()
    np.testing.assert_allclose(results['gt_bboxes'], [[1, 4, 7, 9]])


def test_train_centres_are_redrawn_until_a_box_centre_is_covered():
    # Centre (3, 27) covers [19, 0, 30, 9]: box [4, 4, 10, 10] is not in it.
    crop = train_crop([(3, 27), (8, 10)])
    results = crop(float_results([[4, 4, 10, 10]]))
    np.testing.assert_allclose(results['gt_bboxes'], [[2, 2, 8, 8]])


def test_train_clipping_switch():
    results = train_crop([(8, 10)], bbox_clip_border=False)(float_results([[12, 3, 20, 13]]))
    np.testing.assert_allclose(results['gt_bboxes'], [[10, 1, 18, 11]])


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_train_without_boxes_takes_the_first_centre(box_kind):
    results = train_crop([(8, 10)])(use_box_kind(float_results([]), box_kind))
    np.testing.assert_array_equal(results['img'], make_image()[2:14, 2:18])
    assert boxes_array(results, box_kind).shape == (0, 4)


def test_train_rejects_masks_and_maps():
    results = float_results(BOXES)
    results['gt_seg_map'] = np.zeros((20, 30), np.uint8)
    with pytest.raises(NotImplementedError, match='bbox'):
        train_crop([(8, 10)])(results)


def test_seeded_train_draws():
    np.random.seed(0)
    crop = RandomCenterCropPad(crop_size=(16, 12), ratios=(0.5, 1.0), border=4, mean=MEAN,
                               std=STD, to_rgb=False, test_pad_mode=None)
    for _ in range(10):
        results = crop(float_results([[4, 4, 26, 16]]))
        assert results['img_shape'] in [(6, 8), (12, 16)]
        h, w = results['img_shape']
        boxes = results['gt_bboxes']
        assert len(boxes) == 1
        assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all()
        assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all()


@pytest.mark.parametrize('border, size, expected', [
    (128, 512, 128), (128, 200, 64), (128, 256, 64), (8, 20, 8), (16, 20, 8), (10, 20, 5)])
def test_get_border(border, size, expected):
    assert RandomCenterCropPad._get_border(border, size) == expected


@pytest.mark.parametrize('pad_mode, add_pix, canvas, border', [
    (('logical_or', 127), 0, (127, 127), [53, 73, 48, 78]),
    (('logical_or', 127), 1, (128, 128), [54, 74, 49, 79]),
    (('size_divisor', 32), 0, (32, 32), [6, 26, 1, 31]),
])
def test_test_mode_pads_around_the_whole_image(pad_mode, add_pix, canvas, border):
    crop = RandomCenterCropPad(crop_size=None, ratios=None, border=None, mean=MEAN, std=STD,
                               to_rgb=True, test_mode=True, test_pad_mode=pad_mode,
                               test_pad_add_pix=add_pix)
    results = crop(float_results([]))
    assert results['img_shape'] == canvas
    np.testing.assert_array_equal(results['border'], border)
    assert results['border'].dtype == np.float32
    top, _, left, _ = border
    np.testing.assert_array_equal(results['img'][top:top + 20, left:left + 30], make_image())
    assert (results['img'][0, 0] == [3, 2, 1]).all()


def test_image_checks():
    results = make_results(BOXES, masks=None)  # uint8
    with pytest.raises(AssertionError, match='float32'):
        train_crop([(8, 10)])(results)
    results = float_results(BOXES)
    results['img'] = results['img'][..., :2]
    with pytest.raises(AssertionError, match='mean'):
        train_crop([(8, 10)])(results)


@pytest.mark.parametrize('kwargs', [
    dict(test_mode=True, crop_size=(16, 12), ratios=None, border=None),
    dict(test_mode=True, crop_size=None, ratios=(1.0, ), border=None),
    dict(test_mode=True, crop_size=None, ratios=None, border=128),
    dict(test_mode=True, crop_size=None, ratios=None, border=None, test_pad_mode=('pad', 3)),
    dict(crop_size=None),
    dict(crop_size=(0, 12)),
    dict(crop_size=(16, 12), ratios=1.0),
    dict(crop_size=(16, 12)),                       # test_pad_mode must be None in training
    dict(crop_size=(16, 12), test_pad_mode=None, mean=None),
])
def test_invalid_args(kwargs):
    args = dict(mean=MEAN, std=STD, to_rgb=True)
    args.update(kwargs)
    with pytest.raises(AssertionError):
        RandomCenterCropPad(**args)


def test_repr_and_build():
    crop = TRANSFORMS.build(dict(type='RandomCenterCropPad', crop_size=(16, 12),
                                 ratios=(1.0, ), border=4, mean=[1, 2, 3], std=[1, 1, 1],
                                 to_rgb=True, test_pad_mode=None))
    assert repr(crop) == ('RandomCenterCropPad(crop_size=(16, 12), ratios=(1.0,), border=4, '
                          'mean=[1, 2, 3], std=[1, 1, 1], to_rgb=True, test_mode=False, '
                          'test_pad_mode=None, bbox_clip_border=True)')
    assert crop.mean == [3, 2, 1] and crop.std == [1, 1, 1]
