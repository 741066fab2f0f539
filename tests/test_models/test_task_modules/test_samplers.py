"""RandomSampler, PseudoSampler and SamplingResult."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules import (AssignResult, PseudoSampler, RandomSampler,
                                            SamplingResult)
from mmdet_lite.registry import TASK_UTILS

GT = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]]),
                  labels=torch.tensor([3, 7]))


def _assignment(gt_inds):
    gt_inds = torch.tensor(gt_inds)
    labels = torch.where(gt_inds > 0, torch.tensor([0, 3, 7])[gt_inds.clamp(min=0)],
                         torch.full_like(gt_inds, -1))
    return AssignResult(2, gt_inds, torch.rand(len(gt_inds)), labels)


def _priors(n):
    xy = torch.arange(n, dtype=torch.float32)[:, None]
    return InstanceData(priors=torch.cat([xy, xy, xy + 5, xy + 5], dim=1))


# 6 positives (indices 0..5), 10 negatives (6..15), 2 ignored (16, 17).
GT_INDS = [1, 2, 1, 2, 1, 2] + [0] * 10 + [-1, -1]


def test_random_sampler_respects_num_and_pos_fraction():
    sampler = TASK_UTILS.build(dict(type='RandomSampler', num=8, pos_fraction=0.25,
                                    add_gt_as_proposals=False))
    result = sampler.sample(_assignment(GT_INDS), _priors(18), GT)
    assert isinstance(result, SamplingResult)
    assert result.pos_inds.numel() == 2  # int(8 * 0.25)
    assert result.neg_inds.numel() == 6  # the rest of num
    assert (result.pos_inds < 6).all() and ((result.neg_inds >= 6) & (result.neg_inds < 16)).all()
    assert result.avg_factor == 8
    assert result.priors.shape == (8, 4)
    torch.testing.assert_close(result.priors[:2], _priors(18).priors[result.pos_inds])
    assert result.pos_is_gt.tolist() == [0, 0]


def test_random_sampler_fills_with_negatives_when_few_positives():
    sampler = RandomSampler(num=8, pos_fraction=0.5, add_gt_as_proposals=False)
    result = sampler.sample(_assignment([1] + [0] * 12), _priors(13), GT)
    assert result.pos_inds.tolist() == [0]
    assert result.neg_inds.numel() == 7


def test_random_sampler_neg_pos_ub():
    sampler = RandomSampler(num=8, pos_fraction=0.25, neg_pos_ub=1, add_gt_as_proposals=False)
    result = sampler.sample(_assignment(GT_INDS), _priors(18), GT)
    assert result.pos_inds.numel() == 2 and result.neg_inds.numel() == 2


def test_random_sampler_is_deterministic_under_seed():
    sampler = RandomSampler(num=8, pos_fraction=0.25, add_gt_as_proposals=False)
    torch.manual_seed(3)
    first = sampler.sample(_assignment(GT_INDS), _priors(18), GT)
    torch.manual_seed(3)
    second = sampler.sample(_assignment(GT_INDS), _priors(18), GT)
    assert torch.equal(first.pos_inds, second.pos_inds)
    assert torch.equal(first.neg_inds, second.neg_inds)


def test_add_gt_as_proposals_prepends_gt_boxes_as_positives():
    sampler = RandomSampler(num=100, pos_fraction=0.5)  # large enough to keep everything
    assign_result = _assignment(GT_INDS)
    result = sampler.sample(assign_result, _priors(18), GT)
    assert assign_result.num_preds == 20  # add_gt_ was applied in place
    assert assign_result.gt_inds[:2].tolist() == [1, 2]
    assert result.pos_inds.tolist() == list(range(8))  # 2 gts + 6 original positives
    assert result.pos_is_gt.tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    torch.testing.assert_close(result.pos_priors[:2], GT.bboxes)
    assert result.pos_assigned_gt_inds.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert result.pos_gt_labels.tolist() == [3, 7, 3, 7, 3, 7, 3, 7]
    torch.testing.assert_close(result.pos_gt_bboxes, GT.bboxes[[0, 1] * 4])
    assert result.neg_inds.numel() == 10


def test_pseudo_sampler_keeps_all_and_averages_over_positives():
    sampler = TASK_UTILS.build(dict(type='PseudoSampler'))
    assert isinstance(sampler, PseudoSampler)
    priors = _priors(18)
    result = sampler.sample(_assignment(GT_INDS), priors, GT)
    assert result.pos_inds.tolist() == list(range(6))
    assert result.neg_inds.tolist() == list(range(6, 16))
    assert result.avg_factor == 6  # positives only
    assert result.num_gts == 2
    torch.testing.assert_close(result.bboxes, priors.priors[:16])
    assert set(result.info) >= {'pos_inds', 'neg_inds', 'pos_priors', 'neg_priors', 'pos_is_gt',
                                'num_gts', 'pos_assigned_gt_inds', 'avg_factor'}


def test_sampling_without_gt_boxes():
    gt = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    assign_result = AssignResult(0, torch.zeros(5, dtype=torch.long), torch.zeros(5),
                                 torch.full((5, ), -1))
    result = RandomSampler(num=4, pos_fraction=0.25).sample(assign_result, _priors(5), gt)
    assert result.pos_inds.numel() == 0 and result.neg_inds.numel() == 4
    assert result.pos_gt_bboxes.shape == (0, 4)
    assert result.avg_factor == 1 + 4  # num_pos is floored at 1
