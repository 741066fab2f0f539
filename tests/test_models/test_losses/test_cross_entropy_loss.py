"""CrossEntropyLoss: softmax, sigmoid (with background label) and mask flavours."""
import math

import pytest
import torch

from mmdet_lite.models.losses import CrossEntropyLoss
from mmdet_lite.registry import MODELS

# Softmax over logits (0, ln 3) gives probabilities (1/4, 3/4).
LOGITS = torch.tensor([[0., math.log(3.)], [0., math.log(3.)]])
LABELS = torch.tensor([1, 0])
CE_1, CE_0 = -math.log(0.75), -math.log(0.25)


def _softplus(x):
    return math.log1p(math.exp(x))


def test_softmax_ce_reductions_weight_and_avg_factor():
    loss = MODELS.build(dict(type='CrossEntropyLoss'))
    assert loss(LOGITS, LABELS).item() == pytest.approx((CE_1 + CE_0) / 2, rel=1e-5)
    assert loss(LOGITS, LABELS, weight=torch.tensor([1., 0.])).item() == pytest.approx(
        CE_1 / 2, rel=1e-5)
    assert loss(LOGITS, LABELS, avg_factor=4).item() == pytest.approx((CE_1 + CE_0) / 4, rel=1e-5)
    assert loss(LOGITS, LABELS, reduction_override='sum').item() == pytest.approx(
        CE_1 + CE_0, rel=1e-5)
    torch.testing.assert_close(loss(LOGITS, LABELS, reduction_override='none'),
                               torch.tensor([CE_1, CE_0]))
    doubled = CrossEntropyLoss(loss_weight=2.)(LOGITS, LABELS)
    assert doubled.item() == pytest.approx(CE_1 + CE_0, rel=1e-5)


def test_softmax_ce_class_weight_divides_by_sample_count():
    loss = CrossEntropyLoss(class_weight=[2., 1.])
    # mmdet semantics: sum of weighted losses / N (not / sum of class weights as in torch).
    assert loss(LOGITS, LABELS).item() == pytest.approx((CE_1 + 2 * CE_0) / 2, rel=1e-5)


@pytest.mark.filterwarnings('ignore:Default ``avg_non_ignore`` is False')
def test_softmax_ce_ignore_index_and_avg_non_ignore():
    assert CrossEntropyLoss(ignore_index=0)(LOGITS, LABELS).item() == pytest.approx(
        CE_1 / 2, rel=1e-5)
    loss = CrossEntropyLoss(ignore_index=0, avg_non_ignore=True)
    assert loss(LOGITS, LABELS).item() == pytest.approx(CE_1, rel=1e-5)
    # ignore_index given at call time overrides the module's.
    assert CrossEntropyLoss()(LOGITS, LABELS, ignore_index=1).item() == pytest.approx(
        CE_0 / 2, rel=1e-5)


SIG_LOGITS = torch.tensor([[1., -1.], [2., 0.]])


def test_sigmoid_ce_background_label_is_all_negative():
    loss = CrossEntropyLoss(use_sigmoid=True)
    # Label 2 == num_classes is background: one-hot rows [[1, 0], [0, 0]].
    expected = (_softplus(1.) - 1. + _softplus(-1.) + _softplus(2.) + _softplus(0.)) / 4
    assert loss(SIG_LOGITS, torch.tensor([0, 2])).item() == pytest.approx(expected, rel=1e-5)
    # Equivalent binary targets of the same shape as pred give the same loss.
    binary = torch.tensor([[1., 0.], [0., 0.]])
    assert loss(SIG_LOGITS, binary).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.filterwarnings('ignore:Default ``avg_non_ignore`` is False')
def test_sigmoid_ce_ignore_index_class_weight_and_avg_non_ignore():
    first_row = _softplus(1.) - 1. + _softplus(-1.)
    labels = torch.tensor([0, 1])
    assert CrossEntropyLoss(use_sigmoid=True, ignore_index=1)(
        SIG_LOGITS, labels).item() == pytest.approx(first_row / 4, rel=1e-5)
    loss = CrossEntropyLoss(use_sigmoid=True, ignore_index=1, avg_non_ignore=True)
    assert loss(SIG_LOGITS, labels).item() == pytest.approx(first_row / 2, rel=1e-5)
    # class_weight scales the positive term of its class (BCE pos_weight).
    weighted = CrossEntropyLoss(use_sigmoid=True, class_weight=[3., 1.], reduction='sum')
    expected = 3 * (_softplus(1.) - 1.) + _softplus(-1.) + _softplus(2.) + _softplus(0.)
    assert weighted(SIG_LOGITS, torch.tensor([0, 2])).item() == pytest.approx(expected, rel=1e-5)


def test_mask_ce_picks_the_label_channel():
    pred = torch.zeros(2, 3, 2, 2)
    pred[0, 2] = 2.
    pred[1, 0] = -1.
    target = torch.stack([torch.ones(2, 2), torch.zeros(2, 2)])
    loss = CrossEntropyLoss(use_mask=True)(pred, target, torch.tensor([2, 0]))
    expected = ((_softplus(2.) - 2.) + _softplus(-1.)) / 2
    assert loss.shape == (1, )
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_conflicting_flags_raise():
    with pytest.raises(ValueError, match='use_sigmoid and use_mask'):
        CrossEntropyLoss(use_sigmoid=True, use_mask=True)


@pytest.mark.parametrize('cfg', [dict(), dict(use_sigmoid=True), dict(avg_non_ignore=True)])
def test_empty_input_gives_zero_with_grad(cfg):
    pred = torch.zeros(0, 3, requires_grad=True)
    loss = CrossEntropyLoss(**cfg)(pred, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0. and loss.grad_fn is not None
    loss.backward()


def test_empty_mask_input_gives_zero_with_grad():
    pred = torch.zeros(0, 3, 4, 4, requires_grad=True)
    loss = CrossEntropyLoss(use_mask=True)(pred, torch.zeros(0, 4, 4),
                                           torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0. and loss.grad_fn is not None
