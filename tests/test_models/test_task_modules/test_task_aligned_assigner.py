"""TaskAlignedAssigner (TOOD) and TopkHungarianAssigner (DDQ) by hand."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners import (TaskAlignedAssigner,
                                                      TopkHungarianAssigner)
from mmdet_lite.registry import TASK_UTILS

GT = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]), labels=torch.tensor([0]))
ANCHORS = torch.tensor([[0., 0., 10., 10.], [2., 2., 12., 12.], [20., 20., 30., 30.],
                        [4., 4., 6., 6.]])
# Predicted boxes: IoU with the gt 1, .8, 1, 0.
BOXES = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 8.], [0., 0., 10., 10.],
                      [50., 50., 60., 60.]])
SCORES = torch.tensor([[.5], [.9], [.9], [.9]])


def _assign(topk, gt=GT, scores=SCORES):
    assigner = TASK_UTILS.build(dict(type='TaskAlignedAssigner', topk=topk))
    return assigner.assign(InstanceData(priors=ANCHORS, bboxes=BOXES, scores=scores), gt)


def test_alignment_metric_topk_and_center_check():
    # Metrics score * IoU**6: .5, .9 * .8**6 = .2359, .9 (anchor 2's center is outside the
    # gt), 0 (not > 0). topk=3 picks anchors 2, 0, 1; anchor 2 fails the center check.
    result = _assign(topk=3)
    assert result.gt_inds.tolist() == [1, 1, 0, 0]
    assert result.labels.tolist() == [0, 0, -1, -1]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., .8, -1e8, -1e8]))
    torch.testing.assert_close(result.assign_metrics,
                               torch.tensor([.5, .9 * .8**6, 0., 0.]))
    # topk=1 keeps only anchor 2, which is outside: no positive at all.
    assert _assign(topk=1).gt_inds.tolist() == [0, 0, 0, 0]


def test_shared_candidate_goes_to_higher_iou():
    gts = InstanceData(bboxes=torch.tensor([[0., 0., 10., 9.], [0., 0., 10., 10.]]),
                       labels=torch.tensor([1, 0]))
    scores = torch.tensor([[.5, .5], [.9, .9], [.9, .9], [.9, .9]])
    result = _assign(topk=3, gt=gts, scores=scores)
    # Anchor 0's box has IoU .9 with gt 0 and 1 with gt 1.
    assert result.gt_inds[0].item() == 2
    assert result.labels[0].item() == 0


def test_empty_and_bad_topk():
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = _assign(topk=3, gt=empty)
    assert result.gt_inds.tolist() == [0] * 4 and result.labels.tolist() == [-1] * 4
    assert result.max_overlaps.tolist() == [0.] * 4
    assert result.assign_metrics.tolist() == [0.] * 4
    with pytest.raises(AssertionError, match='topk'):
        TaskAlignedAssigner(topk=0)


def _topk_hungarian(topk=2):
    return TASK_UTILS.build(dict(type='TopkHungarianAssigner', topk=topk))


GT_BOXES = torch.tensor([[0., 0., 10., 10.], [50., 50., 70., 70.]])
GT_LABELS = torch.tensor([0, 1])
PRED_BOXES = torch.tensor([[0., 0., 10., 10.], [1., 0., 10., 10.], [50., 50., 70., 70.],
                           [50., 50., 70., 68.], [200., 200., 210., 210.]])
PRED_SCORES = torch.tensor([[.9, .1], [.8, .1], [.1, .9], [.1, .8], [.5, .5]])
META = dict(img_shape=(256, 256))


def test_topk_hungarian_gives_each_gt_k_predictions():
    result = _topk_hungarian().assign(PRED_SCORES, PRED_BOXES, GT_BOXES, GT_LABELS, META)
    assert result.gt_inds.tolist() == [1, 1, 2, 2, 0]
    assert result.labels.tolist() == [0, 0, 1, 1, -1]
    # Per matched prediction (rows in order): IoU with its gt and score * IoU ** 6.
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., .9, 1., .9]))
    torch.testing.assert_close(result.assign_metrics,
                               torch.tensor([.9, .8 * .9**6, .9, .8 * .9**6]))
    # k = min(topk, num_preds // num_gts): topk=5 still gives 2 each.
    assert _topk_hungarian(5).assign(PRED_SCORES, PRED_BOXES, GT_BOXES, GT_LABELS,
                                     META).gt_inds.tolist() == [1, 1, 2, 2, 0]
    # topk=1 is plain one-to-one matching.
    assert _topk_hungarian(1).assign(PRED_SCORES, PRED_BOXES, GT_BOXES, GT_LABELS,
                                     META).gt_inds.tolist() == [1, 0, 2, 0, 0]


def test_topk_hungarian_defaults_and_empty():
    assigner = TopkHungarianAssigner(topk=4)
    assert type(assigner.cls_cost).__name__ == 'FocalLossCost' and assigner.cls_cost.weight == 2.
    assert type(assigner.reg_cost).__name__ == 'BBoxL1Cost' and assigner.reg_cost.weight == 5.
    assert assigner.iou_cost.iou_mode == 'giou' and assigner.iou_cost.weight == 2.
    result = assigner.assign(PRED_SCORES, PRED_BOXES, torch.zeros(0, 4),
                             torch.zeros(0, dtype=torch.long), META)
    assert result.num_gts == 0 and result.max_overlaps is None
    assert result.gt_inds.tolist() == [0] * 5 and result.labels.tolist() == [-1] * 5
    # Fewer predictions than gts: k = 0, nothing matched (labels None, as mmdetection).
    few = assigner.assign(PRED_SCORES[:1], PRED_BOXES[:1], GT_BOXES, GT_LABELS, META)
    assert few.gt_inds.tolist() == [0] and few.labels is None
