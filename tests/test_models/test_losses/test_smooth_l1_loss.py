"""L1Loss and SmoothL1Loss."""
import pytest
import torch

from mmdet_lite.models.losses import L1Loss, SmoothL1Loss
from mmdet_lite.registry import MODELS

PRED = torch.tensor([[1., 2.], [3., 4.]])
TARGET = torch.tensor([[0., 2.], [5., 4.]])  # |diff| = [[1, 0], [2, 0]]


def test_l1_reductions_weight_avg_factor():
    loss = MODELS.build(dict(type='L1Loss'))
    assert loss(PRED, TARGET).item() == 0.75
    assert loss(PRED, TARGET, reduction_override='sum').item() == 3.
    weight = torch.tensor([[1., 1.], [0., 0.]])
    assert loss(PRED, TARGET, weight).item() == 0.25
    assert loss(PRED, TARGET, weight, avg_factor=2).item() == pytest.approx(0.5)
    torch.testing.assert_close(loss(PRED, TARGET, reduction_override='none'),
                               torch.tensor([[1., 0.], [2., 0.]]))
    assert L1Loss(loss_weight=2.)(PRED, TARGET).item() == 1.5


def test_smooth_l1_quadratic_and_linear_parts():
    pred, target = torch.tensor([0.5, 2.]), torch.zeros(2)
    # beta 1: 0.5 * 0.5**2 = 0.125 and 2 - 0.5 = 1.5.
    assert MODELS.build(dict(type='SmoothL1Loss'))(pred, target).item() == pytest.approx(0.8125)
    # beta 0.5: 0.5 is not < beta, so both are linear: 0.25 and 1.75.
    assert SmoothL1Loss(beta=0.5)(pred, target).item() == pytest.approx(1.0)
    assert SmoothL1Loss(beta=1., reduction='sum', loss_weight=2.)(
        pred, target).item() == pytest.approx(3.25)
    assert SmoothL1Loss()(pred, target, avg_factor=1.).item() == pytest.approx(1.625)


@pytest.mark.parametrize('loss_cls', [L1Loss, SmoothL1Loss])
def test_all_zero_weight_gives_zero_with_grad(loss_cls):
    pred = PRED.clone().requires_grad_()
    loss = loss_cls()(pred, TARGET, torch.zeros(2))
    assert loss.item() == 0. and loss.grad_fn is not None


@pytest.mark.parametrize('loss_cls', [L1Loss, SmoothL1Loss])
def test_empty_input_gives_zero_with_grad(loss_cls):
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = loss_cls()(pred, torch.zeros(0, 4))
    assert loss.item() == 0. and loss.grad_fn is not None
    loss = loss_cls()(pred, torch.zeros(0, 4), torch.zeros(0, 4), avg_factor=1.)
    assert loss.item() == 0. and loss.grad_fn is not None


def test_shape_mismatch_and_bad_beta_raise():
    with pytest.raises(ValueError, match='same shape'):
        L1Loss()(PRED, TARGET[:1])
    with pytest.raises(ValueError, match='beta must be > 0'):
        SmoothL1Loss(beta=0.)(PRED, TARGET)
