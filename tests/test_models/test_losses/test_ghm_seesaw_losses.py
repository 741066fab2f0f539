"""GHMC / GHMR (gradient-density weights) and SeesawLoss, against hand computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.losses import GHMC, GHMR, SeesawLoss
from mmdet_lite.registry import MODELS


def _bce(x, t):
    p = 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))
    t = np.asarray(t, dtype=np.float64)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def test_ghm_state_dicts_and_defaults():
    ghmc = MODELS.build(dict(type='GHMC'))
    assert (ghmc.bins, ghmc.momentum, ghmc.use_sigmoid, ghmc.loss_weight,
            ghmc.reduction) == (10, 0, True, 1.0, 'mean')
    assert list(ghmc.state_dict()) == ['edges'] and ghmc.edges.shape == (11, )
    assert ghmc.edges[-1].item() == pytest.approx(1 + 1e-6) and ghmc.edges[5].item() == 0.5
    assert list(GHMC(bins=4, momentum=0.5).state_dict()) == ['edges', 'acc_sum']
    assert GHMC(bins=4, momentum=0.5).acc_sum.shape == (4, )
    ghmr = MODELS.build(dict(type='GHMR'))
    assert (ghmr.mu, ghmr.bins, ghmr.momentum) == (0.02, 10, 0)
    assert list(ghmr.state_dict()) == ['edges'] and ghmr.edges[-1].item() == 1e3
    with pytest.raises(NotImplementedError):
        GHMC(use_sigmoid=False)


# Logits and binary targets: gradient norms |sigmoid(x) - t| = 0.5, 0.119, 0.881, 0.953.
GHMC_X = torch.tensor([[0., 2.], [-2., 3.]])
GHMC_T = torch.tensor([[1., 1.], [1., 0.]])


def test_ghmc_two_bins_by_hand():
    # bins [0, .5) and [.5, 1]: counts 1 and 3 of tot 4; weights tot / count / 2 bins.
    bce = _bce(GHMC_X, GHMC_T)
    weights = np.array([[2 / 3, 2.], [2 / 3, 2 / 3]])
    loss = GHMC(bins=2)
    assert loss(GHMC_X, GHMC_T, torch.ones(2, 2)).item() == pytest.approx(
        (bce * weights).sum() / 4, rel=1e-5)
    # Ignoring an element of bin 1: counts 1 and 2 of tot 3.
    label_weight = torch.tensor([[1., 1.], [0., 1.]])
    weights = np.array([[3 / 2 / 2, 3 / 2], [0., 3 / 2 / 2]])
    assert loss(GHMC_X, GHMC_T, label_weight).item() == pytest.approx(
        (bce * weights).sum() / 3, rel=1e-5)
    torch.testing.assert_close(
        GHMC(bins=2, loss_weight=2.)(GHMC_X, GHMC_T, label_weight, reduction_override='none'),
        2 * torch.tensor(bce * weights, dtype=torch.float32))
    # 'sum' with the internal avg_factor is rejected, as mmdetection.
    with pytest.raises(ValueError, match='avg_factor'):
        loss(GHMC_X, GHMC_T, label_weight, 'sum')


def test_ghmc_index_labels_expand_to_one_hot():
    logits = torch.tensor([[0.3, -1.], [2., 0.5], [-0.2, 0.1]])
    labels = torch.tensor([1, 0, 2])  # 2 == background
    one_hot = torch.tensor([[0., 1.], [1., 0.], [0., 0.]])
    weights = torch.tensor([1., 0., 1.])
    expanded = GHMC()(logits, one_hot, weights[:, None].expand(3, 2))
    torch.testing.assert_close(GHMC()(logits, labels, weights), expanded)


def test_ghmc_momentum_accumulates_bin_counts():
    loss = GHMC(bins=2, momentum=0.5)
    bce = _bce(GHMC_X, GHMC_T)
    in_bin1 = np.array([[1., 0.], [1., 1.]])
    for acc in [(0.5, 1.5), (0.75, 2.25)]:
        out = loss(GHMC_X, GHMC_T, torch.ones(2, 2))
        weights = np.where(in_bin1 > 0, 4 / acc[1], 4 / acc[0]) / 2
        assert out.item() == pytest.approx((bce * weights).sum() / 4, rel=1e-5)
        torch.testing.assert_close(loss.acc_sum, torch.tensor(acc))


def test_ghmr_by_hand_and_empty():
    mu = 0.02
    pred = torch.tensor([[0.005, 0.5], [0.01, -0.3]])
    target = torch.zeros(2, 2)
    d = pred.double().numpy()
    asl1 = np.sqrt(d * d + mu * mu) - mu
    g = np.abs(d) / np.sqrt(d * d + mu * mu)  # 0.24, 0.9992, 0.447, 0.9978
    assert ((g < 0.5) == np.array([[True, False], [True, False]])).all()
    loss = GHMR(bins=2)
    # Two per bin of tot 4: weight 4 / 2 / 2 = 1 each.
    assert loss(pred, target, torch.ones(2, 2)).item() == pytest.approx(asl1.sum() / 4,
                                                                        rel=1e-5)
    label_weight = torch.tensor([[1., 1.], [1., 0.]])
    weights = np.array([[3 / 2 / 2, 3 / 2], [3 / 2 / 2, 0.]])
    assert loss(pred, target, label_weight).item() == pytest.approx(
        (asl1 * weights).sum() / 3, rel=1e-5)
    # avg_factor is accepted and unused, as mmdetection.
    assert loss(pred, target, label_weight, 100.).item() == pytest.approx(
        (asl1 * weights).sum() / 3, rel=1e-5)
    empty = GHMR()(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4))
    assert empty.item() == 0.
    pred64 = pred.double().requires_grad_()
    label_weight64 = label_weight.double()
    assert torch.autograd.gradcheck(lambda p: GHMR(bins=2)(p, target.double(), label_weight64),
                                    (pred64, ))


def _seesaw_reference(logits, labels, counts, p=0.8, q=2.0, eps=1e-2):
    """Per-sample seesaw CE from the paper's definitions (numpy, float64)."""
    z = np.asarray(logits, dtype=np.float64)
    sm = np.exp(z - z.max(1, keepdims=True))
    sm /= sm.sum(1, keepdims=True)
    losses = []
    for i, y in enumerate(labels):
        denom = np.exp(z[i, y])
        for j in range(z.shape[1]):
            if j == y:
                continue
            ratio_n = max(counts[j], 1) / max(counts[y], 1)
            mitigation = ratio_n**p if ratio_n < 1 else 1.
            ratio_s = sm[i, j] / max(sm[i, y], eps)
            compensation = ratio_s**q if ratio_s > 1 else 1.
            denom += mitigation * compensation * np.exp(z[i, j])
        losses.append(-(z[i, y] - math.log(denom)))
    return np.array(losses)


SEESAW_SCORES = torch.tensor([[2., 0.5, 1., -1.], [0.1, 1.5, 0.3, 0.2], [-1., 0.5, -0.3, 0.8],
                              [1., 0.2, 0.9, 0.], [0.4, -0.6, -1., 1.]])
SEESAW_LABELS = torch.tensor([0, 0, 1, 0, 2])  # 2 == background


def test_seesaw_loss_against_the_paper_formula():
    loss = MODELS.build(dict(type='SeesawLoss', num_classes=2))
    assert list(loss.state_dict()) == ['cum_samples'] and loss.cum_samples.shape == (3, )
    out = loss(SEESAW_SCORES, SEESAW_LABELS)
    torch.testing.assert_close(loss.cum_samples, torch.tensor([3., 1., 1.]))
    pos = SEESAW_LABELS < 2
    cls_expected = _seesaw_reference(SEESAW_SCORES[pos, :2], SEESAW_LABELS[pos].tolist(),
                                     [3, 1])
    obj_expected = F.cross_entropy(SEESAW_SCORES[:, 2:], (SEESAW_LABELS == 2).long())
    assert set(out) == {'loss_cls_objectness', 'loss_cls_classes'}
    assert out['loss_cls_classes'].item() == pytest.approx(cls_expected.sum() / 4, rel=1e-5)
    assert out['loss_cls_objectness'].item() == pytest.approx(obj_expected.item(), rel=1e-5)
    # The counts keep accumulating; p = 0 and q = 0 reduce to plain cross entropy.
    loss(SEESAW_SCORES, SEESAW_LABELS)
    torch.testing.assert_close(loss.cum_samples, torch.tensor([6., 2., 2.]))
    plain = SeesawLoss(num_classes=2, p=0., q=0., return_dict=False)
    # The class term averages over the 4 foreground samples only.
    expected = F.cross_entropy(SEESAW_SCORES[pos, :2], SEESAW_LABELS[pos]) + obj_expected
    assert plain(SEESAW_SCORES, SEESAW_LABELS).item() == pytest.approx(expected.item(),
                                                                       rel=1e-5)


def test_seesaw_weights_avg_factor_and_no_foreground():
    weight = torch.tensor([1., 0., 2., 1., 1.])
    out = SeesawLoss(num_classes=2, loss_weight=2.)(SEESAW_SCORES, SEESAW_LABELS, weight, 4.)
    cls_expected = _seesaw_reference(SEESAW_SCORES[:4, :2], [0, 0, 1, 0], [3, 1])
    assert out['loss_cls_classes'].item() == pytest.approx(
        2 * (cls_expected * weight[:4].numpy()).sum() / 4, rel=1e-5)
    background = SeesawLoss(num_classes=2)(SEESAW_SCORES[:2], torch.tensor([2, 2]))
    assert background['loss_cls_classes'].item() == 0.
    with pytest.raises(AssertionError):
        SeesawLoss(num_classes=2)(SEESAW_SCORES[:, :3], SEESAW_LABELS)
    with pytest.raises(AssertionError):
        SeesawLoss(use_sigmoid=True)


def test_seesaw_custom_head_api():
    loss = SeesawLoss(num_classes=2)
    assert loss.custom_cls_channels and loss.custom_activation and loss.custom_accuracy
    assert loss.get_cls_channels(2) == 4
    with pytest.raises(AssertionError):
        loss.get_cls_channels(3)
    scores = loss.get_activation(SEESAW_SCORES)
    cls_prob = F.softmax(SEESAW_SCORES[:, :2], -1)
    obj_prob = F.softmax(SEESAW_SCORES[:, 2:], -1)
    torch.testing.assert_close(scores, torch.cat([cls_prob * obj_prob[:, :1], obj_prob[:, 1:]],
                                                 1))
    torch.testing.assert_close(scores.sum(-1), torch.ones(5))
    acc = loss.get_accuracy(SEESAW_SCORES, SEESAW_LABELS)
    # Objectness argmax: fg, fg, bg, fg, bg against fg, fg, fg, fg, bg -> 4 of 5.
    assert acc['acc_objectness'].item() == pytest.approx(80.)
    # Classes of the 4 foreground rows: 0, 1, 1, 0 against 0, 0, 1, 0 -> 3 of 4.
    assert acc['acc_classes'].item() == pytest.approx(75.)
