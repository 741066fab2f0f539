"""InstanceBalancedPosSampler, IoUBalancedNegSampler, CombinedSampler on hand assignments."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules import AssignResult
from mmdet_lite.models.task_modules.samplers import (CombinedSampler,
                                                     InstanceBalancedPosSampler,
                                                     IoUBalancedNegSampler, RandomSampler,
                                                     SamplingResult)
from mmdet_lite.registry import TASK_UTILS


def _assign(gt_inds, max_overlaps=None, num_gts=3):
    gt_inds = torch.tensor(gt_inds)
    if max_overlaps is None:
        max_overlaps = torch.where(gt_inds > 0, 0.7, 0.1)
    labels = torch.where(gt_inds > 0, gt_inds - 1, torch.full_like(gt_inds, -1))
    return AssignResult(num_gts, gt_inds, torch.as_tensor(max_overlaps, dtype=torch.float32),
                        labels)


def _priors(n):
    xy = torch.arange(n, dtype=torch.float32)[:, None]
    return InstanceData(priors=torch.cat([xy, xy, xy + 5, xy + 5], dim=1))


GTS = InstanceData(bboxes=torch.tensor([[0., 0., 9., 9.]] * 3), labels=torch.tensor([0, 1, 2]))


def test_base_sampler_draws_through_pos_and_neg_sampler_attributes():
    sampler = RandomSampler(num=4, pos_fraction=0.5)
    assert sampler.pos_sampler is sampler and sampler.neg_sampler is sampler


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_instance_balanced_gives_every_gt_its_share(seed):
    torch.manual_seed(seed)
    # gt 1 has 10 positives, gt 2 has 2, and 4 negatives; 6 positives wanted:
    # round(6 / 2) + 1 = 4 per gt -> 4 of gt 1 and both of gt 2
    assign = _assign([1] * 10 + [2] * 2 + [0] * 4, num_gts=2)
    sampler = InstanceBalancedPosSampler(num=12, pos_fraction=0.5, add_gt_as_proposals=False)
    result = sampler.sample(assign, _priors(16), GTS[:2])
    gt_of_pos = assign.gt_inds[result.pos_inds]
    assert (gt_of_pos == 1).sum() == 4 and (gt_of_pos == 2).sum() == 2
    assert result.neg_inds.tolist() == [12, 13, 14, 15]


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_instance_balanced_fills_up_with_distinct_unpicked_positives(seed):
    torch.manual_seed(seed)
    # gts 1/2/3 with 10/1/1 positives, 8 wanted: 4 per gt gives 4 + 1 + 1, then 2 more
    # distinct positives of gt 1
    assign = _assign([1] * 10 + [2, 3] + [0] * 8)
    pos = InstanceBalancedPosSampler(num=16, pos_fraction=0.5)._sample_pos(assign, 8)
    assert len(pos) == 8 and len(pos.unique()) == 8
    assert {10, 11} <= set(pos.tolist())
    # few positives: all of them
    assert InstanceBalancedPosSampler(4, 0.5)._sample_pos(_assign([1, 0, 2]), 5).tolist() == \
        [0, 2]


NEG_IOUS = [0.05] * 10 + [0.25] * 10 + [0.45] * 10


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_iou_balanced_neg_sampler_spreads_over_bins(seed):
    torch.manual_seed(seed)
    # 4 positives with IoU 0.6, 30 negatives in 3 IoU groups; 3 bins of width 0.2 over
    # [0, 0.6): 9 negatives -> 3 from each group
    assign = _assign([1] * 4 + [0] * 30, [0.6] * 4 + NEG_IOUS)
    sampler = TASK_UTILS.build(dict(type='IoUBalancedNegSampler', num=12, pos_fraction=0.25,
                                    floor_thr=-1, floor_fraction=0, num_bins=3,
                                    add_gt_as_proposals=False))
    result = sampler.sample(assign, _priors(34), GTS)
    assert result.pos_inds.numel() == 3 and result.neg_inds.numel() == 9
    ious = assign.max_overlaps[result.neg_inds]
    for value in (0.05, 0.25, 0.45):
        assert int(torch.isclose(ious, torch.tensor(value)).sum()) == 3
    assert sampler.floor_thr == -1  # not rewritten by sampling


@pytest.mark.parametrize('seed', [0, 1])
def test_iou_balanced_floor_fraction_and_floor_thr(seed):
    torch.manual_seed(seed)
    # floor_thr 0.1: half of 8 from IoU < 0.1, the other 4 over 2 bins from 0.1 to 0.6
    # (bins [0.1, 0.35) and [0.35, 0.6)) -> 2 at 0.25 and 2 at 0.45
    assign = _assign([1] * 4 + [0] * 30, [0.6] * 4 + NEG_IOUS)
    sampler = IoUBalancedNegSampler(num=8, pos_fraction=0.5, floor_thr=0.1, floor_fraction=0.5,
                                    num_bins=2)
    neg = sampler._sample_neg(assign, 8)
    ious = assign.max_overlaps[neg]
    counts = [int(torch.isclose(ious, torch.tensor(v)).sum()) for v in (0.05, 0.25, 0.45)]
    assert counts == [4, 2, 2] and len(neg.unique()) == 8


def test_iou_balanced_fills_up_when_bins_are_short():
    # all negatives in the first bin: 3 per bin, then 6 more distinct ones at random
    assign = _assign([1] + [0] * 12, [0.9] + [0.1] * 12)
    neg = IoUBalancedNegSampler(num=9, pos_fraction=0.)._sample_neg(assign, 9)
    assert len(neg) == 9 and len(neg.unique()) == 9 and (neg >= 1).all()
    with pytest.raises(AssertionError):
        IoUBalancedNegSampler(num=9, pos_fraction=0.5, floor_thr=-0.5)
    with pytest.raises(AssertionError):
        IoUBalancedNegSampler(num=9, pos_fraction=0.5, num_bins=0)


def test_combined_sampler_uses_both_samplers():
    cfg = dict(type='CombinedSampler', num=12, pos_fraction=0.25, add_gt_as_proposals=False,
               pos_sampler=dict(type='InstanceBalancedPosSampler'),
               neg_sampler=dict(type='IoUBalancedNegSampler', floor_thr=-1, num_bins=3))
    sampler = TASK_UTILS.build(cfg)
    assert isinstance(sampler, CombinedSampler)
    assert isinstance(sampler.pos_sampler, InstanceBalancedPosSampler)
    assert isinstance(sampler.neg_sampler, IoUBalancedNegSampler)
    assert sampler.pos_sampler.num == 12 and sampler.neg_sampler.pos_fraction == 0.25
    assign = _assign([1] * 4 + [0] * 30, [0.6] * 4 + NEG_IOUS)
    result = sampler.sample(assign, _priors(34), GTS)
    assert isinstance(result, SamplingResult)
    assert result.pos_inds.numel() == 3 and result.neg_inds.numel() == 9
    ious = assign.max_overlaps[result.neg_inds]
    assert int(torch.isclose(ious, torch.tensor(0.45)).sum()) == 3
    with pytest.raises(NotImplementedError):
        sampler._sample_pos()
