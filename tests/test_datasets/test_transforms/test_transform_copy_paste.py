"""CopyPaste occlusion rules on hand-made 20 x 30 (h x w) masks.

Destination objects (rectangle masks):
  A [0, 0, 10, 10]: the source covers its top 4 rows -> visible [0, 4, 10, 10]; y1 moves 4
    (<= bbox_occluded_thr 10): kept, with the recomputed box.
  B [12, 0, 30, 20] (360 px): the source covers rows 0..15 -> visible [12, 15, 30, 20];
    y1 moves 15 (> 10) and 18 x 5 = 90 px remain: dropped when mask_occluded_thr >= 90,
    kept below.
  C [13, 0, 29, 14]: wholly covered -> empty mask, box (0, 0, 0, 0): dropped.
Source objects: S1 [0, 0, 10, 4], S2 [12, 0, 30, 15].
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, boxes_array, use_box_kind
from transform_helpers import H, W, assert_masks_match_boxes, make_image, make_results

from mmdet_lite.datasets.transforms import CopyPaste
from mmdet_lite.structures.mask import BitmapMasks

DST = [[0, 0, 10, 10], [12, 0, 30, 20], [13, 0, 29, 14]]
SRC = [[0, 0, 10, 4], [12, 0, 30, 15]]


def pair(masks='bitmap', kind='numpy'):
    dst = make_results(DST, labels=[0, 1, 2], ignore=[False, True, False], masks=masks)
    src = make_results(SRC, labels=[7, 8], ignore=[True, False], masks=masks)
    src['img'] = (255 - src['img']).astype(np.uint8)
    dst['mix_results'] = [use_box_kind(src, kind)]
    return use_box_kind(dst, kind)


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_occluded_objects_are_dropped_and_partly_covered_ones_reboxed(box_kind):
    out = CopyPaste(bbox_occluded_thr=10, mask_occluded_thr=90, selected=False)(
        pair(kind=box_kind))
    np.testing.assert_allclose(boxes_array(out, box_kind), [[0, 4, 10, 10]] + SRC)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 7, 8])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False, True, False])
    assert isinstance(out['gt_masks'], BitmapMasks)
    assert out['gt_masks'].masks.sum(axis=(1, 2)).tolist() == [60, 40, 270]
    assert_masks_match_boxes(out if box_kind == 'numpy' else {
        **out, 'gt_bboxes': boxes_array(out, box_kind)}, atol=0)

    covered = np.zeros((H, W), bool)
    covered[0:4, 0:10] = covered[0:15, 12:30] = True
    expected = np.where(covered[..., None], 255 - make_image(), make_image())
    np.testing.assert_array_equal(out['img'], expected)
    assert out['img'].dtype == np.uint8


def test_enough_visible_pixels_keep_a_moved_object():
    out = CopyPaste(bbox_occluded_thr=10, mask_occluded_thr=89, selected=False)(pair())
    np.testing.assert_allclose(out['gt_bboxes'], [[0, 4, 10, 10], [12, 15, 30, 20]] + SRC)
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1, 7, 8])


def test_a_larger_box_threshold_keeps_the_moved_box():
    out = CopyPaste(bbox_occluded_thr=15, mask_occluded_thr=300, selected=False)(pair())
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1, 7, 8])
    out = CopyPaste(bbox_occluded_thr=3, mask_occluded_thr=300, selected=False)(pair())
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [7, 8])  # A moved 4 > 3


def test_an_emptied_mask_near_the_origin_passes_the_box_rule():
    # mmdetection's rule compares sides only: a wholly covered [0, 0, 10, 3] becomes
    # (0, 0, 0, 0), whose sides moved by at most 10, so it is kept (with that box).
    def covered_pair():
        dst = make_results([[0, 0, 10, 3]], labels=[4])
        dst['mix_results'] = [make_results([[0, 0, 10, 4]], labels=[7])]
        return dst

    out = CopyPaste(bbox_occluded_thr=10, selected=False)(covered_pair())
    np.testing.assert_allclose(out['gt_bboxes'], [[0, 0, 0, 0], [0, 0, 10, 4]])
    out = CopyPaste(bbox_occluded_thr=9, selected=False)(covered_pair())
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [7])


def test_polygon_masks_are_rasterized():
    out = CopyPaste(mask_occluded_thr=90, selected=False)(pair(masks='polygon'))
    np.testing.assert_allclose(out['gt_bboxes'], [[0, 4, 10, 10]] + SRC)
    assert isinstance(out['gt_masks'], BitmapMasks)


@pytest.mark.parametrize('seed', range(6))
def test_selected_objects_follow_the_seeded_draws(seed):
    np.random.seed(seed)
    out = CopyPaste(mask_occluded_thr=90)(pair())
    rng = np.random.RandomState(seed)
    inds = rng.choice(2, size=rng.randint(0, 3), replace=False)  # count in [0, N]
    if len(inds) == 0:  # nothing pasted: the sample is unchanged
        np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1, 2])
        np.testing.assert_array_equal(out['img'], make_image())
        return
    # the same as pasting all of a source made of the chosen objects
    reference = make_results([SRC[i] for i in inds], labels=[[7, 8][i] for i in inds],
                             ignore=[[True, False][i] for i in inds])
    reference['img'] = (255 - reference['img']).astype(np.uint8)
    expected = make_results(DST, labels=[0, 1, 2], ignore=[False, True, False])
    expected['mix_results'] = [reference]
    expected = CopyPaste(mask_occluded_thr=90, selected=False)(expected)
    assert out['gt_bboxes_labels'][-len(inds):].tolist() == [[7, 8][i] for i in inds]
    for key in ('gt_bboxes', 'gt_bboxes_labels', 'gt_ignore_flags', 'img'):
        np.testing.assert_array_equal(out[key], expected[key])


def test_max_num_pasted_bounds_the_count():
    for seed in range(10):
        np.random.seed(seed)
        out = CopyPaste(max_num_pasted=1, mask_occluded_thr=0)(pair())
        # randint(0, 1) is 0: nothing is pasted
        np.testing.assert_array_equal(out['gt_bboxes_labels'], [0, 1, 2])


def test_paste_by_box_uses_box_rectangles_without_masks():
    out = CopyPaste(mask_occluded_thr=90, selected=False, paste_by_box=True)(pair(masks=None))
    np.testing.assert_allclose(out['gt_bboxes'], [[0, 4, 10, 10]] + SRC)
    assert out['gt_masks'].masks.sum(axis=(1, 2)).tolist() == [60, 40, 270]
    with pytest.raises(RuntimeError, match='does not contain masks'):
        CopyPaste(selected=False)(pair(masks=None))
    with pytest.warns(UserWarning, match='paste_by_box is disabled'):
        CopyPaste(selected=False, paste_by_box=True)(pair())


def test_mix_results_must_hold_one_image():
    with pytest.raises(AssertionError, match='mix_results'):
        CopyPaste()(make_results(DST))
    results = pair()
    results['mix_results'] = results['mix_results'] * 2
    with pytest.raises(AssertionError, match='2 images'):
        CopyPaste()(results)


def test_repr_follows_mmdetection():
    assert repr(CopyPaste()) == ('CopyPaste(max_num_pasted=100, bbox_occluded_thr=10, '
                                 'mask_occluded_thr=300, selected=True), paste_by_box=False)')
