"""BalancedL1Loss, MSELoss and L2Loss: hand values, reductions, weights, gradients."""
import math

import numpy as np
import pytest
import torch
from mmengine.model import BaseModule

from mmdet_lite.models.losses import BalancedL1Loss, L2Loss, MSELoss, balanced_l1_loss
from mmdet_lite.registry import MODELS

EPS32 = torch.finfo(torch.float32).eps


def _balanced_l1_reference(diff, alpha=0.5, gamma=1.5, beta=1.0):
    """Libra R-CNN eq. (9), with b from alpha * ln(b + 1) = gamma."""
    b = math.exp(gamma / alpha) - 1
    diff = np.abs(np.asarray(diff, dtype=np.float64))
    inlier = alpha / b * (b * diff + 1) * np.log(b * diff / beta + 1) - alpha * diff
    outlier = gamma * diff + gamma / b - alpha * beta
    return np.where(diff < beta, inlier, outlier)


def test_balanced_l1_values_and_continuity():
    pred = torch.tensor([[0.1, -0.5, 2.0, 0.0]])
    target = torch.zeros(1, 4)
    expected = _balanced_l1_reference([[0.1, 0.5, 2.0, 0.0]])
    loss = MODELS.build(dict(type='BalancedL1Loss', reduction='none'))(pred, target)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float32))
    assert loss[0, 3].item() == 0.
    # b is chosen so both pieces meet at |d| = beta.
    at_beta = balanced_l1_loss(torch.tensor([1.0 - 1e-6, 1.0]), torch.zeros(2), reduction='none')
    assert at_beta[0].item() == pytest.approx(at_beta[1].item(), abs=1e-5)
    custom = BalancedL1Loss(alpha=0.3, gamma=2.0, beta=0.5, reduction='none')(pred, target)
    torch.testing.assert_close(
        custom,
        torch.tensor(_balanced_l1_reference([[0.1, 0.5, 2.0, 0.0]], 0.3, 2.0, 0.5),
                     dtype=torch.float32))


def test_balanced_l1_reductions_weight_avg_factor():
    pred, target = torch.tensor([[0.1, -0.5], [2.0, 0.3]]), torch.zeros(2, 2)
    per_elem = torch.tensor(_balanced_l1_reference([[0.1, 0.5], [2.0, 0.3]]),
                            dtype=torch.float32)
    weight = torch.tensor([[1., 0.], [2., 1.]])
    loss = BalancedL1Loss(loss_weight=2.)
    torch.testing.assert_close(loss(pred, target), 2 * per_elem.mean())
    torch.testing.assert_close(loss(pred, target, weight, avg_factor=3.),
                               2 * (per_elem * weight).sum() / (3. + EPS32))
    torch.testing.assert_close(loss(pred, target, weight, None, 'sum'),
                               2 * (per_elem * weight).sum())
    with pytest.raises(ValueError, match='avg_factor'):
        loss(pred, target, avg_factor=3., reduction_override='sum')
    with pytest.raises(AssertionError, match='beta'):
        balanced_l1_loss(pred, target, beta=0.)
    empty = torch.zeros(0, 4, requires_grad=True)
    out = BalancedL1Loss()(empty, torch.zeros(0, 4))
    assert out.item() == 0. and out.grad_fn is not None


def test_balanced_l1_gradcheck():
    pred = torch.tensor([[0.3, -0.7, 1.8, -2.5]], dtype=torch.float64, requires_grad=True)
    target = torch.zeros(1, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: BalancedL1Loss()(p, target), (pred, ))


def test_mse_values_reductions_and_gradcheck():
    pred = torch.tensor([[1., 2.], [3., 4.]])
    target = torch.tensor([[0., 2.], [5., 1.]])  # squared errors 1, 0, 4, 9
    loss = MODELS.build(dict(type='MSELoss'))
    assert loss(pred, target).item() == pytest.approx(3.5)
    assert loss(pred, target, reduction_override='sum').item() == pytest.approx(14.)
    torch.testing.assert_close(loss(pred, target, reduction_override='none'),
                               torch.tensor([[1., 0.], [4., 9.]]))
    weight = torch.tensor([[1., 1.], [0., 2.]])
    assert loss(pred, target, weight, avg_factor=2.).item() == pytest.approx(19. / 2, rel=1e-6)
    assert MSELoss(loss_weight=0.5)(pred, target, weight).item() == pytest.approx(19. / 8)
    with pytest.raises(AssertionError, match='reduction_override'):
        loss(pred, target, reduction_override='max')
    p64 = pred.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda p: MSELoss()(p, target.double()), (p64, ))


def test_l2_loss_is_a_base_module_with_mmdet_defaults():
    loss = MODELS.build(dict(type='L2Loss'))
    assert isinstance(loss, BaseModule)
    assert (loss.neg_pos_ub, loss.pos_margin, loss.neg_margin, loss.hard_mining) == (-1, -1, -1,
                                                                                     False)
    assert loss.reduction == 'mean' and loss.loss_weight == 1.0


def test_l2_loss_plain_mean_over_valid_entries():
    pred = torch.tensor([[0.9, 0.2, 0.4], [0.1, 0.8, 1.5]])
    target = torch.tensor([[1., 0., 0.], [0., 1., 0.]])
    # Clamped to [0, 1]: 1.5 -> 1. Errors: .01 .04 .16 / .01 .04 1.
    errors = torch.tensor([[0.01, 0.04, 0.16], [0.01, 0.04, 1.0]])
    torch.testing.assert_close(L2Loss()(pred, target), errors.sum() / 6)
    weight = torch.tensor([[1., 1., 0.], [1., 1., 1.]])
    # The entry with weight 0 leaves the mean: 5 entries remain.
    torch.testing.assert_close(L2Loss()(pred, target, weight),
                               (errors * weight).sum() / 5)
    # The caller's tensors are not edited.
    assert target[0, 2] == 0. and weight[0, 2] == 0. and pred[1, 2] == 1.5


def test_l2_loss_margins_and_hard_negative_mining():
    # mmdetection's unit case: 2 positives, 5 negatives capped at 2 * 2 = 4. The negative
    # predicted 1 becomes 0.9 after the 0.1 margin (cost 0.81) and, as the hardest, is kept;
    # the mean is over the 6 kept entries.
    pred = torch.tensor([[1., 1., 0., 0., 0., 0., 1.]])
    target = torch.tensor([[1., 1., 0., 0., 0., 0., 0.]])
    loss = L2Loss(neg_pos_ub=2, pos_margin=0, neg_margin=0.1, hard_mining=True)
    assert loss(pred, target).item() == pytest.approx(0.81 / 6, rel=1e-5)
    # Margins: positives 0.8 - 0.3 = 0.5 -> 0.25; negatives 0.6 - 0.2 = 0.4 -> 0.16.
    margins = L2Loss(pos_margin=0.3, neg_margin=0.2, reduction='none')
    torch.testing.assert_close(margins(torch.tensor([[0.8, 0.6]]), torch.tensor([[1., 0.]])),
                               torch.tensor([[0.25, 0.16]]))


def test_l2_loss_random_negative_subset_and_sum_reduction():
    np.random.seed(0)
    pred = torch.full((1, 8), 0.5)
    target = torch.tensor([[1., 0., 0., 0., 0., 0., 0., 0.]])
    out = L2Loss(neg_pos_ub=3, reduction='none')(pred, target)
    # 1 positive + 3 random negatives keep their weight; the others are zeroed.
    assert int((out > 0).sum()) == 4 and out[0, 0].item() == pytest.approx(0.25)
    # The loss always passes avg_factor, so 'sum' is rejected (as mmdetection).
    with pytest.raises(ValueError, match='avg_factor'):
        L2Loss(reduction='sum')(pred, target)
    chosen = L2Loss.random_choice(torch.arange(10), 4)
    assert chosen.shape == (4, ) and len(set(chosen.tolist())) == 4
    with pytest.raises(AssertionError):
        L2Loss.random_choice([1, 2], 3)
