"""OHEMSampler and ScoreHLRSampler with stub RoI heads, nms_match, MaskPseudoSampler,
and the SamplingResult repr."""
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules import AssignResult
from mmdet_lite.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmdet_lite.models.task_modules.samplers import (MaskPseudoSampler, MaskSamplingResult,
                                                     OHEMSampler, SamplingResult)
from mmdet_lite.models.task_modules.samplers.nms_match import nms_match
from mmdet_lite.registry import TASK_UTILS


def _assign(gt_inds, num_gts=1):
    gt_inds = torch.tensor(gt_inds)
    labels = torch.where(gt_inds > 0, torch.zeros_like(gt_inds), torch.full_like(gt_inds, -1))
    return AssignResult(num_gts, gt_inds, torch.zeros(len(gt_inds)), labels)


class _StubHead:
    """Background is class ``num_classes``; per-RoI cross-entropy with 'none' reduction."""

    num_classes = 2

    def __init__(self):
        self.calls = []
        self.bbox_coder = DeltaXYWHBBoxCoder()

    def loss(self, cls_score, bbox_pred, rois, labels, label_weights, bbox_targets,
             bbox_weights, reduction_override=None):
        self.calls.append(dict(bbox_pred=bbox_pred, reduction_override=reduction_override,
                               labels=labels))
        return dict(loss_cls=F.cross_entropy(cls_score, labels, reduction='none'))


class _OHEMContext:
    """Scores class 0 by the roi's x1, so a larger x1 is a harder negative."""

    def __init__(self):
        self.bbox_head = _StubHead()

    def _bbox_forward(self, feats, rois):
        x1 = rois[:, 1]
        return dict(cls_score=torch.stack([x1 / 4, torch.zeros_like(x1), torch.zeros_like(x1)],
                                          dim=1))


def _priors(x1s):
    x1 = torch.tensor(x1s, dtype=torch.float32)[:, None]
    return torch.cat([x1, torch.zeros_like(x1), x1 + 10, torch.full_like(x1, 10.)], dim=1)


def test_ohem_picks_the_highest_loss_negatives():
    context = _OHEMContext()
    sampler = TASK_UTILS.build(dict(type='OHEMSampler', num=4, pos_fraction=0.25,
                                    context=context, add_gt_as_proposals=False))
    # priors 0 positive; 1..8 negatives with shuffled x1 (hardness)
    x1s = [0., 3., 9., 1., 7., 2., 8., 5., 4.]
    result = sampler.sample(_assign([1] + [0] * 8), InstanceData(priors=_priors(x1s)),
                            InstanceData(bboxes=_priors([0.]), labels=torch.tensor([0])),
                            feats=[torch.zeros(1)])
    assert result.pos_inds.tolist() == [0]
    # the 3 largest x1 among negatives: 9 (idx 2), 8 (idx 6), 7 (idx 4)
    assert sorted(result.neg_inds.tolist()) == [2, 4, 6]
    call = context.bbox_head.calls[-1]
    assert call['bbox_pred'] is None and call['reduction_override'] == 'none'
    assert call['labels'].tolist() == [2] * 8  # negatives are scored as background


def test_ohem_positives_use_their_labels_and_cascade_context():
    head = _StubHead()
    stages = []

    def bbox_forward(stage, feats, rois):
        stages.append(stage)
        x1 = rois[:, 1]
        # class 0 logit falls with x1: a larger x1 is a harder positive of class 0
        return dict(cls_score=torch.stack([-x1, torch.zeros_like(x1), torch.zeros_like(x1)], 1))

    context = SimpleNamespace(num_stages=2, current_stage=1, bbox_head=[None, head],
                              _bbox_forward=bbox_forward)
    sampler = OHEMSampler(num=4, pos_fraction=0.5, context=context, add_gt_as_proposals=False)
    assert sampler.bbox_head is head
    pos = sampler._sample_pos(_assign([1, 1, 1, 1, 0]), 2, bboxes=_priors([5., 1., 7., 3., 0.]),
                              feats=None)
    assert sorted(pos.tolist()) == [0, 2] and stages == [1]
    assert head.calls[-1]['labels'].tolist() == [0, 0, 0, 0]


def test_nms_match_groups_by_score_order():
    dets = torch.tensor([[0., 0., 10., 10., 0.6],
                         [50., 50., 60., 60., 0.7],
                         [0., 0., 10., 11., 0.9],
                         [50., 50., 60., 61., 0.3],
                         [100., 100., 110., 110., 0.5]])
    groups = nms_match(dets, 0.5)
    assert [g.tolist() for g in groups] == [[2, 0], [1, 3], [4]]
    assert all(g.dtype == torch.long for g in groups)
    np_groups = nms_match(dets.numpy(), 0.95)  # IoU 10/11 < 0.95: nothing merges
    assert [g.tolist() for g in np_groups] == [[2], [1], [0], [4], [3]]
    assert nms_match(torch.zeros(0, 5), 0.5) == []
    with pytest.raises(AssertionError):
        nms_match(torch.zeros(2, 4), 0.5)


# Score-HLR: negatives n0..n4 (prior indices 1..5), foreground scores 0.9, 0.8, 0.7, 0.6, 0.01;
# n0/n1 and n2/n3 overlap (IoU >= 0.5), n4 is below score_thr.
HLR_BOXES = [[0., 0., 10., 10.], [0., 0., 10., 11.], [50., 50., 60., 60.],
             [50., 50., 60., 61.], [100., 100., 110., 110.]]
HLR_SCORES = [0.9, 0.8, 0.7, 0.6, 0.01]


class _HLRContext:
    with_shared_head = False
    bbox_roi_extractor = object()

    def __init__(self):
        self.bbox_head = _StubHead()

    def _bbox_forward(self, feats, rois):
        probs = []
        for roi in rois[:, 1:].tolist():
            p = HLR_SCORES[HLR_BOXES.index(roi)]
            probs.append([p, 0.001, 1 - p - 0.001])
        cls_score = torch.tensor(probs).log()
        return dict(cls_score=cls_score, bbox_pred=torch.zeros(len(rois), 8))


def _hlr_expected_weights(ranks, num_expected, num_valid, select_scores, k=0.5):
    up = max(num_expected, num_valid)
    weights = (up - np.array(ranks, dtype=np.float64)) / up
    weights = np.concatenate([weights, [weights.min()] * (num_expected - len(ranks))]) ** k
    loss = -np.log(1 - np.array(select_scores) - 0.001)
    return weights * loss.sum() / (loss * weights).sum()


@pytest.mark.parametrize('num, expected_neg, ranks', [
    (3, [1, 3], [0, 1]),  # ranking n0 (4.9), n2 (4.7), n1 (3.8), n3 (3.6)
    (6, [1, 3, 2, 4, 5], [0, 1, 2, 3]),  # all 4 ranked, then the low-score one at random
])
def test_score_hlr_ranks_negatives_and_weights_them(num, expected_neg, ranks):
    context = _HLRContext()
    sampler = TASK_UTILS.build(dict(type='ScoreHLRSampler', num=num, pos_fraction=0.34,
                                    context=context, add_gt_as_proposals=False))
    priors = torch.tensor([[0., 0., 5., 5.]] + HLR_BOXES)
    result, weights = sampler.sample(_assign([1, 0, 0, 0, 0, 0]), InstanceData(priors=priors),
                                     InstanceData(bboxes=priors[:1], labels=torch.tensor([0])),
                                     feats=None)
    assert isinstance(result, SamplingResult) and result.pos_inds.tolist() == [0]
    assert result.neg_inds.tolist() == expected_neg
    scores = [HLR_SCORES[i - 1] for i in expected_neg]
    expected = _hlr_expected_weights(ranks, len(expected_neg), 4, scores)
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float32))


def test_mask_pseudo_sampler_and_result():
    masks = torch.arange(4 * 2 * 2, dtype=torch.float32).view(4, 2, 2)
    gt_masks = torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])
    assign = AssignResult(2, torch.tensor([1, 0, 2, -1]), torch.zeros(4),
                          torch.tensor([0, -1, 1, -1]))
    sampler = TASK_UTILS.build(dict(type='MaskPseudoSampler'))
    result = sampler.sample(assign, InstanceData(masks=masks),
                            InstanceData(masks=gt_masks, labels=torch.tensor([0, 1])))
    assert isinstance(result, MaskSamplingResult) and isinstance(sampler, MaskPseudoSampler)
    assert result.pos_inds.tolist() == [0, 2] and result.neg_inds.tolist() == [1]
    assert result.avg_factor == 2 and result.num_gts == 2
    assert torch.equal(result.pos_gt_masks, gt_masks)
    assert torch.equal(result.masks, masks[[0, 2, 1]])
    assert str(result).startswith("<MaskSamplingResult({\n    'neg_inds': tensor([1]),\n"
                                  "    'neg_masks': torch.Size([1, 2, 2]),\n")


def test_sampling_result_repr_is_mmdetections_nice_repr():
    assign = _assign([1, 0, 0])
    result = SamplingResult(torch.tensor([0]), torch.tensor([1, 2]), _priors([0., 1., 2.]),
                            _priors([0.]), assign, torch.zeros(3, dtype=torch.uint8))
    body = ("({\n    'avg_factor': 3,\n    'neg_inds': tensor([1, 2]),\n"
            "    'neg_priors': torch.Size([2, 4]),\n    'num_gts': 1,\n    'num_neg': 2,\n"
            "    'num_pos': 1,\n    'pos_assigned_gt_inds': tensor([0]),\n"
            "    'pos_inds': tensor([0]),\n"
            "    'pos_is_gt': tensor([0], dtype=torch.uint8),\n"
            "    'pos_priors': torch.Size([1, 4])\n})")
    assert str(result) == '<SamplingResult' + body + '>'
    assert re.fullmatch(re.escape('<SamplingResult' + body) + r' at 0x[0-9a-f]+>', repr(result))
    with pytest.warns(UserWarning, match='pos_bboxes is deprecated'):
        assert torch.equal(result.pos_bboxes, result.pos_priors)
