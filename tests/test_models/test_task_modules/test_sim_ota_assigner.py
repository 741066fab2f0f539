"""SimOTAAssigner (YOLOX): candidates, dynamic k, cost-based conflict resolution."""
import math

import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners import SimOTAAssigner
from mmdet_lite.models.task_modules.assigners.sim_ota_assigner import dynamic_k_matching
from mmdet_lite.registry import TASK_UTILS

GT = InstanceData(bboxes=torch.tensor([[0., 0., 20., 20.]]), labels=torch.tensor([1]))
# (x, y, stride, stride). Gt center (10, 10); center square half size 2.5 * 8 = 20.
PRIORS = torch.tensor([
    [10., 10., 8., 8.],  # in the box and the center square
    [5., 5., 8., 8.],  # in both
    [100., 100., 8., 8.],  # in neither: not a candidate
    [25., 25., 8., 8.],  # in the center square only: candidate with +1e5 cost
])
SCORES = torch.tensor([[0.2, 0.8]]).repeat(4, 1)


def _assign(bboxes, **cfg):
    assigner = TASK_UTILS.build(dict(type='SimOTAAssigner', **cfg))
    pred = InstanceData(priors=PRIORS, bboxes=torch.tensor(bboxes), scores=SCORES)
    return assigner.assign(pred, GT)


def test_dynamic_k_is_one_when_ious_sum_below_two():
    # IoUs of the three candidates: 1, .25, .5 -> sum 1.75 -> k = 1: the cheapest (IoU 1).
    result = _assign([[0., 0., 20., 20.], [0., 0., 10., 10.], [90., 90., 110., 110.],
                      [0., 0., 20., 10.]])
    assert result.gt_inds.tolist() == [1, 0, 0, 0]
    assert result.labels.tolist() == [1, -1, -1, -1]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., -1e5, -1e5, -1e5]))


def test_dynamic_k_two_and_center_prior_penalty():
    # IoUs 1, .95, .9 -> k = int(2.85) = 2. Prior 3 has the third IoU but +1e5 cost (outside
    # the box), so priors 0 and 1 win.
    result = _assign([[0., 0., 20., 20.], [0., 0., 20., 19.], [90., 90., 110., 110.],
                      [0., 0., 20., 18.]])
    assert result.gt_inds.tolist() == [1, 1, 0, 0]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., .95, -1e5, -1e5]))
    # candidate_topk=1 sums only the best IoU: k = 1.
    assert _assign([[0., 0., 20., 20.], [0., 0., 20., 19.], [90., 90., 110., 110.],
                    [0., 0., 20., 18.]], candidate_topk=1).gt_inds.tolist() == [1, 0, 0, 0]


def test_dynamic_k_matching_by_hand():
    cost = torch.tensor([[1., 2.], [3., .5], [.2, .1], [5., 5.]])
    ious = torch.tensor([[.9, .1], [.1, .9], [.5, .6], [0., 0.]])
    valid = torch.tensor([True, True, False, True, True])  # rows are positions 0, 1, 3, 4
    matched_ious, matched_gts = dynamic_k_matching(cost, ious, 2, valid, candidate_topk=2)
    # k = 1 for both gts (1.4 and 1.5); both pick row 2; gt 1 is cheaper (.1 < .2).
    assert matched_gts.tolist() == [1]
    torch.testing.assert_close(matched_ious, torch.tensor([.6]))
    assert valid.tolist() == [False, False, False, True, False]


def test_class_cost_is_binary_cross_entropy():
    # Two candidates with equal IoU; the one scoring the gt class higher is cheaper.
    gt = InstanceData(bboxes=torch.tensor([[0., 0., 20., 20.]]), labels=torch.tensor([0]))
    pred = InstanceData(priors=PRIORS[:2], bboxes=torch.tensor([[0., 0., 20., 10.]] * 2),
                        scores=torch.tensor([[0.3, 0.1], [0.9, 0.1]]))
    result = SimOTAAssigner().assign(pred, gt)
    assert result.gt_inds.tolist() == [0, 1]  # IoUs .5 + .5 -> k = 1
    bce = [-(math.log(p0) + math.log(1 - p1)) for p0, p1 in ((0.3, 0.1), (0.9, 0.1))]
    assert bce[1] < bce[0]


def test_empty_cases():
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    pred = InstanceData(priors=PRIORS, bboxes=torch.zeros(4, 4), scores=SCORES)
    result = SimOTAAssigner().assign(pred, empty)
    assert result.gt_inds.tolist() == [0] * 4 and result.labels.tolist() == [-1] * 4
    assert result.max_overlaps.tolist() == [0.] * 4
    far = InstanceData(priors=PRIORS[2:3], bboxes=torch.zeros(1, 4), scores=SCORES[:1])
    result = SimOTAAssigner().assign(far, GT)  # no candidate at all
    assert result.gt_inds.tolist() == [0] and result.max_overlaps.tolist() == [0.]
