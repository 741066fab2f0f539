"""AssignResult.random / SamplingResult.random and the rng helpers behind them."""
import numpy as np
import pytest
import torch

from mmdet_lite.models.task_modules.assigners import AssignResult
from mmdet_lite.models.task_modules.samplers import SamplingResult
from mmdet_lite.models.task_modules.samplers.sampling_result import ensure_rng, random_boxes


def test_ensure_rng():
    assert ensure_rng(None) is np.random.mtrand._rand
    state = np.random.RandomState(4)
    assert ensure_rng(state) is state
    np.testing.assert_array_equal(ensure_rng(7).rand(3), np.random.RandomState(7).rand(3))


def test_random_boxes():
    boxes = random_boxes(50, scale=10, rng=0)
    assert boxes.shape == (50, 4) and boxes.dtype == torch.float32
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert boxes.min() >= 0 and boxes.max() <= 10
    # each box spans the two random points drawn for it
    draws = np.random.RandomState(0).rand(50, 4).astype(np.float32) * 10
    np.testing.assert_allclose(boxes[:, 0].numpy(), np.minimum(draws[:, 0], draws[:, 2]))
    np.testing.assert_allclose(boxes[:, 3].numpy(), np.maximum(draws[:, 1], draws[:, 3]))
    assert random_boxes(0).shape == (0, 4)


def _check_consistent(result: AssignResult, num_classes: int = 3) -> None:
    n, g = result.num_preds, result.num_gts
    assert result.gt_inds.shape == result.max_overlaps.shape == result.labels.shape == (n, )
    assert result.gt_inds.dtype == torch.int64 and result.labels.dtype == torch.int64
    assert ((result.gt_inds >= -1) & (result.gt_inds <= g)).all()
    pos = result.gt_inds > 0
    # a ground truth is matched at most once
    assert len(result.gt_inds[pos].unique()) == int(pos.sum())
    assert (result.max_overlaps[result.gt_inds == 0] == 0).all()
    assert ((result.max_overlaps >= 0) & (result.max_overlaps < 1)).all()
    assert (result.labels[~pos] == -1).all()
    assert ((result.labels[pos] >= 0) & (result.labels[pos] < num_classes)).all()


@pytest.mark.parametrize('seed', range(20))
def test_assign_result_random_is_consistent(seed):
    result = AssignResult.random(rng=seed)
    assert 0 <= result.num_gts < 8 and 0 <= result.num_preds < 16
    _check_consistent(result)


def test_assign_result_random_kwargs():
    result = AssignResult.random(num_preds=30, num_gts=4, num_classes=2, rng=1)
    assert (result.num_preds, result.num_gts) == (30, 4)
    _check_consistent(result, num_classes=2)
    everyone = AssignResult.random(num_preds=9, num_gts=5, p_assigned=1.0, p_ignore=0.0, rng=2)
    # at most one prediction per gt: exactly the 5 gts, each once
    assert sorted(everyone.gt_inds[everyone.gt_inds > 0].tolist()) == [1, 2, 3, 4, 5]
    assert (everyone.gt_inds >= 0).all()
    ignored = AssignResult.random(num_preds=9, num_gts=5, p_assigned=1.0, p_ignore=1.0, rng=2)
    assert (ignored.gt_inds == -1).sum() == 5 and (ignored.gt_inds > 0).sum() == 0
    nobody = AssignResult.random(num_preds=6, num_gts=3, p_assigned=0.0, rng=3)
    assert (nobody.gt_inds == 0).all() and (nobody.labels == -1).all()
    no_gt = AssignResult.random(num_preds=6, num_gts=0, rng=3)
    assert (no_gt.gt_inds == 0).all() and no_gt.max_overlaps.sum() == 0
    assert AssignResult.random(num_preds=0, num_gts=3).num_preds == 0
    a, b = AssignResult.random(rng=11), AssignResult.random(rng=11)
    assert torch.equal(a.gt_inds, b.gt_inds) and torch.equal(a.max_overlaps, b.max_overlaps)


@pytest.mark.parametrize('seed', range(10))
def test_sampling_result_random_is_consistent(seed):
    torch.manual_seed(seed)
    result = SamplingResult.random(rng=seed)
    assert isinstance(result, SamplingResult)
    pos, neg = result.pos_inds, result.neg_inds
    assert len(set(pos.tolist()) & set(neg.tolist())) == 0
    assert pos.numel() <= 16 and pos.numel() + neg.numel() <= 32
    assert result.pos_priors.shape == (pos.numel(), 4)
    assert result.neg_priors.shape == (neg.numel(), 4)
    # the gt boxes were added as proposals in front: they are positives of themselves
    g = result.num_gts
    gt_pos = pos[pos < g]
    assert (result.pos_is_gt[pos < g] == 1).all() and (result.pos_is_gt[pos >= g] == 0).all()
    torch.testing.assert_close(result.pos_assigned_gt_inds[pos < g], gt_pos)
    assert result.pos_gt_bboxes.shape == (pos.numel(), 4)
    torch.testing.assert_close(result.pos_priors[pos < g], result.pos_gt_bboxes[pos < g])
    assert result.avg_factor == max(pos.numel(), 1) + max(neg.numel(), 1)
    assert set(result.info) >= {'pos_inds', 'neg_inds', 'pos_priors', 'neg_priors', 'num_gts'}


def test_sampling_result_random_kwargs_reach_the_assignment():
    torch.manual_seed(0)
    result = SamplingResult.random(rng=0, num_preds=40, num_gts=3, p_assigned=0.0)
    # nothing assigned: the positives are exactly the 3 added gt boxes
    assert result.num_gts == 3 and sorted(result.pos_inds.tolist()) == [0, 1, 2]
    assert result.neg_inds.numel() == 32 - 3
