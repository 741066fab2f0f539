"""Ctrl-C stops a training even when its ``KeyboardInterrupt`` is swallowed on the way up.

Python raises the ``KeyboardInterrupt`` of a SIGINT in whatever the main thread runs at that
moment; code that ignores errors there (a finalizer, a C API that clears them) makes it
vanish, and ``tools/train.py`` used to finish the whole training with exit status 0 (the
rare failure of ``test_ctrl_c_during_training_prints_one_line_with_the_resume_command``).
:func:`mmdet_lite.apis.cli.record_sigint` writes the SIGINT down and the training tool's
``SigintCheckHook`` raises it again at the next step. Here a hook sends the SIGINT to this
process and swallows it itself, which makes that failure happen every time.
"""
import os
import re
import signal
import time

import pytest
from helpers_tools import TINY_CONFIG, tiny_data_cfg_options
from mmengine.hooks import Hook

from mmdet_lite.apis.cli import record_sigint
from mmdet_lite.registry import HOOKS


def send_sigint_and_swallow_it() -> None:
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the handler runs by now (at the latest when the signal ends it)
    except KeyboardInterrupt:
        pass  # what a finalizer or an error-clearing C call does with it


@HOOKS.register_module(force=True)
class SwallowedCtrlCHook(Hook):
    """Ctrl-C after training iteration ``iteration`` (1-based), swallowed right away."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            send_sigint_and_swallow_it()


@pytest.fixture
def python_sigint_handler():
    """The tests need Python's own SIGINT handler in force, as in a fresh process."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip('SIGINT is handled by something else in this process')
    yield
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_swallowed_sigint_is_raised_when_the_block_ends(python_sigint_handler):
    with pytest.raises(KeyboardInterrupt):
        with record_sigint() as sigint:
            send_sigint_and_swallow_it()
            assert sigint.received
    # an error after it (the swallowing code went on with broken state) is the interrupt too
    with pytest.raises(KeyboardInterrupt) as info:
        with record_sigint():
            send_sigint_and_swallow_it()
            raise RuntimeError('follow-up failure')
    assert isinstance(info.value.__cause__, RuntimeError)


def test_without_sigint_nothing_changes(python_sigint_handler):
    with record_sigint() as sigint:
        pass
    assert not sigint.received
    with pytest.raises(ValueError):
        with record_sigint():
            raise ValueError('a user error stays one')


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. started with nohup
    try:
        with record_sigint() as sigint:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert not sigint.received
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_training_stops_with_status_130_after_a_swallowed_ctrl_c(call_tool, tmp_path,
                                                                 python_sigint_handler):
    work_dir = tmp_path / 'work'
    proc = call_tool('train', [
        TINY_CONFIG, '--work-dir', work_dir, '--cfg-options',
        *tiny_data_cfg_options(tmp_path / 'data'), 'val_dataloader=None', 'val_cfg=None',
        'val_evaluator=None', "custom_hooks=[dict(type='SwallowedCtrlCHook',iteration=2)]"])
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    # stopped before iteration 3 (the tiny config's epoch has 4), before any checkpoint
    line = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r'interrupted \(Ctrl-C\) in epoch 1 of 1 with 2 of 4 iterations '
                        r'done; last checkpoint: no checkpoint yet\. Resume with: .+', line), line
    assert not list(work_dir.glob('*.pth'))
