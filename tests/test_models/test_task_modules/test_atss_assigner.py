"""ATSSAssigner on hand-made priors: center-distance top-k, mean + std threshold, ignore."""
import statistics
import warnings

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners import ATSSAssigner
from mmdet_lite.models.task_modules.assigners.atss_assigner import bbox_center_distance
from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import HorizontalBoxes

GT = torch.tensor([[0., 0., 10., 10.]])
# IoU with GT: 1, 80/120, 25/175, 0; two levels of two priors.
PRIORS = torch.tensor([[0., 0., 10., 10.], [2., 0., 12., 10.], [5., 5., 15., 15.],
                       [20., 20., 30., 30.]])
IOUS = [1., 2 / 3, 1 / 7, 0.]


def _gt(bboxes=GT, labels=(4, )):
    return InstanceData(bboxes=bboxes, labels=torch.tensor(labels))


def test_mean_plus_std_threshold_by_hand():
    # topk=2 per level keeps all four priors as candidates; the threshold is mean + std.
    thr = statistics.mean(IOUS) + statistics.stdev(IOUS)
    assert 2 / 3 < thr < 1  # ~0.9165: only prior 0 passes
    assigner = TASK_UTILS.build(dict(type='ATSSAssigner', topk=2))
    result = assigner.assign(InstanceData(priors=PRIORS), [2, 2], _gt())
    assert result.num_gts == 1
    assert result.gt_inds.tolist() == [1, 0, 0, 0]
    assert result.labels.tolist() == [4, -1, -1, -1]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., -1e8, -1e8, -1e8]))


def test_candidates_are_the_topk_nearest_centers():
    gt = torch.tensor([[0., 0., 20., 20.]])  # center (10, 10)
    priors = torch.tensor([
        [0., 0., 20., 20.],  # distance 0, IoU 1
        [8., 8., 12., 12.],  # distance 0, IoU 16/400
        [9., 9., 11., 11.],  # distance 0, IoU 4/400
        [7., 7., 13., 13.],  # distance 0, IoU 36/400
        [0., 2., 20., 22.],  # distance 2, IoU 360/440 = 0.818
    ])
    # topk=4 drops the last prior (farthest center) from the candidates: threshold over
    # [1, .04, .01, .09] is ~0.763, which its IoU 0.818 would pass if it were a candidate.
    thr = statistics.mean([1, .04, .01, .09]) + statistics.stdev([1, .04, .01, .09])
    assert 0.76 < thr < 0.818
    result = ATSSAssigner(topk=4).assign(InstanceData(priors=priors), [5], _gt(gt))
    assert result.gt_inds.tolist() == [1, 0, 0, 0, 0]
    torch.testing.assert_close(bbox_center_distance(gt, priors),
                               torch.tensor([[0.], [0.], [0.], [0.], [2.]]))


def test_candidate_center_must_be_inside_the_gt():
    priors = torch.tensor([
        [-10., 0., 10., 10.],  # IoU .5 (above the threshold) but center (0, 5) on the border
        [4., 4., 6., 6.],  # IoU .04
        [30., 30., 40., 40.],  # IoU 0
        [8., 8., 12., 12.],  # IoU 4/112
    ])
    result = ATSSAssigner(topk=9).assign(InstanceData(priors=priors), [4], _gt())
    assert result.gt_inds.tolist() == [0, 0, 0, 0]
    assert (result.max_overlaps == -1e8).all()


def test_prior_positive_for_two_gts_goes_to_higher_iou():
    # gt 0 = [0,0,10,12] (IoU with prior 0: 100/120), gt 1 = [0,0,10,10] (IoU 1); prior 0
    # passes both thresholds (~0.773 and ~0.917) and goes to gt 1.
    gts = _gt(torch.tensor([[0., 0., 10., 12.], [0., 0., 10., 10.]]), labels=(7, 3))
    result = ATSSAssigner(topk=4).assign(InstanceData(priors=PRIORS), [4], gts)
    assert result.gt_inds.tolist() == [2, 0, 0, 0]
    assert result.labels.tolist() == [3, -1, -1, -1]
    assert result.max_overlaps[0].item() == pytest.approx(1.)


def test_ignored_priors_get_minus_one():
    ignore = InstanceData(bboxes=torch.tensor([[18., 18., 32., 32.]]))
    assigner = ATSSAssigner(topk=2, ignore_iof_thr=0.5)
    result = assigner.assign(InstanceData(priors=PRIORS), [2, 2], _gt(), ignore)
    assert result.gt_inds.tolist() == [1, 0, 0, -1]
    assert result.labels.tolist() == [4, -1, -1, -1]
    # Disabled by default.
    plain = ATSSAssigner(topk=2).assign(InstanceData(priors=PRIORS), [2, 2], _gt(), ignore)
    assert plain.gt_inds.tolist() == [1, 0, 0, 0]


def test_box_objects_and_extra_prior_columns():
    priors = torch.cat([PRIORS, torch.ones(4, 1)], dim=1)  # [N, 5]: the fifth is dropped
    result = ATSSAssigner(topk=2).assign(InstanceData(priors=priors), [2, 2],
                                         _gt(HorizontalBoxes(GT)))
    assert result.gt_inds.tolist() == [1, 0, 0, 0]


def test_ddod_cost_uses_scores_and_predicted_boxes():
    # cost = sigmoid(score) ** (1 - alpha) * IoU(pred, gt) ** alpha with alpha = 0.8.
    logits = torch.tensor([[-10.], [10.], [0.], [0.]])
    pred = InstanceData(priors=PRIORS, bboxes=PRIORS.clone(), scores=logits)
    gt = InstanceData(bboxes=GT, labels=torch.tensor([0]))
    result = ATSSAssigner(topk=2, alpha=0.8).assign(pred, [2, 2], gt)
    costs = [torch.sigmoid(torch.tensor(s)).item()**0.2 * iou**0.8
             for s, iou in zip([-10., 10., 0., 0.], IOUS)]
    # Prior 1 (good score) beats prior 0 (tiny score) now.
    assert costs[1] >= statistics.mean(costs) + statistics.stdev(costs) > costs[0]
    assert result.gt_inds.tolist() == [0, 1, 0, 0]
    assert result.max_overlaps[1].item() == pytest.approx(costs[1], rel=1e-5)


def test_ddod_inputs_checked_and_plain_mode_warns():
    with pytest.raises(AssertionError, match='scores'):
        ATSSAssigner(topk=2, alpha=0.8).assign(InstanceData(priors=PRIORS), [4], _gt())
    with pytest.warns(UserWarning, match='alpha'):
        ATSSAssigner(topk=2).assign(InstanceData(priors=PRIORS, scores=torch.zeros(4, 1)),
                                    [4], _gt())
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        ATSSAssigner(topk=2).assign(InstanceData(priors=PRIORS), [4], _gt())


def test_empty_gts_and_empty_priors():
    empty_gt = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = ATSSAssigner(topk=2).assign(InstanceData(priors=PRIORS), [2, 2], empty_gt)
    assert result.num_gts == 0
    assert result.gt_inds.tolist() == [0] * 4
    assert result.labels.tolist() == [-1] * 4
    assert result.max_overlaps.tolist() == [0.] * 4
    result = ATSSAssigner(topk=2).assign(InstanceData(priors=torch.zeros(0, 4)), [0], _gt())
    assert result.gt_inds.shape == result.labels.shape == result.max_overlaps.shape == (0, )
