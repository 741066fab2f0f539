"""RandomCrop with a fixed window on a 20 x 30 (h x w) image.

The window is x in [10, 25), y in [5, 15): crop_size (15, 10) with the offset pinned to
(y=5, x=10). Instances:
  0: [2, 2, 8, 8]     fully left of the window      -> dropped
  1: [8, 5, 14, 12]   partly inside                 -> clipped to [0, 0, 4, 7]
  2: [12, 6, 20, 10]  inside                        -> [2, 1, 10, 5]
  3: [26, 14, 29, 19] fully right of the window     -> dropped
  4: [20, 10, 24, 13] inside, ignored               -> [10, 5, 14, 8], still ignored
"""
import numpy as np
import pytest
from transform_helpers import (BOX_KINDS, assert_homography_maps_boxes,
                               assert_masks_match_boxes, boxes_as_array, make_image,
                               make_results, with_box_kind)

from mmdet_lite.datasets.transforms import RandomCrop

BOXES = [[2, 2, 8, 8], [8, 5, 14, 12], [12, 6, 20, 10], [26, 14, 29, 19], [20, 10, 24, 13]]
IGNORE = [False, False, False, False, True]
KEPT_BOXES = [[0, 0, 4, 7], [2, 1, 10, 5], [10, 5, 14, 8]]


def pinned(transform: RandomCrop, offset=(5, 10)) -> RandomCrop:
    """Fix the window's top-left corner (y, x) instead of drawing it."""
    transform._rand_offset = lambda margin: offset
    return transform


@pytest.mark.parametrize('mask_type', ['bitmap', 'polygon'])
@pytest.mark.parametrize('kind', BOX_KINDS)
def test_boxes_shifted_clipped_and_dropped_with_aligned_annotations(mask_type, kind):
    crop = pinned(RandomCrop(crop_size=(15, 10)))
    results = crop(with_box_kind(make_results(BOXES, labels=[10, 11, 12, 13, 14],
                                              ignore=IGNORE, masks=mask_type), kind))
    assert results['img'].shape == (10, 15, 3)
    assert results['img_shape'] == (10, 15)
    np.testing.assert_array_equal(results['img'], make_image()[5:15, 10:25])
    np.testing.assert_allclose(boxes_as_array(results, kind), KEPT_BOXES)
    np.testing.assert_array_equal(results['homography_matrix'],
                                  [[1, 0, -10], [0, 1, -5], [0, 0, 1]])
    assert_homography_maps_boxes(BOXES, results, kind, keep=[1, 2, 4])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [11, 12, 14])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, False, True])
    assert_masks_match_boxes(results, atol=0)


def test_numpy_and_box_inputs_give_the_same_numbers():
    outputs = [pinned(RandomCrop(crop_size=(15, 10)))(
        with_box_kind(make_results(BOXES, masks=None), kind)) for kind in BOX_KINDS]
    np.testing.assert_array_equal(outputs[0]['gt_bboxes'], outputs[1]['gt_bboxes'].numpy())


def test_instance_ids_follow_the_kept_boxes():
    results = make_results(BOXES, masks=None)
    results['gt_instances_ids'] = np.array([100, 101, 102, 103, 104], dtype=np.int32)
    results = pinned(RandomCrop(crop_size=(15, 10)))(results)
    np.testing.assert_array_equal(results['gt_instances_ids'], [101, 102, 104])


def test_without_border_clipping_boxes_keep_their_extent():
    crop = pinned(RandomCrop(crop_size=(15, 10), bbox_clip_border=False))
    results = crop(make_results(BOXES, masks=None))
    # Box 0 ends at x = -2 (outside) and is still dropped; box 3 starts at x = 16 > 15.
    np.testing.assert_allclose(results['gt_bboxes'], [[-2, 0, 4, 7], [2, 1, 10, 5],
                                                      [10, 5, 14, 8]])


def test_crop_without_boxes_returns_none_unless_allowed():
    crop = pinned(RandomCrop(crop_size=(5, 5)), offset=(0, 24))  # x in [24, 29), y in [0, 5)
    assert crop(make_results([[2, 2, 8, 8]])) is None
    allowed = pinned(RandomCrop(crop_size=(5, 5), allow_negative_crop=True), offset=(0, 24))
    results = allowed(make_results([[2, 2, 8, 8]]))
    assert results['gt_bboxes'].shape == (0, 4)
    assert results['gt_bboxes_labels'].shape == (0, )
    assert results['gt_ignore_flags'].shape == (0, )
    assert len(results['gt_masks']) == 0 and results['gt_masks'].height == 5


def test_recompute_bbox_from_masks():
    results = make_results([[8, 5, 14, 12]])
    # A mask smaller than its (loose) box: the crop's boxes come from the mask.
    results['gt_masks'].masks[0, :, 8:12] = 0
    crop = pinned(RandomCrop(crop_size=(15, 10), recompute_bbox=True))
    boxed = crop(with_box_kind(dict(results, gt_bboxes=results['gt_bboxes'].copy(),
                                    gt_masks=results['gt_masks'][[0]]), 'hbox'))
    results = crop(results)
    np.testing.assert_allclose(results['gt_bboxes'], [[2, 0, 4, 7]])
    np.testing.assert_allclose(boxes_as_array(boxed, 'hbox'), [[2, 0, 4, 7]])


def test_absolute_crop_larger_than_image_keeps_whole_image():
    results = RandomCrop(crop_size=(100, 100))(make_results(BOXES))
    assert results['img_shape'] == (20, 30)
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)


@pytest.mark.parametrize('crop_type, crop_size, h_range, w_range', [
    ('absolute', (15, 10), (10, 10), (15, 15)),           # (w, h) pixels
    ('relative', (0.5, 0.25), (5, 5), (15, 15)),           # (w_ratio, h_ratio)
    ('absolute_range', (5, 12), (5, 12), (5, 12)),         # (min, max) pixels
    ('relative_range', (0.5, 0.8), (10, 20), (24, 30)),    # (min_h_ratio, min_w_ratio)
])
def test_crop_size_per_crop_type(crop_type, crop_size, h_range, w_range):
    crop = RandomCrop(crop_size=crop_size, crop_type=crop_type, allow_negative_crop=True)
    for _ in range(10):
        results = crop(make_results(BOXES))
        h, w = results['img_shape']
        assert h_range[0] <= h <= h_range[1] and w_range[0] <= w <= w_range[1]
        assert_masks_match_boxes(results, atol=0)
        # Every kept box lies inside the crop.
        assert (results['gt_bboxes'][:, 2] <= w).all() and (results['gt_bboxes'][:, 3] <= h).all()


def test_semantic_map_cropped_with_image():
    results = make_results(BOXES, masks=None)
    results['gt_seg_map'] = make_image()[..., 2]
    results = pinned(RandomCrop(crop_size=(15, 10)))(results)
    np.testing.assert_array_equal(results['gt_seg_map'], make_image()[5:15, 10:25, 2])


def test_bad_arguments():
    with pytest.raises(ValueError, match='crop_type'):
        RandomCrop(crop_size=(5, 5), crop_type='square')
    # mmdetection asserts on the crop sizes.
    with pytest.raises(AssertionError, match='positive ints'):
        RandomCrop(crop_size=(0, 5))
    with pytest.raises(AssertionError, match='min <= max'):
        RandomCrop(crop_size=(9, 5), crop_type='absolute_range')
    with pytest.raises(AssertionError, match='ratios'):
        RandomCrop(crop_size=(1.5, 0.5), crop_type='relative')
    with pytest.raises(TypeError, match='pair'):
        RandomCrop(crop_size=5)


def test_repr():
    # mmdetection's format: crop_type is not quoted, crop_size is shown as given.
    assert repr(RandomCrop(crop_size=(15, 10))) == (
        'RandomCrop(crop_size=(15, 10), crop_type=absolute, allow_negative_crop=False, '
        'recompute_bbox=False, bbox_clip_border=True)')
    assert repr(RandomCrop(crop_size=[0.5, 0.5], crop_type='relative_range')) == (
        'RandomCrop(crop_size=[0.5, 0.5], crop_type=relative_range, '
        'allow_negative_crop=False, recompute_bbox=False, bbox_clip_border=True)')
