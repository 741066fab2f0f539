"""RandomShift on a 20 x 30 (h x w) image with the shift pinned to (dx, dy) = (3, -2).

Instances (x clipped to [0, 30], y to [0, 20]; kept when width and height > 1):
  0: [2, 2, 8, 8]      -> [5, 0, 11, 6]
  1: [25, 3, 29, 9]    -> [28, 1, 32, 7] -> clipped [28, 1, 30, 7] (width 2, kept)
  2: [27, 10, 29, 14]  -> [30, 8, 32, 12] -> clipped [30, 8, 30, 12] (width 0, dropped)
  3: [0, 15, 3, 19]    -> [3, 13, 6, 17], ignored
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, boxes_array, use_box_kind
from transform_helpers import make_image, make_results

from mmdet_lite.datasets.transforms import RandomShift
from mmdet_lite.registry import TRANSFORMS

BOXES = [[2, 2, 8, 8], [25, 3, 29, 9], [27, 10, 29, 14], [0, 15, 3, 19]]
IGNORE = [False, False, False, True]


def pinned(shift=(3, -2), **kwargs) -> RandomShift:
    transform = RandomShift(prob=1.0, **kwargs)
    transform._random_shift = lambda: shift
    return transform


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_shift_clips_and_filters_boxes_with_their_annotations(box_kind):
    results = use_box_kind(make_results(BOXES, labels=[5, 6, 7, 8], ignore=IGNORE,
                                        masks=None), box_kind)
    results = pinned()(results)
    np.testing.assert_allclose(boxes_array(results, box_kind),
                               [[5, 0, 11, 6], [28, 1, 30, 7], [3, 13, 6, 17]])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [5, 6, 8])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, False, True])
    img, shifted = make_image(), results['img']
    # Output (y, x) shows input (y + 2, x - 3); the uncovered left and bottom are zeros.
    np.testing.assert_array_equal(shifted[:18, 3:], img[2:, :27])
    assert not shifted[:, :3].any() and not shifted[18:].any()


def test_filter_threshold():
    # Box 1 ends 2 pixels wide: a threshold of 2 drops it as well.
    results = pinned(filter_thr_px=2)(make_results(BOXES, masks=None))
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [0, 3])


def test_nothing_changes_when_no_box_survives():
    results = pinned(shift=(5, 0))(make_results([[27, 10, 29, 14]], masks=None))
    np.testing.assert_array_equal(results['img'], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], [[27, 10, 29, 14]])


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_empty_instances_leave_the_sample_alone(box_kind):
    results = pinned()(use_box_kind(make_results([], masks=None), box_kind))
    assert boxes_array(results, box_kind).shape == (0, 4)
    np.testing.assert_array_equal(results['img'], make_image())


def test_masks_are_left_untouched():
    results = pinned()(make_results(BOXES))
    assert len(results['gt_masks']) == len(BOXES)  # as in mmdetection: masks not shifted
    np.testing.assert_array_equal(results['gt_masks'].masks[0, 2:8, 2:8], 1)


def test_probability_and_real_draws():
    np.random.seed(0)
    shift = RandomShift(prob=0.0)
    results = shift(make_results(BOXES, masks=None))
    np.testing.assert_array_equal(results['img'], make_image())
    shift = RandomShift(prob=1.0, max_shift_px=4)
    for _ in range(20):
        results = shift(make_results([[10, 8, 20, 14]], masks=None))
        dx, dy = results['gt_bboxes'][0, :2] - [10, 8]
        assert -4 <= dx < 4 and -4 <= dy < 4
        # The image moved by the same (dx, dy) as the box.
        y, x = int(10 + dy), int(15 + dx)
        np.testing.assert_array_equal(results['img'][y, x], make_image()[10, 15])


def test_zero_max_shift_is_the_identity():
    results = RandomShift(prob=1.0, max_shift_px=0)(make_results(BOXES, masks=None))
    np.testing.assert_array_equal(results['img'], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)


def test_repr_build_and_invalid_args():
    shift = TRANSFORMS.build(dict(type='RandomShift', prob=0.3, max_shift_px=8,
                                  filter_thr_px=2.0))
    assert repr(shift) == 'RandomShift(prob=0.3, max_shift_px=8, filter_thr_px=2)'
    with pytest.raises(AssertionError, match='prob'):
        RandomShift(prob=1.5)
    with pytest.raises(AssertionError, match='max_shift_px'):
        RandomShift(max_shift_px=-1)
