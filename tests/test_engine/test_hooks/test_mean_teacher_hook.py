"""MeanTeacherHook with a stand-in semi-supervised model (teacher and student)."""
import logging
import types

import pytest
import torch
from torch import nn

from mmdet_lite.engine.hooks import MeanTeacherHook
from mmdet_lite.registry import HOOKS


def _net(weight: float, running_mean: float) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(weight)
        net[1].weight.fill_(1.0)
        net[1].bias.fill_(0.0)
        net[1].running_mean.fill_(running_mean)
        net[1].num_batches_tracked.fill_(7)
    return net


class SemiSupervised(nn.Module):
    """The attributes MeanTeacherHook uses of mmdetection's SemiBaseDetector."""

    def __init__(self, student_weight: float = 1.0, teacher_weight: float = 0.0) -> None:
        super().__init__()
        self.student = _net(student_weight, running_mean=4.0)
        self.teacher = _net(teacher_weight, running_mean=0.0)


def _runner(model, iteration=0):
    return types.SimpleNamespace(model=model, iter=iteration,
                                 logger=logging.getLogger('mean_teacher_test'))


def test_registered_with_mmdetection_defaults():
    hook = HOOKS.build(dict(type='MeanTeacherHook'))
    assert isinstance(hook, MeanTeacherHook)
    assert (hook.momentum, hook.interval, hook.skip_buffers) == (0.001, 1, True)


@pytest.mark.parametrize('momentum', [0, 1, -0.5, 1.5])
def test_momentum_outside_open_unit_interval_is_an_assertion_error(momentum):
    with pytest.raises(AssertionError, match='momentum must be in \\(0, 1\\)'):
        MeanTeacherHook(momentum=momentum)
    with pytest.raises(ValueError):
        MeanTeacherHook(momentum=momentum)


def test_before_train_at_iteration_0_copies_the_student_parameters_only():
    model = SemiSupervised(student_weight=3.0, teacher_weight=-1.0)
    MeanTeacherHook().before_train(_runner(model))
    assert torch.all(model.teacher[0].weight == 3.0)
    # skip_buffer=True: the BN statistics are not parameters and stay the teacher's
    assert torch.all(model.teacher[1].running_mean == 0.0)


def test_before_train_of_a_resumed_run_keeps_the_teacher():
    model = SemiSupervised(student_weight=3.0, teacher_weight=-1.0)
    MeanTeacherHook().before_train(_runner(model, iteration=10))
    assert torch.all(model.teacher[0].weight == -1.0)


def test_ema_update_every_interval_iterations():
    model = SemiSupervised(student_weight=1.0, teacher_weight=0.0)
    hook = MeanTeacherHook(momentum=0.25, interval=2)
    hook.after_train_iter(_runner(model, iteration=0), 0)  # iteration 1 of 2: no update
    assert torch.all(model.teacher[0].weight == 0.0)
    hook.after_train_iter(_runner(model, iteration=1), 1)  # 0.75 * 0 + 0.25 * 1
    torch.testing.assert_close(model.teacher[0].weight, torch.full((1, 2), 0.25))
    hook.after_train_iter(_runner(model, iteration=3), 3)  # 0.75 * 0.25 + 0.25 * 1
    torch.testing.assert_close(model.teacher[0].weight, torch.full((1, 2), 0.4375))
    assert torch.all(model.teacher[1].running_mean == 0.0)


def test_without_skip_buffer_float_buffers_are_averaged_and_counters_kept():
    model = SemiSupervised(student_weight=1.0, teacher_weight=0.0)
    with torch.no_grad():
        model.teacher[1].num_batches_tracked.fill_(2)
    MeanTeacherHook(momentum=0.5, skip_buffer=False).after_train_iter(_runner(model), 0)
    torch.testing.assert_close(model.teacher[0].weight, torch.full((1, 2), 0.5))
    torch.testing.assert_close(model.teacher[1].running_mean, torch.tensor([2.0]))
    # running_var: both 1 -> 1
    torch.testing.assert_close(model.teacher[1].running_var, torch.tensor([1.0]))
    assert model.teacher[1].num_batches_tracked.item() == 2  # integer buffer untouched


def test_model_without_teacher_and_student_is_an_assertion_error():
    with pytest.raises(AssertionError, match='has no teacher or student'):
        MeanTeacherHook().before_train(_runner(nn.Linear(2, 2)))
    model = SemiSupervised()
    del model.teacher
    with pytest.raises(AssertionError, match='has no teacher$'):
        MeanTeacherHook().before_train(_runner(model))
