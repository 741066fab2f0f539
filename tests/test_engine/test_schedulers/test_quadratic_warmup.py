"""QuadraticWarmup{ParamScheduler,LR,Momentum}: mmdetection 3.3's quadratic warm-up.

Expected values come from mmdetection's definition: step ``t`` (0-based, counted from
``begin``) adds ``base * (2t + 1) / T**2`` to the value, ``T = end - begin``; summed up,
``base * ((t + 1) / T) ** 2`` when nothing else changes the parameter.
"""
import inspect

import pytest
import torch
from mmengine.optim.scheduler.param_scheduler import INF
from torch import nn

from mmdet_lite.engine.schedulers import (QuadraticWarmupLR, QuadraticWarmupMomentum,
                                          QuadraticWarmupParamScheduler,
                                          SchedulerArgumentError)
from mmdet_lite.registry import PARAM_SCHEDULERS
from mmdet_lite.utils import register_all_modules


def sgd(lr=0.1, momentum=0.9, extra_group_lr=None):
    params = [nn.Parameter(torch.zeros(1))]
    groups = [dict(params=params)]
    if extra_group_lr is not None:
        groups.append(dict(params=[nn.Parameter(torch.zeros(1))], lr=extra_group_lr))
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def values_per_step(optimizer, scheduler, num_steps, key='lr', group=0):
    """The value in force at each step, stepping as ParamSchedulerHook does."""
    values = []
    for _ in range(num_steps):
        values.append(optimizer.param_groups[group][key])
        optimizer.step()
        scheduler.step()
    return values


def closed_form(base, t, total):
    return base * ((t + 1) / total)**2


def test_registered_under_mmdetection_names():
    register_all_modules(init_default_scope=False)
    for cls in (QuadraticWarmupParamScheduler, QuadraticWarmupLR, QuadraticWarmupMomentum):
        assert PARAM_SCHEDULERS.get(cls.__name__) is cls
    # mmdetection's YOLOX config names it with the scope prefix
    assert PARAM_SCHEDULERS.get('mmdet.QuadraticWarmupLR') is QuadraticWarmupLR


def test_signature_matches_mmdetection():
    params = inspect.signature(QuadraticWarmupParamScheduler.__init__).parameters
    assert list(params) == ['self', 'optimizer', 'param_name', 'begin', 'end', 'last_step',
                            'by_epoch', 'verbose']
    defaults = {name: p.default for name, p in params.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == dict(begin=0, end=INF, last_step=-1, by_epoch=True, verbose=False)


def test_lr_rises_quadratically_to_the_base_lr_then_stays():
    optimizer = sgd(lr=0.1)
    scheduler = QuadraticWarmupLR(optimizer, end=5, by_epoch=False)
    lrs = values_per_step(optimizer, scheduler, 8)
    for t in range(5):
        assert lrs[t] == pytest.approx(closed_form(0.1, t, 5))
    assert lrs[0] == pytest.approx(0.1 / 25)  # the first value: base / T**2
    assert lrs[4] == lrs[5] == lrs[7] == pytest.approx(0.1)  # reached at the last step, kept


def test_each_param_group_warms_up_to_its_own_lr():
    optimizer = sgd(lr=0.1, extra_group_lr=0.02)
    scheduler = QuadraticWarmupLR(optimizer, end=4, by_epoch=False)
    lrs = values_per_step(optimizer, scheduler, 4, group=1)
    assert lrs == pytest.approx([closed_form(0.02, t, 4) for t in range(4)])


def test_warm_up_starting_later_leaves_the_lr_alone_before_begin():
    optimizer = sgd(lr=0.1)
    scheduler = QuadraticWarmupLR(optimizer, begin=3, end=7, by_epoch=False)
    lrs = values_per_step(optimizer, scheduler, 9)
    assert lrs[:3] == pytest.approx([0.1] * 3)
    for step in range(3, 7):
        assert lrs[step] == pytest.approx(closed_form(0.1, step - 3, 4))
    assert lrs[7] == lrs[8] == pytest.approx(0.1)


def test_chainable_form_adds_to_the_current_value():
    """The increment goes on top of whatever the lr is now (another scheduler, a user)."""
    optimizer = sgd(lr=0.1)
    scheduler = QuadraticWarmupLR(optimizer, end=10, by_epoch=False)
    optimizer.param_groups[0]['lr'] = 0.5
    optimizer.step()
    scheduler.step()  # step t=1 adds base * 3 / T**2
    assert optimizer.param_groups[0]['lr'] == pytest.approx(0.5 + 0.1 * 3 / 100)


def test_momentum_warms_up_for_sgd_and_adam_beta1():
    optimizer = sgd(lr=0.1, momentum=0.9)
    scheduler = QuadraticWarmupMomentum(optimizer, end=4, by_epoch=False)
    momenta = values_per_step(optimizer, scheduler, 5, key='momentum')
    assert momenta == pytest.approx([closed_form(0.9, t, 4) for t in range(4)] + [0.9])

    adam = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.8, 0.99))
    scheduler = QuadraticWarmupMomentum(adam, end=2, by_epoch=False)
    assert adam.param_groups[0]['betas'] == pytest.approx((0.8 / 4, 0.99))
    adam.step()
    scheduler.step()
    assert adam.param_groups[0]['betas'] == pytest.approx((0.8, 0.99))


def test_generic_scheduler_takes_any_param_name():
    optimizer = sgd(lr=0.1)
    scheduler = QuadraticWarmupParamScheduler(optimizer, 'lr', end=3, by_epoch=False)
    assert values_per_step(optimizer, scheduler, 3) == pytest.approx(
        [closed_form(0.1, t, 3) for t in range(3)])


def test_build_iter_from_epoch_multiplies_begin_and_end():
    optimizer = sgd(lr=0.1)
    scheduler = QuadraticWarmupLR.build_iter_from_epoch(optimizer, begin=1, end=3,
                                                        by_epoch=True, epoch_length=10)
    assert (scheduler.begin, scheduler.end, scheduler.by_epoch) == (10, 30, False)
    assert scheduler.total_iters == 20
    lrs = values_per_step(optimizer, scheduler, 31)
    assert lrs[9] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(closed_form(0.1, 0, 20))
    assert lrs[24] == pytest.approx(closed_form(0.1, 14, 20))


def test_config_with_convert_to_iter_based_builds_iteration_steps():
    """As in mmdetection's YOLOX config: 5 warm-up epochs stepped per iteration."""
    register_all_modules(init_default_scope=False)
    optimizer = sgd(lr=0.01)
    scheduler = PARAM_SCHEDULERS.build(
        dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=5,
             convert_to_iter_based=True),
        default_args=dict(optimizer=optimizer, epoch_length=7))
    assert type(scheduler) is QuadraticWarmupLR
    assert (scheduler.begin, scheduler.end, scheduler.by_epoch) == (0, 35, False)
    lrs = values_per_step(optimizer, scheduler, 35)
    assert lrs[20] == pytest.approx(closed_form(0.01, 20, 35))


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(by_epoch=False, epoch_length=10), 'by_epoch=True'),
    (dict(by_epoch=True, epoch_length=None), 'epoch_length'),
    (dict(by_epoch=True, epoch_length=0), 'epoch_length'),
])
def test_build_iter_from_epoch_rejects_what_mmdetection_asserts(kwargs, fragment):
    with pytest.raises(SchedulerArgumentError, match=fragment) as info:
        QuadraticWarmupLR.build_iter_from_epoch(sgd(), end=3, **kwargs)
    assert isinstance(info.value, AssertionError)


def test_end_must_be_finite_and_after_begin():
    with pytest.raises(ValueError, match='end'):
        QuadraticWarmupLR(sgd())  # end defaults to INF
    with pytest.raises(ValueError, match='larger than begin'):
        QuadraticWarmupLR(sgd(), begin=5, end=5)
