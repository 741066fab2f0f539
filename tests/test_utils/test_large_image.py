"""mmdet_lite.utils.large_image: slicing a large image, shifting and merging patch results.

Slices are checked against hand-computed cases and against the properties sahi's slicing
has (every pixel covered, neighbours overlapping by ``int(ratio * slice)``, the last patch
ending at the border); the merge against torchvision's ``batched_nms`` on boxes shifted
by hand.
"""
import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData
from torchvision.ops import batched_nms

from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import (LargeImageArgumentError, get_slice_bboxes, merge_results_by_nms,
                              shift_predictions)


def _sample(bboxes, scores, labels, masks=None, **metainfo) -> DetDataSample:
    sample = DetDataSample(metainfo=metainfo)
    sample.pred_instances = InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32),
                                         scores=torch.tensor(scores),
                                         labels=torch.tensor(labels))
    if masks is not None:
        sample.pred_instances.masks = masks
    return sample


# ----------------------------------------------------------------------------- slicing

def test_slices_of_100x70_image_hand_computed():
    # 50-px patches, overlap int(0.2 * 50) = 10 px, so a step of 40 px.
    # columns: [0, 50], [40, 90], then [80, 130] runs past 100 -> moved back to [50, 100]
    # rows:    [0, 50], then [40, 90] runs past 70 -> moved back to [20, 70]
    slices = get_slice_bboxes(70, 100, 50, 50, 0.2, 0.2)
    assert slices == [[0, 0, 50, 50], [40, 0, 90, 50], [50, 0, 100, 50],
                      [0, 20, 50, 70], [40, 20, 90, 70], [50, 20, 100, 70]]


def test_slices_that_fit_exactly_are_not_moved():
    # 40-px patches, overlap int(0.25 * 40) = 10, step 30: 0, 30, 60 -> 60 + 40 == 100
    slices = get_slice_bboxes(70, 100, 40, 40, 0.25, 0.25)
    assert slices == [[0, 0, 40, 40], [30, 0, 70, 40], [60, 0, 100, 40],
                      [0, 30, 40, 70], [30, 30, 70, 70], [60, 30, 100, 70]]


def test_overlap_is_truncated_to_whole_pixels():
    # int(0.25 * 50) = 12 (not 12.5): step 38 -> 0, 38, then 76 + 50 > 100 -> [50, 100]
    xs = [s[0] for s in get_slice_bboxes(50, 100, 50, 50, 0.25, 0.25)]
    assert xs == [0, 38, 50]


def test_image_smaller_than_the_patch_is_one_patch_of_its_own_size():
    assert get_slice_bboxes(30, 45, 64, 64, 0.25, 0.25) == [[0, 0, 45, 30]]
    # one side shorter than the patch, the other longer
    assert get_slice_bboxes(30, 100, 64, 64, 0.5, 0.5) == [[0, 0, 64, 30], [32, 0, 96, 30],
                                                           [36, 0, 100, 30]]


@pytest.mark.parametrize('height, width, slice_h, slice_w, ratio_h, ratio_w', [
    (70, 100, 50, 50, 0.2, 0.2),
    (200, 300, 96, 96, 0.25, 0.25),
    (123, 457, 64, 32, 0.0, 0.5),
    (640, 640, 640, 640, 0.25, 0.25),
    (97, 61, 17, 29, 0.9, 0.33),
])
def test_slices_cover_the_image_with_the_requested_overlap(height, width, slice_h, slice_w,
                                                           ratio_h, ratio_w):
    slices = np.array(get_slice_bboxes(height, width, slice_h, slice_w, ratio_h, ratio_w))
    x1, y1, x2, y2 = slices.T
    # inside the image, every patch of the patch size (the image is larger here)
    assert (x1 >= 0).all() and (y1 >= 0).all()
    assert (x2 <= width).all() and (y2 <= height).all()
    assert ((x2 - x1) == min(slice_w, width)).all() and ((y2 - y1) == min(slice_h, height)).all()

    covered = np.zeros((height, width), dtype=int)
    for left, top, right, bottom in slices:
        covered[top:bottom, left:right] += 1
    assert (covered >= 1).all()

    # row-major order: the distinct columns / rows, in order
    cols = sorted(set(zip(x1, x2)))
    rows = sorted(set(zip(y1, y2)))
    assert len(slices) == len(cols) * len(rows)
    assert [tuple(s[:2]) for s in slices] == [(c[0], r[0]) for r in rows for c in cols]
    for spans, slice_size, ratio, size in ((cols, slice_w, ratio_w, width),
                                           (rows, slice_h, ratio_h, height)):
        assert spans[0][0] == 0 and spans[-1][1] == size  # first at 0, last at the border
        overlaps = [prev[1] - nxt[0] for prev, nxt in zip(spans, spans[1:])]
        if overlaps:
            # regular neighbours overlap by exactly int(ratio * slice); the last patch,
            # moved back to the border, by at least that
            assert overlaps[:-1] == [int(ratio * slice_size)] * (len(overlaps) - 1)
            assert overlaps[-1] >= int(ratio * slice_size)


@pytest.mark.parametrize('kwargs, message', [
    (dict(overlap_height_ratio=1.0), 'overlap_height_ratio must be in'),
    (dict(overlap_width_ratio=-0.1), 'overlap_width_ratio must be in'),
    (dict(slice_height=0), 'slice_height must be a positive int'),
    (dict(image_width=10.5), 'image_width must be a positive int'),
])
def test_bad_slice_arguments_raise(kwargs, message):
    args = dict(image_height=70, image_width=100, slice_height=50, slice_width=50,
                overlap_height_ratio=0.2, overlap_width_ratio=0.2)
    args.update(kwargs)
    with pytest.raises(LargeImageArgumentError, match=message) as info:
        get_slice_bboxes(**args)
    assert isinstance(info.value, AssertionError)  # mmdetection-style assertion too


# ----------------------------------------------------------------------------- shifting

def test_shift_predictions_moves_boxes_by_their_patch_offset():
    first = _sample([[1., 2., 11., 12.], [0., 0., 5., 5.]], [0.9, 0.4], [0, 2])
    second = _sample([[3., 4., 13., 24.]], [0.7], [1])
    shifted = shift_predictions([first, second], [(0, 0), (40, 20)], (100, 120))
    assert isinstance(shifted, InstanceData)  # as mmdetection: instances, not samples
    torch.testing.assert_close(shifted.bboxes, torch.tensor(
        [[1., 2., 11., 12.], [0., 0., 5., 5.], [43., 24., 53., 44.]]))
    torch.testing.assert_close(shifted.scores, torch.tensor([0.9, 0.4, 0.7]))
    assert shifted.labels.tolist() == [0, 2, 1]
    # the inputs are left as they were
    torch.testing.assert_close(second.pred_instances.bboxes, torch.tensor([[3., 4., 13., 24.]]))


def test_shift_predictions_moves_only_the_centre_of_rotated_boxes():
    rotated = _sample([[10., 20., 4., 6., 0.5]], [0.5], [0])
    shifted = shift_predictions([rotated], [(7, 3)], (50, 50))
    torch.testing.assert_close(shifted.bboxes, torch.tensor([[17., 23., 4., 6., 0.5]]))


def test_shift_predictions_pastes_masks_into_the_full_image():
    masks = torch.zeros(1, 4, 5, dtype=torch.bool)
    masks[0, 1:3, 2:4] = True  # rows 1-2, columns 2-3 of the patch
    sample = _sample([[2., 1., 4., 3.]], [0.8], [0], masks=masks)
    shifted = shift_predictions([sample], [(6, 2)], (10, 12))
    assert shifted.masks.shape == (1, 10, 12) and shifted.masks.dtype == torch.bool
    expected = torch.zeros(1, 10, 12, dtype=torch.bool)
    expected[0, 3:5, 8:10] = True  # rows 1+2 .. 2+2, columns 2+6 .. 3+6
    assert torch.equal(shifted.masks, expected)


def test_shift_predictions_needs_one_offset_per_patch():
    with pytest.raises(LargeImageArgumentError, match='same length'):
        shift_predictions([_sample([[0., 0., 1., 1.]], [0.5], [0])], [(0, 0), (5, 5)], (9, 9))


# ----------------------------------------------------------------------------- merging

def _overlapping_patch_results():
    """Two 40x40 patches side by side with 20 px overlap: the same objects seen twice."""
    offsets = [(0, 0), (20, 0)]
    left = _sample([[25., 10., 38., 30.],    # object A, seen from the left patch
                    [22., 12., 37., 29.],    # another class on it: NMS is class-wise
                    [2., 2., 10., 10.]],     # only in the left patch
                   [0.6, 0.55, 0.8], [0, 1, 0], img_shape=(40, 40), ori_shape=(40, 40))
    right = _sample([[5., 10., 18., 30.],    # object A again, full image [25, 10, 38, 30]
                     [6., 11., 19., 31.],    # a near duplicate: [26, 11, 39, 31]
                     [15., 20., 35., 38.]],  # only in the right patch
                    [0.9, 0.3, 0.5], [0, 0, 2], img_shape=(40, 40), ori_shape=(40, 40))
    return [left, right], offsets


def test_merge_results_by_nms_keeps_the_best_of_duplicates():
    results, offsets = _overlapping_patch_results()
    merged = merge_results_by_nms(results, offsets, (40, 60),
                                  dict(type='nms', iou_threshold=0.25))
    assert isinstance(merged, DetDataSample)
    assert merged.ori_shape == (40, 60)
    preds = merged.pred_instances
    # by hand: A (0.9, right) beats its copies 0.6 and 0.3 of class 0; the class-1 box
    # over A, the left-only and right-only boxes stay; highest score first
    torch.testing.assert_close(preds.scores, torch.tensor([0.9, 0.8, 0.55, 0.5]))
    assert preds.labels.tolist() == [0, 0, 1, 2]
    torch.testing.assert_close(preds.bboxes, torch.tensor(
        [[25., 10., 38., 30.], [2., 2., 10., 10.], [22., 12., 37., 29.], [35., 20., 55., 38.]]))

    # the same as torchvision's batched_nms over boxes shifted independently here
    boxes = torch.cat([results[0].pred_instances.bboxes,
                       results[1].pred_instances.bboxes + torch.tensor([20., 0., 20., 0.])])
    scores = torch.cat([r.pred_instances.scores for r in results])
    labels = torch.cat([r.pred_instances.labels for r in results])
    keep = batched_nms(boxes, scores, labels, 0.25)
    torch.testing.assert_close(preds.bboxes, boxes[keep])
    torch.testing.assert_close(preds.scores, scores[keep])


def test_merge_results_by_nms_options():
    results, offsets = _overlapping_patch_results()
    agnostic = merge_results_by_nms(results, offsets, (40, 60),
                                    dict(type='nms', iou_threshold=0.25, class_agnostic=True))
    # across classes the class-1 box over A (IoU 0.66 with it) goes too
    assert agnostic.pred_instances.scores.tolist() == pytest.approx([0.9, 0.8, 0.5])
    capped = merge_results_by_nms(results, offsets, (40, 60),
                                  dict(type='nms', iou_threshold=0.25, max_num=2))
    assert capped.pred_instances.scores.tolist() == pytest.approx([0.9, 0.8])
    # at IoU threshold 1 nothing is suppressed
    everything = merge_results_by_nms(results, offsets, (40, 60),
                                      dict(type='nms', iou_threshold=1.0))
    assert len(everything.pred_instances) == 6


def test_merge_results_by_nms_merges_masks_in_full_image_size():
    masks = torch.zeros(1, 40, 40, dtype=torch.bool)
    masks[0, 10:30, 5:18] = True
    left = _sample([[25., 10., 38., 30.]], [0.6], [0], masks=masks.roll(20, dims=2))
    right = _sample([[5., 10., 18., 30.]], [0.9], [0], masks=masks)
    merged = merge_results_by_nms([left, right], [(0, 0), (20, 0)], (40, 60),
                                  dict(type='nms', iou_threshold=0.5))
    assert merged.pred_instances.masks.shape == (1, 40, 60)
    expected = torch.zeros(40, 60, dtype=torch.bool)
    expected[10:30, 25:38] = True  # the right patch's mask, moved 20 px right
    assert torch.equal(merged.pred_instances.masks[0], expected)


def test_merge_results_by_nms_refuses_unknown_nms_and_empty_results():
    results, offsets = _overlapping_patch_results()
    with pytest.raises(ValueError, match="'soft_nms' is not supported"):
        merge_results_by_nms(results, offsets, (40, 60),
                             dict(type='soft_nms', iou_threshold=0.3))
    with pytest.raises(LargeImageArgumentError, match='at least one'):
        merge_results_by_nms([], [], (40, 60), dict(type='nms', iou_threshold=0.3))


def test_merge_results_by_nms_with_no_detections():
    empty = DetDataSample()
    empty.pred_instances = InstanceData(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                                        labels=torch.zeros(0, dtype=torch.long))
    merged = merge_results_by_nms([empty, empty], [(0, 0), (5, 0)], (10, 15),
                                  dict(type='nms', iou_threshold=0.3))
    assert len(merged.pred_instances) == 0
    assert merged.pred_instances.bboxes.shape == (0, 4)
