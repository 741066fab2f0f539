"""MinIoURandomCrop on a 20 x 30 (h x w) image with the mode and the windows pinned.

Window [5, 2, 25, 16] (x1, y1, x2, y2; 20 x 14) with mode 0 (any IoU):
  A: [6, 4, 14, 12]   centre (10, 8) inside  -> [1, 2, 9, 10]
  B: [20, 10, 28, 18] centre (24, 14) inside -> [15, 8, 23, 16], clipped [15, 8, 20, 14]
  C: [0, 0, 4, 4]     centre (2, 2) outside  -> dropped
  D: [26, 0, 30, 6]   centre (28, 3) outside -> dropped
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, assert_instances_aligned, boxes_array, use_box_kind
from transform_helpers import H, W, make_image, make_results

from mmdet_lite.datasets.transforms import MinIoURandomCrop

BOXES = [[6, 4, 14, 12], [20, 10, 28, 18], [0, 0, 4, 4], [26, 0, 30, 6]]
WINDOW = [5, 2, 25, 16]


def pinned(modes, patches, **kwargs) -> MinIoURandomCrop:
    """Draw the modes and candidate windows (None: a rejected shape) from these lists."""
    crop = MinIoURandomCrop(**kwargs)
    modes, patches = iter(modes), iter(patches)
    crop._random_mode = lambda: next(modes)
    crop.patch_calls = 0

    def next_patch(h, w):
        crop.patch_calls += 1
        patch = next(patches)
        return None if patch is None else np.array(patch)

    crop._random_patch = next_patch
    return crop


def iou(box, window) -> float:
    """IoU of two (x1, y1, x2, y2) boxes, by the formula."""
    iw = max(0, min(box[2], window[2]) - max(box[0], window[0]))
    ih = max(0, min(box[3], window[3]) - max(box[1], window[1]))
    inter = iw * ih
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    return inter / (area(box) + area(window) - inter)


@pytest.mark.parametrize('mask_type', ['bitmap', 'polygon'])
@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_crop_keeps_boxes_with_centres_inside(mask_type, box_kind):
    results = use_box_kind(make_results(BOXES, labels=[1, 2, 3, 4],
                                        ignore=[False, True, False, False], masks=mask_type),
                           box_kind)
    seg = np.arange(H * W).reshape(H, W).astype(np.uint8)
    results['gt_seg_map'] = seg
    results = pinned([0], [WINDOW])(results)
    np.testing.assert_allclose(boxes_array(results, box_kind), [[1, 2, 9, 10], [15, 8, 20, 14]])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [1, 2])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, True])
    np.testing.assert_array_equal(results['img'], make_image()[2:16, 5:25])
    assert results['img_shape'] == (14, 20)
    np.testing.assert_array_equal(results['gt_seg_map'], seg[2:16, 5:25])
    assert_instances_aligned(results, box_kind, atol=0)


def test_without_clipping_boxes_keep_their_extent():
    results = pinned([0], [WINDOW], bbox_clip_border=False)(make_results(BOXES, masks=None))
    np.testing.assert_allclose(results['gt_bboxes'], [[1, 2, 9, 10], [15, 8, 23, 16]])


def test_windows_below_the_min_iou_are_rejected():
    box = BOXES[0]
    assert iou(box, WINDOW) < 0.3 <= iou(box, [4, 2, 16, 14])  # 0.229 and 0.444
    crop = pinned([0.3], [None, WINDOW, [4, 2, 16, 14]])
    results = crop(make_results([box]))
    assert crop.patch_calls == 3 and crop.mode == 0.3
    np.testing.assert_allclose(results['gt_bboxes'], [[2, 2, 10, 10]])
    np.testing.assert_array_equal(results['img'], make_image()[2:14, 4:16])
    assert_instances_aligned(results, atol=0)


def test_windows_without_a_box_centre_are_rejected():
    # [0, 0, 9, 20] overlaps box A but its centre x = 10 is outside.
    crop = pinned([0], [[0, 0, 9, 20], WINDOW])
    results = crop(make_results([BOXES[0]], masks=None))
    assert crop.patch_calls == 2
    np.testing.assert_allclose(results['gt_bboxes'], [[1, 2, 9, 10]])


def test_mode_one_and_exhausted_tries_keep_the_image():
    crop = pinned([0.9, 1], [[0, 0, 5, 5]] * 50)  # IoU 0 every time, then mode 1
    results = crop(make_results(BOXES))
    assert crop.patch_calls == 50
    np.testing.assert_array_equal(results['img'], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_empty_instances_crop_the_image_only(box_kind):
    results = use_box_kind(make_results([]), box_kind)
    results = pinned([0.7], [WINDOW])(results)
    assert boxes_array(results, box_kind).shape == (0, 4)
    np.testing.assert_array_equal(results['img'], make_image()[2:16, 5:25])
    assert (results['gt_masks'].height, results['gt_masks'].width) == (14, 20)


@pytest.mark.parametrize('seed', range(8))
def test_seeded_windows_satisfy_the_constraints(seed):
    np.random.seed(seed)
    boxes = np.array([[4, 3, 20, 15], [15, 8, 27, 19], [1, 1, 6, 7]], dtype=np.float32)
    crop = MinIoURandomCrop(min_ious=(0.05, 0.1), min_crop_size=0.3)
    results = crop(make_results(boxes))
    if crop.mode == 1:
        np.testing.assert_array_equal(results['img'], make_image())
        return
    h, w = results['img'].shape[:2]
    y1, x1 = results['img'][0, 0, :2].astype(int)  # the test image stores (y, x) per pixel
    window = [x1, y1, x1 + w, y1 + h]
    assert 0.5 <= h / w <= 2 and w >= 1 and h >= 1
    assert all(iou(b, window) >= crop.mode for b in boxes)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centres > window[:2]) & (centres < window[2:])).all(axis=1)
    expected = boxes[inside] - [x1, y1, x1, y1]
    expected[:, 0::2] = expected[:, 0::2].clip(0, w)
    expected[:, 1::2] = expected[:, 1::2].clip(0, h)
    np.testing.assert_allclose(results['gt_bboxes'], expected)
    assert_instances_aligned(results, atol=0)


def test_missing_keys_are_assertion_errors():
    with pytest.raises(AssertionError, match='gt_bboxes'):
        MinIoURandomCrop()(dict(img=make_image()))
    with pytest.raises(AssertionError, match='img'):
        MinIoURandomCrop()(dict(gt_bboxes=np.zeros((0, 4), np.float32)))


def test_repr():
    assert repr(MinIoURandomCrop()) == ('MinIoURandomCrop(min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), '
                                        'min_crop_size=0.3, bbox_clip_border=True)')
    crop = MinIoURandomCrop(min_ious=[0.2], min_crop_size=0.5, bbox_clip_border=False)
    assert crop.sample_mode == (1, 0.2, 0)
    assert repr(crop) == ('MinIoURandomCrop(min_ious=[0.2], min_crop_size=0.5, '
                          'bbox_clip_border=False)')
