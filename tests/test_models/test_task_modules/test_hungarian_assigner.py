"""HungarianAssigner and its match costs: hand-computed costs, optimality, edge cases."""
import itertools
import math

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules import AssignResult, HungarianAssigner
from mmdet_lite.registry import TASK_UTILS

DETR_COSTS = [
    dict(type='ClassificationCost', weight=1.),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)
]
META = dict(img_shape=(100, 200))  # (h, w)


def test_classification_cost_is_minus_softmax_probability():
    cost = TASK_UTILS.build(dict(type='ClassificationCost', weight=2.))
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))  # softmax = probs
    out = cost(InstanceData(scores=logits), InstanceData(labels=torch.tensor([2, 0, 0])))
    torch.testing.assert_close(out, -2 * torch.tensor([[0.1, 0.7, 0.7], [0.6, 0.1, 0.1]]))


def test_bbox_l1_cost_is_normalized_by_image_size():
    pred = InstanceData(bboxes=torch.tensor([[0., 0., 20., 10.]]))
    gt = InstanceData(bboxes=torch.tensor([[20., 10., 60., 30.]]))
    xyxy = TASK_UTILS.build(dict(type='BBoxL1Cost'))(pred, gt, META)
    # |0-20|/200 + |0-10|/100 + |20-60|/200 + |10-30|/100 = 0.1 + 0.1 + 0.2 + 0.2
    torch.testing.assert_close(xyxy, torch.tensor([[0.6]]))
    xywh = TASK_UTILS.build(dict(type='BBoxL1Cost', box_format='xywh', weight=5.))(
        pred, gt, META)
    # cx: 10 vs 40 -> 0.15; cy: 5 vs 20 -> 0.15; w: 20 vs 40 -> 0.1; h: 10 vs 20 -> 0.1
    torch.testing.assert_close(xywh, torch.tensor([[5 * 0.5]]))
    with pytest.raises(ValueError, match="box_format must be 'xyxy' or 'xywh'"):
        TASK_UTILS.build(dict(type='BBoxL1Cost', box_format='cxcy'))
    with pytest.raises(KeyError, match='img_shape'):
        TASK_UTILS.build(dict(type='BBoxL1Cost'))(pred, gt, None)


def test_giou_cost_by_hand():
    pred = InstanceData(bboxes=torch.tensor([[0., 0., 2., 2.]]))
    gt = InstanceData(bboxes=torch.tensor([[1., 1., 3., 3.], [0., 0., 2., 2.]]))
    cost = TASK_UTILS.build(dict(type='IoUCost', iou_mode='giou', weight=2.))(pred, gt)
    # gt 0: IoU = 1/7, enclosing 3x3 = 9, GIoU = 1/7 - (9 - 7)/9; gt 1: identical, GIoU = 1.
    torch.testing.assert_close(cost, torch.tensor([[-2 * (1 / 7 - 2 / 9), -2.]]))


def random_case(generator, num_preds, num_gts, num_classes=4):
    def boxes(n):
        xy = torch.rand(n, 2, generator=generator) * torch.tensor([150., 70.])
        wh = torch.rand(n, 2, generator=generator) * 45 + 1
        return torch.cat([xy, xy + wh], dim=1)

    pred = InstanceData(scores=torch.randn(num_preds, num_classes + 1, generator=generator),
                        bboxes=boxes(num_preds))
    gt = InstanceData(bboxes=boxes(num_gts),
                      labels=torch.randint(0, num_classes, (num_gts, ), generator=generator))
    return pred, gt


@pytest.mark.parametrize('seed', range(5))
def test_assignment_is_optimal_against_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    num_preds, num_gts = 6, 3
    pred, gt = random_case(generator, num_preds, num_gts)
    assigner = HungarianAssigner(DETR_COSTS)
    result = assigner.assign(pred, gt, META)

    cost = sum(c(pred, gt, META) for c in assigner.match_costs)  # [6, 3]
    best = min(
        sum(cost[p, g].item() for g, p in enumerate(preds))
        for preds in itertools.permutations(range(num_preds), num_gts))
    matched = (result.gt_inds > 0).nonzero().squeeze(1)
    assert len(matched) == num_gts
    assert sorted(result.gt_inds[matched].tolist()) == [1, 2, 3]  # each gt exactly once
    total = sum(cost[p, result.gt_inds[p] - 1].item() for p in matched.tolist())
    assert math.isclose(total, best, rel_tol=1e-5, abs_tol=1e-5)
    # Labels follow the matched gt; unmatched predictions are background (0, label -1).
    assert result.labels[matched].tolist() == gt.labels[result.gt_inds[matched] - 1].tolist()
    assert (result.gt_inds == 0).sum() == num_preds - num_gts
    assert (result.labels[result.gt_inds == 0] == -1).all()


def test_obvious_match_by_hand():
    gt = InstanceData(bboxes=torch.tensor([[10., 10., 50., 50.], [120., 40., 180., 90.]]),
                      labels=torch.tensor([1, 0]))
    # Prediction 2 sits on gt 0 and prediction 0 on gt 1; prediction 1 is far from both.
    pred = InstanceData(
        bboxes=torch.tensor([[121., 41., 179., 90.], [0., 90., 5., 99.], [11., 10., 50., 49.]]),
        scores=torch.tensor([[0., 3.], [0., 0.], [3., 0.]]))
    result = HungarianAssigner(DETR_COSTS).assign(pred, gt, META)
    assert isinstance(result, AssignResult)
    assert result.num_gts == 2 and result.max_overlaps is None
    assert result.gt_inds.tolist() == [2, 0, 1]
    assert result.labels.tolist() == [0, -1, 1]


def test_no_ground_truth_makes_every_prediction_background():
    pred, _ = random_case(torch.Generator().manual_seed(0), 5, 1)
    gt = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = HungarianAssigner(DETR_COSTS).assign(pred, gt, META)
    assert result.num_gts == 0
    assert result.gt_inds.tolist() == [0] * 5
    assert result.labels.tolist() == [-1] * 5


def test_more_ground_truths_than_predictions_leaves_some_unmatched():
    # As mmdetection: the rectangular assignment matches every prediction to a distinct
    # ground truth and leaves the extra ground truths without a prediction.
    pred, gt = random_case(torch.Generator().manual_seed(0), 2, 3)
    result = HungarianAssigner(DETR_COSTS).assign(pred, gt, META)
    assert result.num_gts == 3
    assert sorted(result.gt_inds.tolist())[0] >= 1  # both predictions are positives
    assert len(set(result.gt_inds.tolist())) == 2  # ... of two different ground truths
    assert (result.labels == gt.labels[result.gt_inds - 1]).all()


def test_degenerate_boxes_give_a_finite_assignment():
    gt = InstanceData(bboxes=torch.tensor([[20., 20., 20., 20.], [5., 5., 5., 30.]]),
                      labels=torch.tensor([0, 1]))
    pred = InstanceData(bboxes=torch.tensor([[20., 20., 20., 20.], [4., 4., 6., 31.],
                                             [0., 0., 0., 0.]]),
                        scores=torch.zeros(3, 3))
    assigner = HungarianAssigner(DETR_COSTS)
    cost = sum(c(pred, gt, META) for c in assigner.match_costs)
    assert torch.isfinite(cost).all()
    assert assigner.assign(pred, gt, META).gt_inds.tolist() == [1, 2, 0]


def test_non_finite_costs_are_reported():
    pred, gt = random_case(torch.Generator().manual_seed(0), 3, 1)
    pred.scores[0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN/inf'):
        HungarianAssigner(DETR_COSTS).assign(pred, gt, META)


def test_match_costs_config():
    single = TASK_UTILS.build(dict(type='HungarianAssigner',
                                   match_costs=dict(type='ClassificationCost')))
    assert len(single.match_costs) == 1
    with pytest.raises(ValueError, match='non-empty list'):
        HungarianAssigner([])
