"""Faults during training (issue 7): non-finite losses, broken images, a full disk.

The training tests run ``tools/train.py`` on the tiny shapes config with a plugin hook
(``robust_training_plugins.py``) that breaks something at a chosen iteration.
"""
import errno
import os.path as osp
import re
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.optim import AmpOptimWrapper as MMEngineAmpOptimWrapper
from mmengine.optim import OptimWrapper as MMEngineOptimWrapper
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from robust_training_helpers import describe, files, load, train, train_scalars, write_config
from torch import nn

from mmdet_lite.datasets.transforms import LoadImageFromFile
from mmdet_lite.engine import (AmpOptimWrapper, CPUAmpOptimWrapper, NonFiniteGuardMixin,
                               OptimWrapper)
from mmdet_lite.engine.hooks import NonFiniteLossHook
from mmdet_lite.engine.hooks.nonfinite_loss_hook import nonfinite_terms
from mmdet_lite.registry import OPTIM_WRAPPERS


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp('shapes_tiny')


def _nan_at_iteration_2(folder) -> str:
    # a default hook, so that custom_hooks stays the default runtime's
    return write_config(folder, 'nan_at_2', '''
default_hooks = dict(
    inject_nan=dict(type='InjectNaNLossHook', iteration=2, term='loss_bbox'),
    save_state=dict(type='SaveModelStateHook', iterations=(1, 2, 3)))
''')


@pytest.mark.slow
def test_nonfinite_loss_stops_naming_iteration_and_terms(tmp_path, data_root):
    result = train(_nan_at_iteration_2(tmp_path), tmp_path / 'work', data_root)
    assert result.returncode == 2, describe(result)
    assert 'Traceback' not in result.stderr, describe(result)
    assert ('error: non-finite loss at iteration 2 (epoch 1): loss_bbox=nan. Training stopped '
            'before the optimizer step') in result.stderr, describe(result)
    assert 'Or skip such steps: --cfg-options custom_hooks.1.skip_nonfinite=True' \
        in result.stderr
    assert sorted(train_scalars(tmp_path / 'work')) == [1]  # stopped before logging it


@pytest.mark.slow
def test_skip_nonfinite_skips_the_update_and_counts_it(tmp_path, data_root):
    work_dir = tmp_path / 'work'
    result = train(_nan_at_iteration_2(tmp_path), work_dir, data_root,
                   ['custom_hooks.1.skip_nonfinite=True'])
    assert result.returncode == 0, describe(result)
    assert ('non-finite loss at iteration 2 (epoch 1): loss_bbox=nan: skipped the optimizer '
            'step (1 skipped so far)') in result.stdout
    scalars = train_scalars(work_dir)
    assert sorted(scalars) == [1, 2, 3, 4]
    assert 'nonfinite_skips' not in scalars[1]
    assert [scalars[i]['nonfinite_skips'] for i in (2, 3, 4)] == [1, 1, 1]
    assert all(np.isfinite(scalars[i]['loss']) for i in scalars)
    after = {i: torch.load(work_dir / f'iter{i}_rank0.pth') for i in (1, 2, 3)}
    # the skipped step left parameters and BN statistics as they were after iteration 1
    for kind in ('parameters', 'buffers'):
        assert all(torch.equal(after[1][kind][k], after[2][kind][k]) for k in after[1][kind])
    assert not all(torch.equal(after[2]['parameters'][k], after[3]['parameters'][k])
                   for k in after[2]['parameters'])


def _break_image_after_iteration_2(folder, mode: str) -> str:
    return write_config(folder, f'{mode}_image', f'''
default_hooks = dict(break_image=dict(type='BreakImageFileHook', iteration=2, mode={mode!r}))
''')


@pytest.mark.slow
def test_missing_image_mid_epoch_stops_naming_the_file(tmp_path):
    work_dir = tmp_path / 'work'
    result = train(_break_image_after_iteration_2(tmp_path, 'missing'), work_dir,
                   tmp_path / 'data')
    broken = (work_dir / 'broken_image.txt').read_text()
    assert result.returncode == 2, describe(result)
    assert f'error: image file not found: {broken}' in result.stderr
    # stopped at batch 3 or 4 of the epoch, where the broken image came up
    assert set(train_scalars(work_dir)) in ({1, 2}, {1, 2, 3})


@pytest.mark.slow
def test_skip_broken_images_option_skips_with_warning_and_count(tmp_path):
    work_dir = tmp_path / 'work'
    result = train(_break_image_after_iteration_2(tmp_path, 'corrupt'), work_dir,
                   tmp_path / 'data', ['+train_dataloader.dataset.pipeline.0.ignore_empty=True'])
    assert result.returncode == 0, describe(result)
    broken = (work_dir / 'broken_image.txt').read_text()
    assert (f'LoadImageFromFile: skipping a sample: could not decode image {broken} (10 bytes)'
            in result.stdout)
    assert '(1 unreadable image(s) skipped so far by this process)' in result.stdout
    assert sorted(train_scalars(work_dir)) == [1, 2, 3, 4]


@pytest.mark.slow
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, data_root):
    config = write_config(tmp_path, 'disk_full', '''
train_cfg = dict(max_epochs=2, val_interval=10)
default_hooks = dict(
    checkpoint=dict(max_keep_ckpts=1),  # mmengine would delete epoch_1 before writing epoch_2
    break_write=dict(type='BreakCheckpointWriteHook', filename='epoch_2.pth', action='enospc'))
''')
    work_dir = tmp_path / 'work'
    result = train(config, work_dir, data_root)
    assert result.returncode != 0, describe(result)
    previous, failed = osp.join(work_dir, 'epoch_1.pth'), osp.join(work_dir, 'epoch_2.pth')
    assert (f'OSError: [Errno {errno.ENOSPC}] could not save checkpoint {failed}: No space left '
            f'on device. The partial file was removed and the latest complete checkpoint is '
            f'still {previous}') in result.stderr, describe(result)
    assert [n for n in files(work_dir) if '.pth' in n] == ['epoch_1.pth']
    assert (work_dir / 'last_checkpoint').read_text() == previous
    assert load(previous)['meta']['epoch'] == 1


# --- in-process checks of the building blocks ---

def test_load_image_errors_name_the_file(tmp_path):
    missing, corrupt = str(tmp_path / 'missing.png'), str(tmp_path / 'corrupt.png')
    (tmp_path / 'corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 8)
    loader = LoadImageFromFile()
    with pytest.raises(FileNotFoundError, match=f'image file not found: {missing}'):
        loader(dict(img_path=missing))
    with pytest.raises(ValueError, match=f'could not decode image {corrupt} \\(16 bytes\\)'):
        loader(dict(img_path=corrupt))


def test_load_image_ignore_empty_skips_and_counts(tmp_path):
    good = str(tmp_path / 'good.png')
    cv2.imwrite(good, np.full((5, 7, 3), 200, np.uint8))
    loader = LoadImageFromFile(ignore_empty=True)
    assert loader(dict(img_path=str(tmp_path / 'missing.png'))) is None
    assert loader(dict(img_path=str(tmp_path / 'missing2.png'))) is None
    assert loader.num_skipped == 2
    results = loader(dict(img_path=good))
    assert results['img'].shape == (5, 7, 3) and results['img'].dtype == np.uint8
    assert results['ori_shape'] == results['img_shape'] == (5, 7)


def test_nonfinite_terms_lists_only_bad_loss_terms():
    log_vars = dict(loss=torch.tensor(float('nan')), loss_cls=torch.tensor(1.0),
                    loss_bbox=torch.tensor(float('inf')), acc=torch.tensor(float('nan')))
    assert nonfinite_terms(log_vars) == ['loss', 'loss_bbox']


def test_nonfinite_loss_hook_checks_its_argument():
    with pytest.raises(TypeError, match='skip_nonfinite must be True or False'):
        NonFiniteLossHook(skip_nonfinite='yes')
    for bad, error in ((0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match=re.escape('NonFiniteLossHook: max_consecutive_skips '
                                                  f'must be a positive int, got {bad!r}')):
            NonFiniteLossHook(skip_nonfinite=True, max_consecutive_skips=bad)


class _LossModel(BaseModel):
    """Only what the hook touches: ``parse_losses``, a BN buffer and a parameter."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(2)

    def forward(self, *args, **kwargs):
        raise NotImplementedError


def _hook_runner(work_dir) -> SimpleNamespace:
    """The parts of a Runner that ``NonFiniteLossHook`` uses."""
    name = f'nonfinite_{id(work_dir)}'
    cfg = Config(dict(
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.02)),
        custom_hooks=[dict(type='NonFiniteLossHook', skip_nonfinite=True,
                           max_consecutive_skips=3)]))
    model = _LossModel()
    return SimpleNamespace(
        iter=0, epoch=0, work_dir=str(work_dir), cfg=cfg, model=model,
        optim_wrapper=OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)),
        message_hub=MessageHub.get_instance(name), logger=MMLogger.get_instance(name))


def _train_iter(runner, hook: NonFiniteLossHook, losses: dict) -> dict:
    """One training iteration as mmengine's loop and ``BaseModel.train_step`` run it, with
    ``losses`` the model's; returns the ``outputs`` after the hooks."""
    hook.before_train_iter(runner, runner.iter)
    # losses depend on the weights, as a model's do
    weight = runner.model.bn.weight.sum()
    loss, log_vars = runner.model.parse_losses(
        {name: value * weight / 2 for name, value in losses.items()})
    runner.optim_wrapper.update_params(loss)
    hook.after_train_iter(runner, runner.iter, outputs=log_vars)
    return log_vars


def test_skip_nonfinite_stops_after_max_consecutive_skips_and_finite_steps_reset(tmp_path):
    runner = _hook_runner(tmp_path)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    hook = NonFiniteLossHook(skip_nonfinite=True, max_consecutive_skips=3)
    hook.before_train(runner)
    nan, one = torch.tensor(float('nan')), torch.tensor(1.0)
    steps = [dict(loss_cls=one, loss_bbox=nan), dict(loss_cls=nan, loss_bbox=one),  # 2 skips
             dict(loss_cls=one, loss_bbox=one),  # finite: the count starts again
             dict(loss_cls=one, loss_bbox=nan), dict(loss_cls=one, loss_bbox=nan)]
    for i, losses in enumerate(steps):
        runner.iter = i
        weight_before = runner.model.bn.weight.detach().clone()
        outputs = _train_iter(runner, hook, losses)
        stepped = not torch.equal(runner.model.bn.weight, weight_before)
        assert stepped == (i == 2), i  # only the finite step updated the weights
        # a skipped step's non-finite terms (and total) are kept out of the log
        assert sorted(outputs) == (['loss', 'loss_bbox', 'loss_cls'] if i == 2 else
                                   ['loss_bbox'] if i == 1 else ['loss_cls']), i
    assert runner.message_hub.get_info('nonfinite_skips') == 4
    runner.iter = 5
    with pytest.raises(FloatingPointError) as error:
        _train_iter(runner, hook, dict(loss_cls=nan, loss_bbox=nan))
    assert str(error.value) == (
        'NonFiniteLossHook: 3 steps in a row had a non-finite loss (loss_bbox, loss_cls) and '
        'were skipped, the last at iteration 6 (epoch 1): loss_cls=nan, loss_bbox=nan. The '
        'training has diverged and skipping cannot help (max_consecutive_skips=3): stopped. '
        f'To go on from the last checkpoint, {tmp_path / "iter_4.pth"}, with a fresh '
        f'optimizer and a 10x lower lr: python tools/train.py CONFIG --work-dir {tmp_path} '
        '--resume --reset-optimizer --cfg-options optim_wrapper.optimizer.lr=0.002; other '
        'fixes: clip_grad, check the labels')


def test_nonfinite_stop_without_checkpoint_or_lr_says_so(tmp_path):
    runner = _hook_runner(tmp_path)
    runner.cfg = Config(dict(optim_wrapper=dict(optimizer=dict(type='SGD')),
                             default_hooks=dict(nonfinite=dict(type='NonFiniteLossHook'))))
    hook = NonFiniteLossHook()
    hook.before_train(runner)
    weight_before = runner.model.bn.weight.detach().clone()
    with pytest.raises(FloatingPointError) as error:
        _train_iter(runner, hook, dict(loss_bbox=torch.tensor(float('inf'))))
    assert str(error.value) == (
        'non-finite loss at iteration 1 (epoch 1): loss_bbox=inf. Training stopped before the '
        'optimizer step, so the weights are not poisoned. No checkpoint was saved yet; to '
        'start again with a fresh optimizer, lower the lr in the config, then run: python '
        f'tools/train.py CONFIG --work-dir {tmp_path} --resume --reset-optimizer; other fixes: '
        'clip_grad, check the labels. Or skip such steps: --cfg-options '
        '+default_hooks.nonfinite.skip_nonfinite=True')
    assert torch.equal(runner.model.bn.weight, weight_before)
    assert runner.model.bn.weight.grad is None  # no backward either


def _sgd_wrapper(wrapper_type=OptimWrapper, **kwargs):
    param = nn.Parameter(torch.ones(2))
    return param, wrapper_type(optimizer=torch.optim.SGD([param], lr=0.1, momentum=0.9),
                               **kwargs)


@pytest.mark.parametrize('wrapper_type', [OptimWrapper, CPUAmpOptimWrapper])
def test_guarded_wrapper_skips_backward_step_and_zero_grad_of_a_nonfinite_loss(wrapper_type):
    param, wrapper = _sgd_wrapper(wrapper_type, accumulative_counts=2)
    wrapper.initialize_count_status(nn.Linear(1, 1), 0, 4)
    skipped = []
    wrapper.attach_nonfinite_guard(skipped.append)
    assert wrapper.nonfinite_guard == skipped.append
    wrapper.update_params((param * 2).sum())  # 1 of 2 accumulated: backward, no step
    grad = param.grad.clone()
    wrapper.update_params((param * float('nan')).sum())
    assert len(skipped) == 1 and torch.isnan(skipped[0])
    assert torch.equal(param.grad, grad)  # no backward, no zero_grad
    assert wrapper._inner_count == 1  # the accumulation did not advance
    assert torch.equal(param.detach(), torch.ones(2))
    assert wrapper.optimizer.state_dict()['state'] == {}  # no momentum step
    wrapper.update_params((param * 2).sum())  # 2 of 2: the step happens
    assert not torch.equal(param.detach(), torch.ones(2)) and param.grad is None

    wrapper.detach_nonfinite_guard()  # then it is mmengine's update_params again
    assert wrapper.nonfinite_guard is None
    wrapper.update_params((param * float('inf')).sum())
    wrapper.update_params((param * float('inf')).sum())
    assert len(skipped) == 1 and not torch.isfinite(param).all()


def test_configs_in_the_mmdet_lite_scope_get_the_guarded_wrappers():
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        for name, expected in (('OptimWrapper', OptimWrapper),
                               ('AmpOptimWrapper', AmpOptimWrapper),
                               ('CPUAmpOptimWrapper', CPUAmpOptimWrapper)):
            assert OPTIM_WRAPPERS.get(name) is expected, name
        # the type mmengine's constructor defaults to, built as a Runner builds it
        model = nn.Linear(2, 2)
        wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1)))
        assert type(wrapper) is OptimWrapper
    assert issubclass(AmpOptimWrapper, MMEngineAmpOptimWrapper)


def test_nonfinite_loss_hook_refuses_a_wrapper_that_cannot_skip(tmp_path):
    runner = _hook_runner(tmp_path)
    runner.optim_wrapper = MMEngineOptimWrapper(
        torch.optim.SGD(runner.model.parameters(), lr=0.1))
    with pytest.raises(TypeError) as error:
        NonFiniteLossHook().before_train(runner)
    assert str(error.value) == (
        "NonFiniteLossHook needs an optimizer wrapper that can skip a step before its "
        "backward, but the runner's is mmengine.optim.optimizer.optimizer_wrapper."
        "OptimWrapper. Use mmdet_lite's OptimWrapper, AmpOptimWrapper or CPUAmpOptimWrapper "
        "(configs with default_scope='mmdet_lite' get them for type='OptimWrapper' / "
        "'AmpOptimWrapper'), or put mmdet_lite.engine.NonFiniteGuardMixin first in the bases "
        "of OptimWrapper: class OptimWrapper(NonFiniteGuardMixin, ...)")


def test_guard_mixin_must_come_first_in_the_bases():
    class Late(MMEngineOptimWrapper, NonFiniteGuardMixin):
        pass

    param = nn.Parameter(torch.ones(1))
    with pytest.raises(TypeError, match=re.escape(
            'Late: NonFiniteGuardMixin must come before OptimWrapper in the bases, or '
            'OptimWrapper.update_params runs without the check')):
        Late(torch.optim.SGD([param], lr=0.1)).attach_nonfinite_guard(print)
