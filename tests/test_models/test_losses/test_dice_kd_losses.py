"""DiceLoss and KnowledgeDistillationKLDivLoss."""
import numpy as np
import pytest
import torch

from mmdet_lite.models.losses import DiceLoss, KnowledgeDistillationKLDivLoss
from mmdet_lite.registry import MODELS

EPS32 = torch.finfo(torch.float32).eps
PROBS = torch.tensor([[[0.5, 0.5], [1.0, 0.0]], [[0.2, 0.9], [0.4, 0.1]]])
MASKS = torch.tensor([[[1., 0.], [1., 0.]], [[0., 1.], [1., 1.]]])


def _dice_reference(p, t, eps=1e-3, naive=False):
    p, t = p.reshape(len(p), -1).double().numpy(), t.reshape(len(t), -1).double().numpy()
    inter = (p * t).sum(1)
    if naive:
        return 1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)
    return 1 - 2 * inter / ((p * p).sum(1) + eps + (t * t).sum(1) + eps)


def test_dice_defaults_and_hand_value():
    loss = MODELS.build(dict(type='DiceLoss'))
    assert (loss.use_sigmoid, loss.activate, loss.reduction, loss.naive_dice, loss.loss_weight,
            loss.eps) == (True, True, 'mean', False, 1.0, 1e-3)
    # Sample 0: overlap 1.5, sum p^2 1.5, sum t^2 2 -> 1 - 3 / (3.5 + 2e-3).
    out = DiceLoss(activate=False, reduction='none')(PROBS, MASKS)
    assert out[0].item() == pytest.approx(1 - 3 / (3.5 + 2e-3), rel=1e-6)
    naive = DiceLoss(activate=False, naive_dice=True, reduction='none')(PROBS, MASKS)
    assert naive[0].item() == pytest.approx(1 - (3 + 1e-3) / (2 + 2 + 1e-3), rel=1e-6)


@pytest.mark.parametrize('naive', [False, True])
def test_dice_sigmoid_reductions_weight_and_gradcheck(naive):
    logits = torch.tensor([[[0.3, -1.], [2., 0.]], [[-0.5, 1.5], [0.1, -2.]]],
                          dtype=torch.float64)
    expected = _dice_reference(logits.sigmoid(), MASKS, naive=naive)
    loss = DiceLoss(naive_dice=naive, loss_weight=2.)
    assert loss(logits, MASKS).item() == pytest.approx(2 * expected.mean())
    weight = torch.tensor([0.5, 2.], dtype=torch.float64)
    # Argument order as mmdetection: (pred, target, weight, reduction_override, avg_factor).
    assert loss(logits, MASKS, weight, None, 4.).item() == pytest.approx(
        2 * (expected * weight.numpy()).sum() / (4. + EPS32))
    assert loss(logits, MASKS, weight, 'sum').item() == pytest.approx(
        2 * (expected * weight.numpy()).sum())
    with pytest.raises(ValueError, match='avg_factor'):
        loss(logits, MASKS, avg_factor=4., reduction_override='sum')
    assert torch.autograd.gradcheck(lambda p: DiceLoss(naive_dice=naive)(p, MASKS.double()),
                                    (logits.clone().requires_grad_(), ))


def test_dice_bad_inputs():
    with pytest.raises(NotImplementedError):
        DiceLoss(use_sigmoid=False)(PROBS, MASKS)
    # Softmax-free but not activated: fine.
    assert DiceLoss(use_sigmoid=False, activate=False)(PROBS, MASKS).ndim == 0
    with pytest.raises(AssertionError):
        DiceLoss()(PROBS, MASKS, torch.rand(2, 8))
    with pytest.raises(AssertionError):
        DiceLoss()(PROBS, MASKS, torch.rand(3))
    # All-zero target and prediction: finite; 1 in the V-Net form, 0 in the naive one.
    zero = DiceLoss(activate=False, reduction='none')(torch.zeros(1, 4), torch.zeros(1, 4))
    assert zero.item() == pytest.approx(1.)  # 1 - 0 / (2 eps)
    naive_zero = DiceLoss(activate=False, naive_dice=True)(torch.zeros(1, 4), torch.zeros(1, 4))
    assert naive_zero.item() == pytest.approx(0.)


def _kd_reference(pred, soft, T):
    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(pred.numpy() / T), softmax(soft.numpy() / T)
    return (q * (np.log(q) - np.log(p))).mean(1) * T * T


def test_kd_loss_values_reductions_and_gradients():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    soft = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    loss = MODELS.build(dict(type='KnowledgeDistillationKLDivLoss'))
    assert (loss.reduction, loss.loss_weight, loss.T) == ('mean', 1.0, 10)
    expected = _kd_reference(pred, soft, 10)
    assert loss(pred, soft).item() == pytest.approx(expected.mean())
    weight = torch.tensor([1., 0., 2., 1.], dtype=torch.float64)
    custom = KnowledgeDistillationKLDivLoss(T=2, loss_weight=0.5, reduction='none')
    torch.testing.assert_close(custom(pred, soft, weight),
                               torch.tensor(0.5 * _kd_reference(pred, soft, 2) * weight.numpy()))
    assert loss(pred, soft, weight, 3., None).item() == pytest.approx(
        (expected * weight.numpy()).sum() / (3. + EPS32))
    # Identical distributions: zero loss.
    assert loss(pred, pred.clone()).item() == pytest.approx(0., abs=1e-12)
    # The teacher is detached.
    soft_leaf = soft.clone().requires_grad_()
    pred_leaf = pred.clone().requires_grad_()
    loss(pred_leaf, soft_leaf).backward()
    assert soft_leaf.grad is None and pred_leaf.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda p: custom(p, soft), (pred.clone().requires_grad_(), ))
    with pytest.raises(AssertionError):
        KnowledgeDistillationKLDivLoss(T=0.5)
    with pytest.raises(AssertionError, match='same shape'):
        loss(pred, soft[:, :3])
