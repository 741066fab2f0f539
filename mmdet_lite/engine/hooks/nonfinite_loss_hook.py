"""Stop, or skip the step, when a loss becomes NaN or infinite.

Without a check, one non-finite loss turns every parameter into NaN through the optimizer
step, and training goes on for hours producing nothing. This hook checks each loss term
after the model computes them and before the optimizer wrapper updates anything:

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

How it hooks in: the model's ``parse_losses`` (mmengine's ``BaseModel``, which both
``train_step`` and ``MMDistributedDataParallel.train_step`` call) and the optimizer
wrapper's ``update_params`` are wrapped on the instances in ``before_train``; that works for
every optimizer wrapper type (``OptimWrapper``, AMP ones) without changing configs.
"""
import math
import os.path as osp
import shlex
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from ...registry import HOOKS

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

    Args:
        skip_nonfinite (bool): Skip such steps instead of stopping. Defaults to False.
        max_consecutive_skips (int): With ``skip_nonfinite``, stop anyway when this many
            steps in a row were non-finite (a finite step resets the count). Defaults to 5.
    """

    priority = 'VERY_HIGH'

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
        self._skip_next_update = False
        self._buffers_before_iter: Dict[str, torch.Tensor] = {}

    def before_train(self, runner) -> None:
        model = _unwrap(runner.model)
        parse_losses = model.parse_losses

        def checked_parse_losses(losses: dict) -> Tuple[torch.Tensor, dict]:
            loss, log_vars = parse_losses(losses)
            return loss, self._check(runner, log_vars)

        model.parse_losses = checked_parse_losses
        optim_wrapper = runner.optim_wrapper
        update_params = optim_wrapper.update_params

        def guarded_update_params(*args, **kwargs) -> None:
            if self._skip_next_update:
                self._skip_next_update = False  # no backward, no step, no zero_grad
                return
            update_params(*args, **kwargs)

        optim_wrapper.update_params = guarded_update_params

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.skip_nonfinite:
            # the forward pass updates BN running statistics; a skipped step restores them,
            # since the input that made the loss non-finite may have poisoned them too
            self._buffers_before_iter = {
                name: buf.clone() for name, buf in _unwrap(runner.model).named_buffers()}

    def after_train(self, runner) -> None:
        skips = runner.message_hub.get_info(SKIPS_INFO, 0)
        if skips:
            runner.logger.warning(f'NonFiniteLossHook: skipped {skips} optimizer step(s) '
                                  'with a non-finite loss during this training')

    def _check(self, runner, log_vars: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Stop or mark the step as skipped if a term is non-finite on any rank.

        Returns:
            dict: ``log_vars``, without this rank's non-finite terms when the step is
            skipped (so one bad step does not turn the smoothed losses in the log into NaN).
        """
        local_bad = nonfinite_terms(log_vars)
        bad_terms = self._gather_bad_terms(log_vars, local_bad)
        if not bad_terms:
            self._consecutive_skips = 0
            self._streak_terms = []
            return log_vars
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {bad_terms}'
        if not self.skip_nonfinite:
            raise FloatingPointError(
                f'non-finite loss at {where}. Training stopped before the optimizer step, '
                f'so the weights are not poisoned. {self._recipe(runner)}; other fixes: '
                f'clip_grad, check the labels. Or skip such steps: '
                f'{self._skip_option(runner)}')
        self._skip_next_update = True
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
        return {name: value for name, value in log_vars.items() if name not in local_bad}

    @staticmethod
    def _gather_bad_terms(log_vars: Dict[str, torch.Tensor], local_bad: List[str]) -> str:
        """``'loss_bbox=nan'`` (``'loss_bbox=nan on rank 1'`` when distributed) for the
        non-finite terms of every rank; ``''`` if all are finite everywhere.

        The total ``'loss'`` is named only when no term explains it (an overflow of the sum).
        Every rank must call this: ranks first agree, with one fixed-size all-reduce, whether
        any rank has a non-finite term, and only then exchange the names.
        """
        culprits = [name for name in local_bad if name != 'loss'] or local_bad
        terms = [(name, _as_float(log_vars[name])) for name in culprits]
        if get_world_size() == 1:
            return ', '.join(f'{name}={value}' for name, value in terms)
        device = next(iter(log_vars.values())).device
        num_bad_ranks = torch.tensor([float(bool(terms))], device=device)
        all_reduce(num_bad_ranks, op='sum')
        if num_bad_ranks.item() == 0:
            return ''
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
