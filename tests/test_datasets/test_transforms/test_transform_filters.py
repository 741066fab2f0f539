"""FilterAnnotations by box size and mask area, keeping every gt_* key aligned."""
import numpy as np
import pytest
from transform_helpers import make_results

from mmdet_lite.datasets.transforms import FilterAnnotations

# Sizes (w x h): 6x6, 1x6 (not wider than 1), 6x2, 20x15.
BOXES = [[3, 2, 9, 8], [10, 0, 11, 6], [12, 10, 18, 12], [10, 5, 30, 20]]


def test_filter_by_box_keeps_aligned_annotations():
    results = make_results(BOXES, labels=[5, 6, 7, 8], ignore=[False, True, False, True])
    results = FilterAnnotations(min_gt_bbox_wh=(1., 1.))(results)
    # Width and height must be strictly greater than the minimum: the 1-wide box goes.
    np.testing.assert_allclose(results['gt_bboxes'], [BOXES[0], BOXES[2], BOXES[3]])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [5, 7, 8])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, False, True])
    np.testing.assert_array_equal(results['gt_masks'].areas, [36, 12, 300])


def test_larger_minimum_size():
    results = FilterAnnotations(min_gt_bbox_wh=(5, 5))(make_results(BOXES, masks=None))
    np.testing.assert_allclose(results['gt_bboxes'], [BOXES[0], BOXES[3]])


def test_filter_by_mask_area():
    results = make_results(BOXES)
    results['gt_masks'].masks[3] = 0  # an empty mask under a big box
    results = FilterAnnotations(min_gt_mask_area=12, by_box=False, by_mask=True)(results)
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [0, 2])
    np.testing.assert_array_equal(results['gt_masks'].areas, [36, 12])


def test_all_filtered_returns_none_when_keep_empty():
    tiny = make_results([[0, 0, 1, 1]])
    assert FilterAnnotations()(tiny) is None
    kept = FilterAnnotations(keep_empty=False)(make_results([[0, 0, 1, 1]]))
    assert kept['gt_bboxes'].shape == (0, 4) and len(kept['gt_masks']) == 0


def test_image_without_instances_passes_through():
    results = make_results([], masks=None)
    assert FilterAnnotations()(results) is results


def test_bad_arguments_and_missing_keys():
    with pytest.raises(ValueError, match='by_box'):
        FilterAnnotations(by_box=False, by_mask=False)
    with pytest.raises(ValueError, match='min_gt_bbox_wh'):
        FilterAnnotations(min_gt_bbox_wh=(1, 1, 1))
    with pytest.raises(KeyError, match='gt_bboxes'):
        FilterAnnotations()({})
    with pytest.raises(KeyError, match='gt_masks'):
        FilterAnnotations(by_mask=True)(make_results(BOXES, masks=None))


def test_repr():
    assert repr(FilterAnnotations()) == (
        'FilterAnnotations(min_gt_bbox_wh=(1.0, 1.0), min_gt_mask_area=1, by_box=True, '
        'by_mask=False, keep_empty=True)')
