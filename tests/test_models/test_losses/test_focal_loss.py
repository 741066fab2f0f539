"""FocalLoss against its formula computed independently with numpy."""
import numpy as np
import pytest
import torch

from mmdet_lite.models.losses import FocalLoss
from mmdet_lite.registry import MODELS

LOGITS = torch.tensor([[1.5, -0.5, 0.2], [-2., 0.3, 1.], [0.1, 0.1, -1.]])
LABELS = torch.tensor([0, 2, 3])  # 3 == num_classes: background


def _reference(logits, one_hot, gamma=2., alpha=0.25):
    p = 1 / (1 + np.exp(-logits.numpy().astype(np.float64)))
    t = one_hot
    pos = -alpha * t * (1 - p)**gamma * np.log(p)
    neg = -(1 - alpha) * (1 - t) * p**gamma * np.log(1 - p)
    return pos + neg  # [N, C]


ONE_HOT = np.array([[1., 0., 0.], [0., 0., 1.], [0., 0., 0.]])


def test_matches_formula_with_background_label():
    loss = MODELS.build(dict(type='FocalLoss'))
    expected = _reference(LOGITS, ONE_HOT)
    assert loss(LOGITS, LABELS).item() == pytest.approx(expected.mean(), rel=1e-5)
    torch.testing.assert_close(loss(LOGITS, LABELS, reduction_override='none'),
                               torch.tensor(expected, dtype=torch.float32))


def test_gamma_alpha_weight_and_avg_factor():
    loss = FocalLoss(gamma=1.5, alpha=0.4, loss_weight=2.)
    expected = _reference(LOGITS, ONE_HOT, gamma=1.5, alpha=0.4)
    weight = torch.tensor([1., 0., 2.])  # per sample: broadcast over classes
    weighted = (expected * np.array([[1.], [0.], [2.]])).sum()
    assert loss(LOGITS, LABELS, weight, avg_factor=2).item() == pytest.approx(
        2 * weighted / 2, rel=1e-5)
    assert loss(LOGITS, LABELS, reduction_override='sum').item() == pytest.approx(
        2 * expected.sum(), rel=1e-5)


def test_one_hot_targets_and_activated_probabilities():
    expected = _reference(LOGITS, ONE_HOT).sum()
    one_hot = torch.tensor(ONE_HOT, dtype=torch.float32)
    assert FocalLoss(reduction='sum')(LOGITS, one_hot).item() == pytest.approx(expected, rel=1e-5)
    activated = FocalLoss(reduction='sum', activated=True)
    assert activated(LOGITS.sigmoid(), LABELS).item() == pytest.approx(expected, rel=1e-5)


def test_empty_input_gives_zero_with_grad():
    pred = torch.zeros(0, 3, requires_grad=True)
    loss = FocalLoss()(pred, torch.zeros(0, dtype=torch.long), avg_factor=1.)
    assert loss.item() == 0. and loss.grad_fn is not None
    loss = FocalLoss()(pred, torch.zeros(0, dtype=torch.long))
    assert loss.item() == 0. and loss.grad_fn is not None


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='use_sigmoid=True'):
        FocalLoss(use_sigmoid=False)
    with pytest.raises(ValueError, match=r'labels must lie in \[0, 3\]'):
        FocalLoss()(LOGITS, torch.tensor([0, 4, 1]))


@pytest.mark.parametrize('reduction', ['none', 'sum', 'mean'])
def test_label_targets_give_the_loss_and_gradient_of_one_hot_targets(reduction):
    # Labels take a shortcut (every entry as a negative, positives replaced); one-hot targets
    # take the textbook form. Both must agree, gradients included.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=gen) * 4
    labels = torch.randint(0, 6, (64, ), generator=gen)  # 5 == background
    labels[:3] = 5
    weight = torch.rand(64, generator=gen)
    one_hot = torch.nn.functional.one_hot(labels, 6)[:, :5].float()
    results = []
    for target in (labels, one_hot):
        pred = logits.clone().requires_grad_()
        avg_factor = 7. if reduction == 'mean' else None
        loss = FocalLoss(gamma=2., alpha=0.25, reduction=reduction)(pred, target, weight,
                                                                    avg_factor=avg_factor)
        loss.sum().backward()
        results.append((loss.detach(), pred.grad))
    (loss_labels, grad_labels), (loss_one_hot, grad_one_hot) = results
    torch.testing.assert_close(loss_labels, loss_one_hot)
    torch.testing.assert_close(grad_labels, grad_one_hot)
    assert grad_labels.abs().sum() > 0
