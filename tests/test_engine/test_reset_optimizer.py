"""``--reset-optimizer``: resume without the checkpoint's optimizer and scheduler states, with
the config's schedulers stepped to the resumed iteration (``mmdet_lite.engine.reset_optimizer``).

The end-to-end run (a diverged training resumed with a 10x lower lr) is in
``tests/test_robustness/test_training_stops.py``; these check the pieces in-process.
"""
from types import SimpleNamespace
from typing import List

import pytest
import torch
from mmengine.hooks import ParamSchedulerHook
from mmengine.optim import LinearLR, MultiStepLR, OptimWrapper
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner

from mmdet_lite.engine import ResetOptimizerRunner, fast_forward_param_schedulers
from mmdet_lite.registry import RUNNERS

EPOCH_LENGTH = 4


def _schedulers(optim_wrapper: OptimWrapper) -> list:
    # an iteration-based warmup over the first 6 iterations, and an epoch-based step at 2
    return [LinearLR(optim_wrapper, start_factor=0.1, by_epoch=False, begin=0, end=6),
            MultiStepLR(optim_wrapper, milestones=[2], gamma=0.1, by_epoch=True)]


def _loop(loop_type):
    loop = loop_type.__new__(loop_type)  # only its type and its dataloader's length matter
    loop.dataloader = [None] * EPOCH_LENGTH
    return loop


def _runner(loop_type, num_iters: int) -> SimpleNamespace:
    param = torch.nn.Parameter(torch.zeros(1))
    optim_wrapper = OptimWrapper(torch.optim.SGD([param], lr=0.1, momentum=0.9))
    return SimpleNamespace(optim_wrapper=optim_wrapper, param_schedulers=_schedulers(optim_wrapper),
                           train_loop=_loop(loop_type), iter=num_iters,
                           epoch=num_iters // EPOCH_LENGTH if loop_type is EpochBasedTrainLoop
                           else 0)


def _uninterrupted_lrs(loop_type, num_iters: int) -> List[float]:
    """The lr of iterations 1..num_iters of a run that ``ParamSchedulerHook`` steps."""
    runner = _runner(loop_type, 0)
    hook, lrs = ParamSchedulerHook(), []
    for i in range(1, num_iters + 1):
        lrs.append(runner.optim_wrapper.get_lr()['lr'][0])
        runner.optim_wrapper.step()
        hook.after_train_iter(runner, i - 1)
        if loop_type is EpochBasedTrainLoop and i % EPOCH_LENGTH == 0:
            hook.after_train_epoch(runner)
    return lrs


@pytest.mark.parametrize('loop_type', [EpochBasedTrainLoop, IterBasedTrainLoop])
def test_fast_forward_gives_the_lr_of_an_uninterrupted_run(loop_type):
    expected = _uninterrupted_lrs(loop_type, 14)
    for num_done in range(14):  # checkpoints at epoch ends and mid-epoch
        runner = _runner(loop_type, num_done)
        fast_forward_param_schedulers(runner)
        assert runner.optim_wrapper.get_lr()['lr'][0] == expected[num_done], num_done
    # the warmup and (epoch-based loop only) the step at epoch 2 are in there
    assert expected[0] == pytest.approx(0.01) and expected[5] == pytest.approx(0.1)
    assert expected[8] == pytest.approx(0.01 if loop_type is EpochBasedTrainLoop else 0.1)


def test_reset_optimizer_runner_resumes_without_optimizer_and_schedulers(monkeypatch):
    calls = []

    def resume(runner, filename, resume_optimizer=True, resume_param_scheduler=True,
               map_location='default'):
        calls.append((filename, resume_optimizer, resume_param_scheduler, map_location))
        loop = runner.train_loop
        loop._iter, loop._epoch = 6, 1  # what mmengine restores from the checkpoint

    # mmengine's resume (which needs a whole Runner and a checkpoint) is stood in for;
    # the subclass's override is what runs, as Runner.load_or_resume calls it
    monkeypatch.setattr(Runner, 'resume', resume)
    parts = _runner(EpochBasedTrainLoop, 0)
    runner = ResetOptimizerRunner.__new__(ResetOptimizerRunner)
    runner._train_loop, runner.optim_wrapper = parts.train_loop, parts.optim_wrapper
    runner.param_schedulers = parts.param_schedulers
    runner.resume('work/iter_6.pth')  # as load_or_resume calls it: the filename only
    assert calls == [('work/iter_6.pth', False, False, 'default')]
    # 6 iterations done: the warmup has ended, the epoch step at 2 not yet come
    expected = _uninterrupted_lrs(EpochBasedTrainLoop, 7)[6]
    assert runner.optim_wrapper.get_lr()['lr'][0] == expected == pytest.approx(0.1)


def test_reset_optimizer_runner_is_registered():
    assert RUNNERS.get('ResetOptimizerRunner') is ResetOptimizerRunner
    assert issubclass(ResetOptimizerRunner, Runner)
