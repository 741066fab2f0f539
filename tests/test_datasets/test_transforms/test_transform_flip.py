"""RandomFlip in the three directions on a 20 x 30 (h x w) image."""
import numpy as np
import pytest
from transform_helpers import (BOX_KINDS, assert_homography_maps_boxes,
                               assert_masks_match_boxes, boxes_as_array, make_image,
                               make_results, with_box_kind)

from mmdet_lite.datasets.transforms import RandomFlip, Resize
from mmdet_lite.registry import TRANSFORMS

BOXES = [[3, 2, 9, 8], [10, 5, 30, 20]]

# Horizontal: x -> 30 - x; vertical: y -> 20 - y (and the corners swap).
EXPECTED = {
    'horizontal': ([[21, 2, 27, 8], [0, 5, 20, 20]], (1, )),
    'vertical': ([[3, 12, 9, 18], [10, 0, 30, 15]], (0, )),
    'diagonal': ([[21, 12, 27, 18], [0, 0, 20, 15]], (0, 1)),
}


# Flip matrices written from the formulas above.
MATRICES = {
    'horizontal': [[-1, 0, 30], [0, 1, 0], [0, 0, 1]],
    'vertical': [[1, 0, 0], [0, -1, 20], [0, 0, 1]],
    'diagonal': [[-1, 0, 30], [0, -1, 20], [0, 0, 1]],
}


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
@pytest.mark.parametrize('mask_type', ['bitmap', 'polygon'])
@pytest.mark.parametrize('kind', BOX_KINDS)
def test_flip_moves_image_boxes_and_masks(direction, mask_type, kind):
    results = RandomFlip(prob=1.0, direction=direction)(
        with_box_kind(make_results(BOXES, ignore=[False, True], masks=mask_type), kind))
    expected_boxes, axes = EXPECTED[direction]
    assert results['flip'] is True
    assert results['flip_direction'] == direction
    np.testing.assert_array_equal(results['img'], np.flip(make_image(), axis=axes))
    np.testing.assert_allclose(boxes_as_array(results, kind), expected_boxes)
    np.testing.assert_array_equal(results['homography_matrix'], MATRICES[direction])
    assert_homography_maps_boxes(BOXES, results, kind)
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, True])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [0, 1])
    assert_masks_match_boxes(results, atol=0)


def test_no_flip_with_zero_probability():
    results = RandomFlip(prob=0.0)(make_results(BOXES))
    assert results['flip'] is False and results['flip_direction'] is None
    np.testing.assert_array_equal(results['img'], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)
    # As in mmdetection, a transform that does not flip records nothing.
    assert 'homography_matrix' not in results


def test_numpy_and_box_inputs_give_the_same_numbers():
    outputs = [RandomFlip(prob=1.0, direction='diagonal')(
        with_box_kind(make_results(BOXES, masks=None), kind)) for kind in BOX_KINDS]
    np.testing.assert_array_equal(outputs[0]['gt_bboxes'], outputs[1]['gt_bboxes'].numpy())


def test_flip_after_resize_composes_homography():
    results = Resize(scale=(60, 10))(with_box_kind(make_results(BOXES), 'hbox'))
    results = RandomFlip(prob=1.0)(results)
    # Flip in the 60-wide image after scaling by (2, 0.5).
    np.testing.assert_allclose(results['homography_matrix'],
                               [[-2, 0, 60], [0, 0.5, 0], [0, 0, 1]])
    assert_homography_maps_boxes(BOXES, results, 'hbox')
    assert_masks_match_boxes(results)


def test_direction_list_with_probabilities():
    transform = TRANSFORMS.build(
        dict(type='RandomFlip', prob=[0.0, 1.0], direction=['horizontal', 'vertical']))
    results = transform(make_results(BOXES, masks=None))
    assert results['flip_direction'] == 'vertical'
    np.testing.assert_allclose(results['gt_bboxes'], EXPECTED['vertical'][0])


def test_flip_twice_is_identity_and_int_prob_accepted():
    flip = RandomFlip(prob=1, direction='diagonal')
    results = flip(flip(make_results(BOXES)))
    np.testing.assert_array_equal(results['img'], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)


def test_semantic_map_flips():
    results = make_results(BOXES, masks=None)
    seg = np.zeros((20, 30), dtype=np.uint8)
    seg[:, :10] = 1
    results['gt_seg_map'] = seg
    results = RandomFlip(prob=1.0)(results)
    assert (results['gt_seg_map'][:, 20:] == 1).all() and results['gt_seg_map'][:, :20].sum() == 0


def test_bad_arguments():
    # mmcv asserts on these (AssertionError), and raises ValueError for a prob of a bad type.
    with pytest.raises(AssertionError, match='direction'):
        RandomFlip(prob=0.5, direction='up')
    with pytest.raises(AssertionError, match='prob'):
        RandomFlip(prob=1.5)
    with pytest.raises(AssertionError, match='prob'):
        RandomFlip(prob=[0.5], direction=['horizontal', 'vertical'])
    with pytest.raises(ValueError, match='prob'):
        RandomFlip(prob=None)


def test_repr():
    # mmcv's format: the direction is not quoted.
    assert repr(RandomFlip(prob=0.5)) == 'RandomFlip(prob=0.5, direction=horizontal)'
    assert repr(RandomFlip(prob=[0.3, 0.2], direction=['horizontal', 'vertical'])) == (
        "RandomFlip(prob=[0.3, 0.2], direction=['horizontal', 'vertical'])")
