"""ExpMomentumEMA: registry, the momentum schedule against a hand computation, interval,
buffers, and the gamma check."""
import math

import pytest
import torch
from mmengine.model import ExponentialMovingAverage
from torch import nn

from mmdet_lite.models.layers import ExpMomentumEMA
from mmdet_lite.registry import MODELS


def make_model(value: float) -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(value)
    return model


def set_weight(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        model[0].weight.fill_(value)


def test_registered_and_built_like_the_ema_hook_does():
    model = make_model(1.0)
    ema = MODELS.build(dict(type='ExpMomentumEMA', momentum=0.0002, update_buffers=True),
                       default_args=dict(model=model))
    assert isinstance(ema, ExpMomentumEMA) and isinstance(ema, ExponentialMovingAverage)
    assert ema.momentum == 0.0002 and ema.gamma == 2000 and ema.interval == 1
    assert ema.update_buffers is True
    assert MODELS.build(dict(type='mmdet.ExpMomentumEMA', model=model)).gamma == 2000


def test_momentum_schedule_by_hand():
    momentum, gamma = 0.1, 4
    model = make_model(1.0)
    ema = ExpMomentumEMA(model, momentum=momentum, gamma=gamma)
    ema.update_parameters(model)  # steps 0: plain copy
    averaged = 1.0
    assert ema.module[0].weight.flatten().tolist() == [averaged, averaged]
    for steps, source in [(1, 3.0), (2, -2.0), (3, 0.5)]:
        set_weight(model, source)
        ema.update_parameters(model)
        m = (1 - momentum) * math.exp(-(1 + steps) / gamma) + momentum
        averaged = (1 - m) * averaged + m * source
        torch.testing.assert_close(ema.module[0].weight, torch.full((1, 2), averaged))
    assert ema.steps == 4


def test_momentum_settles_at_the_final_value():
    model = make_model(0.0)
    ema = ExpMomentumEMA(model, momentum=0.25, gamma=1)
    ema.update_parameters(model)
    ema.steps.fill_(100)  # exp(-101) is 0: the momentum is just 0.25
    set_weight(model, 4.0)
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module[0].weight, torch.full((1, 2), 1.0))


def test_interval_skips_updates():
    model = make_model(0.0)
    ema = ExpMomentumEMA(model, momentum=0.5, gamma=2, interval=2)
    ema.update_parameters(model)  # steps 0: copy
    set_weight(model, 8.0)
    ema.update_parameters(model)  # steps 1: 1 % 2 != 0, no average
    torch.testing.assert_close(ema.module[0].weight, torch.zeros(1, 2))
    ema.update_parameters(model)  # steps 2: average with m(2)
    m = 0.5 * math.exp(-3 / 2) + 0.5
    torch.testing.assert_close(ema.module[0].weight, torch.full((1, 2), 8.0 * m))


@pytest.mark.parametrize('update_buffers', [False, True])
def test_buffers_copied_or_averaged(update_buffers):
    model = make_model(0.0)
    ema = ExpMomentumEMA(model, momentum=0.5, gamma=1, update_buffers=update_buffers)
    ema.update_parameters(model)
    with torch.no_grad():
        model[1].running_mean.fill_(2.0)
    ema.update_parameters(model)
    m = 0.5 * math.exp(-2) + 0.5
    expected = 2.0 * m if update_buffers else 2.0
    torch.testing.assert_close(ema.module[1].running_mean, torch.tensor([expected]))


@pytest.mark.parametrize('gamma', [0, -5])
def test_gamma_must_be_positive(gamma):
    with pytest.raises(AssertionError, match='gamma must be greater than 0'):
        ExpMomentumEMA(make_model(0.0), gamma=gamma)
