"""FilterAnnotations by box size and mask area, keeping every gt_* key aligned."""
import numpy as np
import pytest
from transform_helpers import BOX_KINDS, boxes_as_array, make_results, with_box_kind

from mmdet_lite.datasets.transforms import FilterAnnotations

# Sizes (w x h): 6x6, 1x6 (not wider than 1), 6x2, 20x15.
BOXES = [[3, 2, 9, 8], [10, 0, 11, 6], [12, 10, 18, 12], [10, 5, 30, 20]]


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_filter_by_box_keeps_aligned_annotations(kind):
    results = make_results(BOXES, labels=[5, 6, 7, 8], ignore=[False, True, False, True])
    results = FilterAnnotations(min_gt_bbox_wh=(1., 1.))(with_box_kind(results, kind))
    # Width and height must be strictly greater than the minimum: the 1-wide box goes.
    np.testing.assert_allclose(boxes_as_array(results, kind), [BOXES[0], BOXES[2], BOXES[3]])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [5, 7, 8])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, False, True])
    np.testing.assert_array_equal(results['gt_masks'].areas, [36, 12, 300])


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_larger_minimum_size(kind):
    results = FilterAnnotations(min_gt_bbox_wh=(5, 5))(
        with_box_kind(make_results(BOXES, masks=None), kind))
    np.testing.assert_allclose(boxes_as_array(results, kind), [BOXES[0], BOXES[3]])


def test_filter_by_mask_area():
    results = make_results(BOXES)
    results['gt_masks'].masks[3] = 0  # an empty mask under a big box
    results = FilterAnnotations(min_gt_mask_area=12, by_box=False, by_mask=True)(results)
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [0, 2])
    np.testing.assert_array_equal(results['gt_masks'].areas, [36, 12])


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_all_filtered_returns_none_when_keep_empty(kind):
    tiny = with_box_kind(make_results([[0, 0, 1, 1]]), kind)
    assert FilterAnnotations()(tiny) is None
    kept = FilterAnnotations(keep_empty=False)(
        with_box_kind(make_results([[0, 0, 1, 1]]), kind))
    assert boxes_as_array(kept, kind).shape == (0, 4) and len(kept['gt_masks']) == 0


def test_image_without_instances_passes_through():
    results = make_results([], masks=None)
    assert FilterAnnotations()(results) is results


def test_bad_arguments_and_missing_keys():
    # mmdetection asserts on all of these.
    with pytest.raises(AssertionError, match='by_box'):
        FilterAnnotations(by_box=False, by_mask=False)
    with pytest.raises(AssertionError, match='gt_bboxes'):
        FilterAnnotations()({})
    with pytest.raises(AssertionError, match='gt_masks'):
        FilterAnnotations(by_mask=True)(make_results(BOXES, masks=None))
    with pytest.raises(KeyError, match='gt_masks'):
        FilterAnnotations(by_mask=True)(make_results(BOXES, masks=None))


def test_repr():
    # mmdetection's repr shows only min_gt_bbox_wh and keep_empty.
    assert repr(FilterAnnotations()) == 'FilterAnnotations(min_gt_bbox_wh=(1, 1), keep_empty=True)'
    assert repr(FilterAnnotations(min_gt_bbox_wh=(1e-2, 1e-2), keep_empty=False)) == (
        'FilterAnnotations(min_gt_bbox_wh=(0.01, 0.01), keep_empty=False)')
