"""CheckInvalidLossHook: every `interval` iterations, a non-finite total loss stops training."""
import logging
import math
import types

import pytest
import torch

from mmdet_lite.engine.hooks import CheckInvalidLossHook
from mmdet_lite.registry import HOOKS


def _runner(iteration):
    return types.SimpleNamespace(iter=iteration, logger=logging.getLogger('checkloss_test'))


def test_registered_with_interval_50():
    hook = HOOKS.build(dict(type='CheckInvalidLossHook'))
    assert isinstance(hook, CheckInvalidLossHook) and hook.interval == 50


@pytest.mark.parametrize('bad', [math.nan, math.inf, -math.inf])
def test_non_finite_loss_on_a_checked_iteration_raises_an_assertion_error(bad):
    hook = CheckInvalidLossHook(interval=4)
    # iteration index 3 is the 4th iteration: checked
    with pytest.raises(AssertionError, match='iteration 4'):
        hook.after_train_iter(_runner(3), 3, outputs=dict(loss=torch.tensor(bad)))
    with pytest.raises(FloatingPointError):
        hook.after_train_iter(_runner(7), 7, outputs=dict(loss=torch.tensor(bad)))


def test_unchecked_iterations_and_finite_losses_pass():
    hook = CheckInvalidLossHook(interval=4)
    for iteration in (0, 1, 2, 4, 5, 6):  # 1-based 1, 2, 3, 5, 6, 7: not multiples of 4
        hook.after_train_iter(_runner(iteration), iteration,
                              outputs=dict(loss=torch.tensor(math.nan)))
    hook.after_train_iter(_runner(3), 3, outputs=dict(loss=torch.tensor(2.5)))
