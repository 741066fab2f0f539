"""Stop, or skip the step, when a loss becomes NaN or infinite.

Without a check, one non-finite loss turns every parameter into NaN through the optimizer
step, and training goes on for hours producing nothing. This hook checks the loss after
the model computes it and before the optimizer wrapper updates anything:

- by default it raises ``FloatingPointError`` naming the iteration and the non-finite
  terms (``loss_bbox=nan``), so the run ends with a non-zero exit status and its last
  checkpoint intact; the message ends with the command that goes on from that checkpoint
  with a 10x lower lr (``tools/train.py ... --resume --reset-optimizer --cfg-options
  optim_wrapper.optimizer.lr=...``);
- with ``skip_nonfinite=True`` the step is skipped (no backward, no optimizer or momentum
  update, and the BN statistics that its forward pass changed are put back), a warning is
  logged, and the running count ``nonfinite_skips`` appears in the training log lines (and
  in ``scalars.json``); the skipped step's losses are left out of the smoothed log values.
  After ``max_consecutive_skips`` skipped steps in a row (5 by default) the training has
  diverged and skipping cannot help: it stops with ``FloatingPointError`` as above.

In distributed training the ranks agree first (one small all-reduce per iteration): if
any rank's loss is non-finite, every rank stops or skips, so they stay in step and DDP's
gradient all-reduce never waits for a rank that skipped.

How it hooks in, through public extension points only: in ``before_train`` the hook
attaches itself to the Runner's optimizer wrapper with
:meth:`~mmdet_lite.engine.optim_wrappers.NonFiniteGuardMixin.attach_nonfinite_guard`. The
wrapper's ``update_params(loss)``, which ``train_step`` calls with the parsed loss, then
checks the loss first and, when it is non-finite on any rank, updates nothing (no backward,
no step, no ``zero_grad``) and tells the hook. The hook acts in ``after_train_iter``, whose
``outputs`` are the step's ``log_vars`` (the per-term losses that name the culprits): it
raises, or restores the BN statistics, counts and warns. The weights are not poisoned by
then, since the wrapper skipped the step. The hook's priority, ``HIGHEST``, makes it run
before every other ``after_train_iter`` (mmengine's ``RuntimeInfoHook``, ``VERY_HIGH``, puts
``outputs`` into the log; the param scheduler and checkpoint hooks come later): a stop
happens before anything else sees the step, and a skipped step's non-finite terms are
removed from ``outputs`` before they reach the log.

The optimizer wrapper must inherit ``NonFiniteGuardMixin``: mmdet_lite's ``OptimWrapper``,
``AmpOptimWrapper`` (registered under mmengine's names, so configs in the ``mmdet_lite``
scope get them unchanged) and ``CPUAmpOptimWrapper`` do. With another wrapper
``before_train`` raises ``TypeError`` saying so.
"""
import math
import os.path as osp
import shlex
from typing import Dict, List, Optional

import torch
from mmengine.dist import all_gather_object, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from torch import nn

from ...registry import HOOKS
from ..optim_wrappers import NonFiniteGuardMixin

# Message hub keys: the scalar shown in the log, and the count kept across resumes.
SKIPS_SCALAR = 'train/nonfinite_skips'
SKIPS_INFO = 'nonfinite_skips'
# Message hub key (never saved in checkpoints) where ``tools/train.py`` puts its
# ``resume_command(reset_optimizer: bool, cfg_options: dict) -> str``, which repeats the
# running command's config, work dir and options; without it the stop message builds a
# plain ``python tools/train.py CONFIG --work-dir WORK_DIR --resume ...``.
RESUME_COMMAND_INFO = 'resume_command'


def nonfinite_terms(log_vars: Dict[str, torch.Tensor]) -> List[str]:
    """Names of the loss terms (keys containing ``'loss'``) that are NaN or infinite."""
    return [name for name, value in log_vars.items()
            if 'loss' in name and not math.isfinite(_as_float(value))]


def _as_float(value) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """The path in ``<work_dir>/last_checkpoint`` (what a bare ``--resume`` picks)."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def _plain_resume_command(runner, reset_optimizer: bool, cfg_options: Dict[str, str]) -> str:
    """``python tools/train.py CONFIG --work-dir WORK_DIR --resume ...`` from the Runner
    alone, for a Runner that ``tools/train.py`` did not start."""
    command = ['python', 'tools/train.py', runner.cfg.filename or 'CONFIG', '--work-dir',
               runner.work_dir, '--resume'] + (['--reset-optimizer'] if reset_optimizer else [])
    if cfg_options:
        command += ['--cfg-options'] + [f'{key}={value}' for key, value in cfg_options.items()]
    return shlex.join(command)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise, or skip the optimizer step, when a training loss term is not finite.

    Needs an optimizer wrapper with
    :class:`~mmdet_lite.engine.optim_wrappers.NonFiniteGuardMixin` (see the module
    docstring); its priority is ``HIGHEST`` so that its ``after_train_iter`` runs first.

    Args:
        skip_nonfinite (bool): Skip such steps instead of stopping. Defaults to False.
        max_consecutive_skips (int): With ``skip_nonfinite``, stop anyway when this many
            steps in a row were non-finite (a finite step resets the count). Defaults to 5.
    """

    priority = 'HIGHEST'

    def __init__(self, skip_nonfinite: bool = False, max_consecutive_skips: int = 5) -> None:
        if not isinstance(skip_nonfinite, bool):
            raise TypeError(f'NonFiniteLossHook: skip_nonfinite must be True or False, got '
                            f'{skip_nonfinite!r}')
        if not isinstance(max_consecutive_skips, int) or isinstance(max_consecutive_skips,
                                                                    bool):
            raise TypeError(f'NonFiniteLossHook: max_consecutive_skips must be a positive '
                            f'int, got {max_consecutive_skips!r}')
        if max_consecutive_skips < 1:
            raise ValueError(f'NonFiniteLossHook: max_consecutive_skips must be a positive '
                             f'int, got {max_consecutive_skips!r}')
        self.skip_nonfinite = skip_nonfinite
        self.max_consecutive_skips = max_consecutive_skips
        # the current run of consecutive skipped steps: how many, and the terms involved
        self._consecutive_skips = 0
        self._streak_terms: List[str] = []
        # this rank's loss of the current iteration's skipped update (None: not skipped)
        self._skipped_loss: Optional[float] = None
        self._buffers_before_iter: Dict[str, torch.Tensor] = {}
        self._guarded: List[NonFiniteGuardMixin] = []

    def before_train(self, runner) -> None:
        optim_wrapper = runner.optim_wrapper
        wrappers = (list(optim_wrapper.values()) if isinstance(optim_wrapper, OptimWrapperDict)
                    else [optim_wrapper])
        for wrapper in wrappers:
            if not isinstance(wrapper, NonFiniteGuardMixin):
                kind = type(wrapper)
                raise TypeError(
                    f'NonFiniteLossHook needs an optimizer wrapper that can skip a step '
                    f'before its backward, but the runner\'s is {kind.__module__}.'
                    f'{kind.__qualname__}. Use mmdet_lite\'s OptimWrapper, AmpOptimWrapper or '
                    f'CPUAmpOptimWrapper (configs with default_scope=\'mmdet_lite\' get them '
                    f'for type=\'OptimWrapper\' / \'AmpOptimWrapper\'), or put '
                    f'mmdet_lite.engine.NonFiniteGuardMixin first in the bases of '
                    f'{kind.__name__}: class {kind.__name__}(NonFiniteGuardMixin, ...)')
        for wrapper in wrappers:
            wrapper.attach_nonfinite_guard(self._update_skipped)
        self._guarded = wrappers

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._skipped_loss = None
        if self.skip_nonfinite:
            # the forward pass updates BN running statistics; a skipped step restores them,
            # since the input that made the loss non-finite may have poisoned them too
            self._buffers_before_iter = {
                name: buf.clone() for name, buf in _unwrap(runner.model).named_buffers()}

    def _update_skipped(self, loss: torch.Tensor) -> None:
        """The guard: the optimizer wrapper skipped an update, ``loss`` being non-finite on
        this rank or on another."""
        value = _as_float(loss)
        if self._skipped_loss is None or math.isfinite(self._skipped_loss):
            self._skipped_loss = value

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Stop, or count the skipped step, when the wrapper skipped this step's update.

        ``outputs`` (the step's ``log_vars``) name the non-finite terms; in a skipped step
        this rank's non-finite terms are removed from it, so that one bad step does not turn
        the smoothed losses in the log into NaN.
        """
        if self._skipped_loss is None:
            self._consecutive_skips = 0
            self._streak_terms = []
            return
        log_vars = outputs if outputs is not None else {}
        local_bad = nonfinite_terms(log_vars)
        bad_terms = self._gather_bad_terms(log_vars, local_bad, self._skipped_loss)
        self._skipped_loss = None
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {bad_terms}'
        if not self.skip_nonfinite:
            raise FloatingPointError(
                f'non-finite loss at {where}. Training stopped before the optimizer step, '
                f'so the weights are not poisoned. {self._recipe(runner)}; other fixes: '
                f'clip_grad, check the labels. Or skip such steps: '
                f'{self._skip_option(runner)}')
        for name in local_bad:
            log_vars.pop(name)
        with torch.no_grad():
            for name, buf in _unwrap(runner.model).named_buffers():
                if name in self._buffers_before_iter:
                    buf.copy_(self._buffers_before_iter[name])
        skips = runner.message_hub.get_info(SKIPS_INFO, 0) + 1
        runner.message_hub.update_info(SKIPS_INFO, skips)
        runner.message_hub.update_scalar(SKIPS_SCALAR, skips)
        runner.logger.warning(f'non-finite loss at {where}: skipped the optimizer step '
                              f'({skips} skipped so far)')
        self._consecutive_skips += 1
        self._streak_terms += [name for name in self._term_names(bad_terms)
                               if name not in self._streak_terms]
        if self._consecutive_skips >= self.max_consecutive_skips:
            raise FloatingPointError(
                f'NonFiniteLossHook: {self._consecutive_skips} steps in a row had a '
                f'non-finite loss ({", ".join(self._streak_terms)}) and were skipped, the '
                f'last at {where}. The training has diverged and skipping cannot help '
                f'(max_consecutive_skips={self.max_consecutive_skips}): stopped. '
                f'{self._recipe(runner)}; other fixes: clip_grad, check the labels')

    def after_train(self, runner) -> None:
        for wrapper in self._guarded:
            wrapper.detach_nonfinite_guard()
        self._guarded = []
        skips = runner.message_hub.get_info(SKIPS_INFO, 0)
        if skips:
            runner.logger.warning(f'NonFiniteLossHook: skipped {skips} optimizer step(s) '
                                  'with a non-finite loss during this training')

    @staticmethod
    def _gather_bad_terms(log_vars: Dict[str, torch.Tensor], local_bad: List[str],
                          local_loss: float) -> str:
        """``'loss_bbox=nan'`` (``'loss_bbox=nan on rank 1'`` when distributed) for the
        non-finite terms of every rank.

        The total ``'loss'`` is named only when no term explains it (an overflow of the
        sum), and from ``local_loss``, the loss the wrapper saw, when ``log_vars`` lack it.
        Every rank must call this, only in a step that the wrapper skipped (the ranks have
        agreed on that already, with one all-reduce): they exchange the names.
        """
        culprits = [name for name in local_bad if name != 'loss'] or local_bad
        terms = [(name, _as_float(log_vars[name])) for name in culprits]
        if not terms and not math.isfinite(local_loss):
            terms = [('loss', local_loss)]
        if get_world_size() == 1:
            return ', '.join(f'{name}={value}' for name, value in terms)
        return ', '.join(f'{name}={value} on rank {rank}'
                         for rank, rank_terms in enumerate(all_gather_object(terms))
                         for name, value in rank_terms)

    @staticmethod
    def _term_names(bad_terms: str) -> List[str]:
        """``['loss_bbox']`` from ``'loss_bbox=nan, loss_bbox=nan on rank 1'``."""
        return list(dict.fromkeys(term.split('=')[0].strip() for term in bad_terms.split(',')))

    @staticmethod
    def _recipe(runner) -> str:
        """How to go on: the last checkpoint, and the ``tools/train.py`` command that
        resumes from it with a fresh optimizer and a 10x lower lr."""
        checkpoint = _last_checkpoint(runner.work_dir)
        start = (f'To go on from the last checkpoint, {checkpoint}, with a fresh optimizer'
                 if checkpoint else
                 'No checkpoint was saved yet; to start again with a fresh optimizer')
        command_for = (runner.message_hub.get_info(RESUME_COMMAND_INFO)
                       or (lambda **kwargs: _plain_resume_command(runner, **kwargs)))
        lr = (runner.cfg.get('optim_wrapper') or {}).get('optimizer', {}).get('lr')
        if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
            command = command_for(reset_optimizer=True,
                                  cfg_options={'optim_wrapper.optimizer.lr': f'{lr / 10:g}'})
            return f'{start} and a 10x lower lr: {command}'
        command = command_for(reset_optimizer=True, cfg_options={})
        return f'{start}, lower the lr in the config, then run: {command}'

    @staticmethod
    def _skip_option(runner) -> str:
        """``--cfg-options custom_hooks.1.skip_nonfinite=True`` (or ``default_hooks.NAME...``)
        where the config has this hook, else ``NonFiniteLossHook(skip_nonfinite=True)``."""
        is_this = (lambda hook: isinstance(hook, dict) and (
            hook.get('type') is NonFiniteLossHook
            or str(hook.get('type')).split('.')[-1] == 'NonFiniteLossHook'))  # scope.Name
        found = [(f'custom_hooks.{i}', hook)
                 for i, hook in enumerate(runner.cfg.get('custom_hooks') or []) if is_this(hook)]
        found += [(f'default_hooks.{name}', hook)
                  for name, hook in (runner.cfg.get('default_hooks') or {}).items()
                  if is_this(hook)]
        if not found:
            return 'NonFiniteLossHook(skip_nonfinite=True)'
        key, hook = found[0]
        new_key = '' if 'skip_nonfinite' in hook else '+'  # tools/train.py syntax
        return f'--cfg-options {new_key}{key}.skip_nonfinite=True'
