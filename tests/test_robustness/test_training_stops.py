"""A training that stops says where, and how to go on, in one line; and that recipe works.

Subprocesses run ``tools/train.py`` on variants of the tiny shapes config:

- a run that diverges while its lr is too high (``training_stop_plugins.NaNLossAboveLrHook``)
  stops with ``error: non-finite loss ...`` and exit status 2; the command at the end of
  that line (``--resume --reset-optimizer --cfg-options optim_wrapper.optimizer.lr=<lr/10>``)
  finishes the training from the last checkpoint, at the lr a fresh run of the lowered
  config has at those iterations (its warmup does not start again);
- with ``skip_nonfinite=True`` a run whose every step is non-finite stops after
  ``max_consecutive_skips`` skipped steps instead of skipping forever;
- Ctrl-C (SIGINT) ends ``tools/train.py`` with one line and exit status 130.

In-process tests cover Ctrl-C in ``tools/test.py`` (``Runner.test`` patched to raise it),
before the Runner exists, and the message's resume command.
"""
import json
import os
import os.path as osp
import re
import shlex
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path
from typing import Dict, Sequence

import pytest
from helpers_tools import (REPO_ROOT, TINY_CONFIG, TRAIN_TOOL, load_script, run_tool,
                           tiny_data_cfg_options, tool_env)
from mmengine.config import Config

from mmdet_lite.apis.cli import exit_on_user_error, note_run

PLUGIN_DIR = osp.dirname(osp.abspath(__file__))
PLUGIN_ENV = {'PYTHONPATH': os.pathsep.join([REPO_ROOT, PLUGIN_DIR])}
# The lr the stop message proposes: the tiny config's AdamW lr 1e-3, divided by 10.
LOWER_LR = '0.0001'
DEBUG_HINT = '  (set MMDET_LITE_DEBUG=1 for the traceback)'

# Iteration-based, a checkpoint every 3 iterations, no validation; the warmup lasts 6
# iterations, so the lr of iteration 4 still depends on the schedulers' step count.
ITER_BASED = '''
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=7, val_interval=100)
train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=6)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=-1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=3)
'''


def write_config(folder: Path, name: str, body: str) -> str:
    """``folder/name.py``: the tiny config, this folder's plugin, then ``body``."""
    path = folder / f'{name}.py'
    path.write_text(f'_base_ = {TINY_CONFIG!r}\n'
                    "custom_imports = dict(imports=['training_stop_plugins'], "
                    'allow_failed_imports=False)\n' + body)
    return str(path)


def train(config: str, work_dir: Path, data_root: Path,
          cfg_options: Sequence[str] = ()) -> subprocess.CompletedProcess:
    return run_tool('train', [config, '--work-dir', str(work_dir), '--cfg-options',
                              *tiny_data_cfg_options(data_root), *cfg_options],
                    env=PLUGIN_ENV)


def describe(result: subprocess.CompletedProcess) -> str:
    return f'exit {result.returncode}\n{(result.stdout + result.stderr)[-3000:]}'


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def train_lrs(work_dir: Path) -> Dict[int, float]:
    """``{iteration: lr}`` from the ``scalars.json`` of every run in ``work_dir``; a later
    run's entries replace an earlier one's."""
    lrs = {}
    for run in sorted(p for p in work_dir.iterdir() if p.is_dir()):
        path = run / 'vis_data' / 'scalars.json'
        if path.is_file():
            for line in path.read_text().splitlines():
                entry = json.loads(line)
                if 'loss' in entry:
                    lrs[entry['iter']] = entry['lr']
    return lrs


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp('shapes_tiny')


@pytest.mark.slow
def test_nonfinite_stop_prints_a_resume_recipe_that_works(tmp_path, data_root):
    config = write_config(tmp_path, 'diverges', ITER_BASED + '''
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='NonFiniteLossHook'),
                dict(type='NaNLossAboveLrHook', iteration=5, lr=5e-4)]
''')
    work_dir = tmp_path / 'work'
    data_options = tiny_data_cfg_options(data_root)
    result = train(config, work_dir, data_root)

    # one line, exit status 2: the iteration, the term, the last checkpoint, the command
    assert result.returncode == 2, describe(result)
    assert 'Traceback' not in result.stderr, describe(result)
    command = shlex.join(['python', 'tools/train.py', config, '--work-dir', str(work_dir),
                          '--resume', '--reset-optimizer', '--cfg-options', *data_options,
                          f'optim_wrapper.optimizer.lr={LOWER_LR}'])
    assert last_line(result.stderr) == (
        'error: non-finite loss at iteration 5 (epoch 1): loss_bbox=nan. Training stopped '
        'before the optimizer step, so the weights are not poisoned. To go on from the last '
        f'checkpoint, {work_dir / "iter_3.pth"}, with a fresh optimizer and a 10x lower lr: '
        f'{command}; other fixes: clip_grad, check the labels. Or skip such steps: '
        '--cfg-options +custom_hooks.1.skip_nonfinite=True' + DEBUG_HINT)  # a new key there
    assert sorted(train_lrs(work_dir)) == [1, 2, 3, 4]

    # the printed command, run as printed (from the repository root), finishes the run
    argv = shlex.split(command)
    assert argv[:2] == ['python', 'tools/train.py']
    resumed = subprocess.run([sys.executable, TRAIN_TOOL, *argv[2:]], cwd=REPO_ROOT,
                             env=tool_env(PLUGIN_ENV), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, describe(resumed)
    assert (f'--reset-optimizer: resumed the weights and counters of '
            f'{work_dir / "iter_3.pth"}; the optimizer and the lr schedule are the '
            "config's, at iteration 3") in resumed.stdout
    assert 'resumed epoch: 0, iter: 3' in resumed.stdout

    # its lr is a fresh run's of the lowered config, not the warmup's start again
    fresh_dir = tmp_path / 'fresh'
    fresh = train(config, fresh_dir, data_root,
                  [f'optim_wrapper.optimizer.lr={LOWER_LR}', 'train_cfg.max_iters=5'])
    assert fresh.returncode == 0, describe(fresh)
    resumed_lrs, fresh_lrs = train_lrs(work_dir), train_lrs(fresh_dir)
    assert sorted(resumed_lrs) == list(range(1, 8))
    assert [resumed_lrs[i] for i in (4, 5)] == [fresh_lrs[i] for i in (4, 5)]
    # step 3 of mmengine's LinearLR from 0.1 to 1 over steps 0..5, not the warmup's step 0
    assert resumed_lrs[4] == pytest.approx(1e-4 * (0.1 + 0.9 * 3 / 5))


@pytest.mark.slow
def test_skip_nonfinite_stops_after_max_consecutive_skips(tmp_path, data_root):
    config = write_config(tmp_path, 'always_nan', ITER_BASED + '''
custom_hooks = [dict(type='NumClassCheckHook'),
                dict(type='NonFiniteLossHook', skip_nonfinite=True, max_consecutive_skips=3),
                dict(type='NaNLossAboveLrHook', iteration=2)]
''')
    work_dir = tmp_path / 'work'
    result = train(config, work_dir, data_root)

    assert result.returncode == 2, describe(result)
    assert 'Traceback' not in result.stderr, describe(result)
    for skips, iteration in ((1, 2), (2, 3), (3, 4)):
        assert (f'non-finite loss at iteration {iteration} (epoch 1): loss_bbox=nan: skipped '
                f'the optimizer step ({skips} skipped so far)') in result.stdout
    command = shlex.join(['python', 'tools/train.py', config, '--work-dir', str(work_dir),
                          '--resume', '--reset-optimizer', '--cfg-options',
                          *tiny_data_cfg_options(data_root),
                          f'optim_wrapper.optimizer.lr={LOWER_LR}'])
    assert last_line(result.stderr) == (
        'error: NonFiniteLossHook: 3 steps in a row had a non-finite loss (loss_bbox) and '
        'were skipped, the last at iteration 4 (epoch 1): loss_bbox=nan. The training has '
        'diverged and skipping cannot help (max_consecutive_skips=3): stopped. To go on from '
        f'the last checkpoint, {work_dir / "iter_3.pth"}, with a fresh optimizer and a 10x '
        f'lower lr: {command}; other fixes: clip_grad, check the labels' + DEBUG_HINT)
    # it stopped instead of training on and writing checkpoints of a diverged model
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_3.pth']


def _sigint_as_in_a_terminal() -> None:
    """In the child, before exec: SIGINT delivered and not ignored, as for a command typed
    in a terminal. A child inherits an ignored or blocked SIGINT from this process, which a
    library loaded by an earlier test in the same pytest run may have left so (seen once in
    a clean-clone run: the tool then trained to its end with status 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@pytest.mark.slow
def test_ctrl_c_during_training_prints_one_line_with_the_resume_command(tmp_path, data_root):
    work_dir = tmp_path / 'work'
    data_options = tiny_data_cfg_options(data_root)
    stdout, stderr = open(tmp_path / 'stdout', 'w+'), open(tmp_path / 'stderr', 'w+')
    proc = subprocess.Popen(
        [sys.executable, TRAIN_TOOL, TINY_CONFIG, '--work-dir', str(work_dir),
         '--cfg-options', *data_options, 'train_cfg.max_epochs=100',
         'train_cfg.val_interval=100'],
        cwd=REPO_ROOT, env=tool_env(), stdout=stdout, stderr=stderr,
        preexec_fn=_sigint_as_in_a_terminal)
    try:
        deadline = time.monotonic() + 240
        while not (work_dir / 'last_checkpoint').is_file():  # after epoch 1 (4 iterations)
            assert proc.poll() is None, open(tmp_path / 'stderr').read()[-3000:]
            assert time.monotonic() < deadline, 'no checkpoint within 240 s'
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr.seek(0)
    err = stderr.read()
    assert returncode == 130, err[-3000:]
    assert 'Traceback' not in err
    line = last_line(err)
    resume = shlex.join(['python', 'tools/train.py', TINY_CONFIG, '--work-dir', str(work_dir),
                         '--resume', '--cfg-options', *data_options,
                         'train_cfg.max_epochs=100', 'train_cfg.val_interval=100'])
    match = re.fullmatch(r'interrupted \(Ctrl-C\) in epoch (\d+) of 100 with (\d+) of 400 '
                         r'iterations done; last checkpoint: (.+)\. Resume with: (.+)', line)
    assert match, line
    epoch, done = int(match.group(1)), int(match.group(2))
    # SIGINT came after epoch 1's checkpoint (4 iterations an epoch), in an epoch's
    # iterations or in the hooks at its end (saving its checkpoint, say)
    assert done >= 4 and (epoch == done // 4 + 1 or (done % 4 == 0 and epoch == done // 4))
    checkpoint = (work_dir / 'last_checkpoint').read_text()
    assert match.group(3) == checkpoint
    assert re.fullmatch(re.escape(str(work_dir)) + r'/epoch_(\d+)\.pth', checkpoint)
    assert match.group(4) == resume


def test_ctrl_c_during_testing_prints_one_line(tmp_path, monkeypatch, capsys):
    from mmengine.runner import Runner

    def interrupted_test(self):
        raise KeyboardInterrupt

    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    monkeypatch.setattr(Runner, 'test', interrupted_test)
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')  # never read: the test is interrupted before loading it
    data_options = tiny_data_cfg_options(tmp_path / 'data')
    with pytest.raises(SystemExit) as exit_info:
        load_script('test').main([TINY_CONFIG, str(checkpoint), '--work-dir',
                                 str(tmp_path / 'work'), '--cfg-options', *data_options])
    assert exit_info.value.code == 130
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    assert last_line(err) == (
        f'interrupted (Ctrl-C) while testing {checkpoint}: no metrics were written. Run it '
        'again with: ' + shlex.join(['python', 'tools/test.py', TINY_CONFIG, str(checkpoint),
                                     '--cfg-options', *data_options]))


def test_ctrl_c_before_the_runner_is_built_names_the_checkpoint_and_command(
        tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()

    @exit_on_user_error
    def main(checkpoint_saved: bool) -> None:
        args = Namespace(config='configs/x.py', cfg_options=['a.b=1'], resume=None, amp=True,
                         auto_scale_lr=False)
        if checkpoint_saved:
            (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_3.pth'))
        note_run('train', args, Config(dict(work_dir=str(work_dir))))
        raise KeyboardInterrupt

    for saved, where in ((False, 'no checkpoint yet'), (True, str(work_dir / 'epoch_3.pth'))):
        with pytest.raises(SystemExit) as exit_info:
            main(saved)
        assert exit_info.value.code == 130
        assert capsys.readouterr().err == (
            f'interrupted (Ctrl-C) before training started; last checkpoint: {where}. '
            f'Resume with: python tools/train.py configs/x.py --work-dir {work_dir} --amp '
            '--resume --cfg-options a.b=1\n')


def test_ctrl_c_keeps_reset_optimizer_until_the_run_saved_a_checkpoint(
        tmp_path, monkeypatch, capsys):
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))

    @exit_on_user_error
    def main(saves: bool) -> None:
        args = Namespace(config='x.py', cfg_options=['optim_wrapper.optimizer.lr=0.001'],
                         resume='auto', reset_optimizer=True)
        note_run('train', args, Config(dict(work_dir=str(tmp_path))))
        if saves:
            (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_4.pth'))
        raise KeyboardInterrupt

    for saves, checkpoint, reset in ((False, 'epoch_3.pth', ' --reset-optimizer'),
                                     (True, 'epoch_4.pth', '')):
        with pytest.raises(SystemExit):
            main(saves)
        assert capsys.readouterr().err == (
            f'interrupted (Ctrl-C) before training started; last checkpoint: '
            f'{tmp_path / checkpoint}. Resume with: python tools/train.py x.py --work-dir '
            f'{tmp_path} --resume{reset} --cfg-options optim_wrapper.optimizer.lr=0.001\n')


def test_ctrl_c_turned_into_another_error_by_mmengine_is_still_an_interrupt(capsys,
                                                                            monkeypatch):
    """mmengine's ``Config.pretty_text``, run at every checkpoint save, re-raises any
    exception as ``SyntaxError``."""
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)

    @exit_on_user_error
    def main() -> None:
        try:
            raise KeyboardInterrupt
        except:  # noqa: E722  (what mmengine does)
            raise SyntaxError('Failed to format the config file')

    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == 'interrupted (Ctrl-C)\n'


def test_reset_optimizer_needs_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    with pytest.raises(SystemExit) as exit_info:
        load_script('train').main([TINY_CONFIG, '--work-dir', str(tmp_path), '--reset-optimizer'])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: --reset-optimizer only applies with --resume (it keeps the checkpoint's "
        "weights and counters but the config's optimizer)  (set MMDET_LITE_DEBUG=1 for the "
        'traceback)\n')


def test_reset_optimizer_refuses_a_config_with_another_runner_type(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.delenv('MMDET_LITE_DEBUG', raising=False)
    checkpoint = tmp_path / 'iter_3.pth'
    checkpoint.write_bytes(b'')  # never read: refused before the Runner is built
    with pytest.raises(SystemExit) as exit_info:
        load_script('train').main([TINY_CONFIG, '--work-dir', str(tmp_path / 'work'),
                                   '--resume', str(checkpoint), '--reset-optimizer',
                                   '--cfg-options', '+runner_type=Runner'])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: --reset-optimizer trains with mmdet_lite's ResetOptimizerRunner, whose resume "
        "keeps the config's optimizer and lr schedule, but the config sets "
        "runner_type='Runner': remove runner_type from the config, or derive that runner "
        'from mmdet_lite.engine.ResetOptimizerRunner  (set MMDET_LITE_DEBUG=1 for the '
        'traceback)\n')
