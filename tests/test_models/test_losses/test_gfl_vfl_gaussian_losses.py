"""QualityFocalLoss, DistributionFocalLoss, VarifocalLoss and GaussianFocalLoss."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.losses import (DistributionFocalLoss, GaussianFocalLoss,
                                      QualityFocalLoss, VarifocalLoss)
from mmdet_lite.registry import MODELS

EPS32 = torch.finfo(torch.float32).eps
LOGITS = torch.tensor([[1.5, -0.5, 0.2], [-2., 0.3, 1.], [0.1, 0.4, -1.], [0.7, -1.2, 2.]],
                      dtype=torch.float64)
LABELS = torch.tensor([0, 2, 3, 1])  # 3 == num_classes: background
SCORES = torch.tensor([0.8, 0.4, 0.9, 0.0], dtype=torch.float64)


def _soft_targets():
    return F.one_hot(LABELS, 4)[:, :3].double() * SCORES[:, None]


def _qfl_reference(logits, soft, beta=2.0, activated=False):
    """Generalized QFL: -|y - p|**beta * (y log p + (1 - y) log(1 - p)), summed over classes."""
    x, y = logits.numpy(), soft.numpy()
    p = x if activated else 1 / (1 + np.exp(-x))
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return (np.abs(y - p)**beta * bce).sum(1)


def test_qfl_defaults_and_registry():
    loss = MODELS.build(dict(type='QualityFocalLoss'))
    assert (loss.use_sigmoid, loss.beta, loss.reduction, loss.loss_weight,
            loss.activated) == (True, 2.0, 'mean', 1.0, False)
    with pytest.raises(AssertionError, match='sigmoid'):
        QualityFocalLoss(use_sigmoid=False)


@pytest.mark.parametrize('activated', [False, True])
def test_qfl_tuple_and_tensor_targets_match_the_formula(activated):
    pred = LOGITS.sigmoid() if activated else LOGITS
    expected = _qfl_reference(pred, _soft_targets(), activated=activated)
    loss = QualityFocalLoss(activated=activated, reduction='none')
    by_tuple = loss(pred, (LABELS, SCORES))
    by_tensor = loss(pred, _soft_targets())
    torch.testing.assert_close(by_tuple, torch.tensor(expected))
    # A positive with quality 0 is a zero soft target: a negative in the tensor form, and the
    # same loss either way (|0 - p|**beta * BCE(x, 0)).
    torch.testing.assert_close(by_tensor, by_tuple)


def test_qfl_reductions_weight_beta_and_gradcheck():
    expected = _qfl_reference(LOGITS, _soft_targets(), beta=1.5)
    weight = torch.tensor([1., 0., 2., 0.5], dtype=torch.float64)
    loss = QualityFocalLoss(beta=1.5, loss_weight=2.)
    assert loss(LOGITS, (LABELS, SCORES)).item() == pytest.approx(2 * expected.mean())
    assert loss(LOGITS, (LABELS, SCORES), weight, avg_factor=2.).item() == pytest.approx(
        2 * (expected * weight.numpy()).sum() / (2. + EPS32))
    assert loss(LOGITS, (LABELS, SCORES), weight, None, 'sum').item() == pytest.approx(
        2 * (expected * weight.numpy()).sum())
    with pytest.raises(AssertionError, match='two elements'):
        loss(LOGITS, (LABELS, ))
    for target in [(LABELS, SCORES), _soft_targets()]:
        assert torch.autograd.gradcheck(lambda p: QualityFocalLoss()(p, target),
                                        (LOGITS.clone().requires_grad_(), ))


def test_qfl_all_background_is_finite():
    labels = torch.full((4, ), 3)
    out = QualityFocalLoss(reduction='sum')(LOGITS, (labels, SCORES))
    assert out.item() == pytest.approx(_qfl_reference(LOGITS, torch.zeros(4, 3)).sum())


def test_dfl_hand_value_reductions_and_gradcheck():
    pred = torch.tensor([[1., 0., -1.], [0.5, 0.5, 2.]], dtype=torch.float64)
    label = torch.tensor([0.3, 1.75], dtype=torch.float64)
    log_p = F.log_softmax(pred, dim=1)
    # 0.3 sits between bins 0 and 1 (weights 0.7, 0.3); 1.75 between 1 and 2 (0.25, 0.75).
    expected = torch.stack([-(0.7 * log_p[0, 0] + 0.3 * log_p[0, 1]),
                            -(0.25 * log_p[1, 1] + 0.75 * log_p[1, 2])])
    loss = MODELS.build(dict(type='DistributionFocalLoss', reduction='none'))
    torch.testing.assert_close(loss(pred, label), expected)
    torch.testing.assert_close(DistributionFocalLoss()(pred, label), expected.mean())
    torch.testing.assert_close(
        DistributionFocalLoss(loss_weight=0.25)(pred, label, torch.tensor([1., 3.]), 2.),
        0.25 * (expected[0] + 3 * expected[1]) / (2. + EPS32))
    # An integer distance is a plain cross entropy on its bin.
    assert DistributionFocalLoss()(pred[:1], torch.tensor([1.], dtype=torch.float64)).item() \
        == pytest.approx(-log_p[0, 1].item())
    assert torch.autograd.gradcheck(lambda p: DistributionFocalLoss()(p, label),
                                    (pred.clone().requires_grad_(), ))


def _vfl_reference(logits, target, alpha=0.75, gamma=2.0, iou_weighted=True):
    x, q = logits.numpy(), target.numpy()
    p = 1 / (1 + np.exp(-x))
    bce = -(q * np.log(p) + (1 - q) * np.log(1 - p))
    pos_w = q if iou_weighted else np.ones_like(q)
    return np.where(q > 0, pos_w * bce, alpha * np.abs(p - q)**gamma * bce)


@pytest.mark.parametrize('cfg', [dict(), dict(alpha=0.5, gamma=1.0, iou_weighted=False)])
def test_varifocal_formula_reductions_and_gradcheck(cfg):
    target = _soft_targets()
    expected = _vfl_reference(LOGITS, target, **cfg)
    loss = VarifocalLoss(reduction='none', **cfg)
    torch.testing.assert_close(loss(LOGITS, target), torch.tensor(expected))
    weight = torch.rand(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert VarifocalLoss(**cfg)(LOGITS, target, weight, avg_factor=3.).item() == pytest.approx(
        (expected * weight.numpy()).sum() / (3. + EPS32))
    assert VarifocalLoss(**cfg)(LOGITS, target, None, None, 'sum').item() == pytest.approx(
        expected.sum())
    assert torch.autograd.gradcheck(lambda p: VarifocalLoss(**cfg)(p, target),
                                    (LOGITS.clone().requires_grad_(), ))


def test_varifocal_arguments():
    loss = MODELS.build(dict(type='VarifocalLoss'))
    assert (loss.use_sigmoid, loss.alpha, loss.gamma, loss.iou_weighted) == (True, 0.75, 2.0,
                                                                             True)
    with pytest.raises(AssertionError):
        VarifocalLoss(use_sigmoid=False)
    with pytest.raises(AssertionError):
        VarifocalLoss(alpha=-0.1)
    with pytest.raises(AssertionError, match='same shape'):
        loss(LOGITS, LABELS)
    # All-zero targets: only the down-weighted negative term.
    zeros = torch.zeros_like(LOGITS)
    assert loss(LOGITS, zeros, reduction_override='sum').item() == pytest.approx(
        _vfl_reference(LOGITS, zeros).sum())


def test_gaussian_focal_hand_values():
    pred = torch.tensor([[0.5, 0.2], [0.9, 0.1]])
    target = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    expected = torch.tensor([
        [-math.log(0.5) * 0.5**2, -math.log(0.8) * 0.2**2 * 0.5**4],
        [-math.log(0.1) * 0.9**2 * 1.0, -math.log(0.1) * 0.9**2],
    ])
    loss = MODELS.build(dict(type='GaussianFocalLoss', reduction='none'))
    torch.testing.assert_close(loss(pred, target), expected)
    weighted = GaussianFocalLoss(pos_weight=2., neg_weight=0.5, reduction='none')(pred, target)
    torch.testing.assert_close(weighted, expected * torch.tensor([[2., 0.5], [0.5, 2.]]))
    weight = torch.tensor([[1., 0.], [1., 1.]])
    # Positional weight goes to pos_inds; weight must be passed by keyword.
    assert GaussianFocalLoss()(pred, target, weight=weight, avg_factor=2.).item() == \
        pytest.approx((expected * weight).sum().item() / 2, rel=1e-5)
    assert GaussianFocalLoss(reduction='sum')(pred, target).item() == pytest.approx(
        expected.sum().item(), rel=1e-6)


def test_gaussian_focal_with_explicit_positives():
    pred = torch.tensor([[0.5, 0.2], [0.9, 0.1], [0.3, 0.6]])
    target = torch.tensor([[1.0, 0.5], [0.0, 1.0], [0.2, 0.0]])
    pos_inds, pos_labels = torch.tensor([0, 2]), torch.tensor([0, 1])
    pos = torch.tensor([-math.log(0.5) * 0.5**2, -math.log(0.6) * 0.4**2])
    neg = -(1 - pred).log() * pred**2 * (1 - target)**4
    loss = GaussianFocalLoss(pos_weight=2., neg_weight=0.5, loss_weight=3.)
    out = loss(pred, target, pos_inds, pos_labels, avg_factor=4.)
    assert out.item() == pytest.approx(3 * (2 * pos.sum() / 4 + 0.5 * neg.sum() / 4).item(),
                                       rel=1e-5)
    out = loss(pred, target, pos_inds, pos_labels, reduction_override='sum')
    assert out.item() == pytest.approx(3 * (2 * pos.sum() + 0.5 * neg.sum()).item(), rel=1e-5)
    with pytest.raises(AssertionError, match='pos_labels'):
        loss(pred, target, pos_inds)


def test_gaussian_focal_reduction_override_and_gradcheck():
    loss = GaussianFocalLoss(reduction='none')
    pred = torch.tensor([[0.3, 0.6], [0.8, 0.45]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.3], [0.5, 0.0]], dtype=torch.float64)
    assert loss(pred, target).shape == (2, 2)
    assert loss(pred, target, reduction_override='mean').ndim == 0
    with pytest.raises(AssertionError, match='reduction_override'):
        loss(pred, target, reduction_override='max')
    assert torch.autograd.gradcheck(lambda p: GaussianFocalLoss()(p, target),
                                    (pred.clone().requires_grad_(), ))
