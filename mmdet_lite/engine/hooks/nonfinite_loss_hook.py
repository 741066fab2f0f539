"""Stop, or skip the step, when a loss becomes NaN or infinite.

Without a check, one non-finite loss turns every parameter into NaN through the optimizer
step, and training goes on for hours producing nothing. This hook checks each loss term
after the model computes them and before the optimizer wrapper updates anything:

- by default it raises ``FloatingPointError`` naming the iteration and the non-finite
  terms (``loss_bbox=nan``), so the run ends with a non-zero exit status and its last
  checkpoint intact;
- with ``skip_nonfinite=True`` the step is skipped (no backward, no optimizer or momentum
  update, and the BN statistics that its forward pass changed are put back), a warning is
  logged, and the running count ``nonfinite_skips`` appears in the training log lines (and
  in ``scalars.json``); the skipped step's losses are left out of the smoothed log values.

In distributed training the ranks agree first (one small all-reduce per iteration): if
any rank's loss is non-finite, every rank stops or skips, so they stay in step and DDP's
gradient all-reduce never waits for a rank that skipped.

How it hooks in: the model's ``parse_losses`` (mmengine's ``BaseModel``, which both
``train_step`` and ``MMDistributedDataParallel.train_step`` call) and the optimizer
wrapper's ``update_params`` are wrapped on the instances in ``before_train``; that works for
every optimizer wrapper type (``OptimWrapper``, AMP ones) without changing configs.
"""
import math
from typing import Dict, List, Tuple

import torch
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from ...registry import HOOKS

# Message hub keys: the scalar shown in the log, and the count kept across resumes.
SKIPS_SCALAR = 'train/nonfinite_skips'
SKIPS_INFO = 'nonfinite_skips'


def nonfinite_terms(log_vars: Dict[str, torch.Tensor]) -> List[str]:
    """Names of the loss terms (keys containing ``'loss'``) that are NaN or infinite."""
    return [name for name, value in log_vars.items()
            if 'loss' in name and not math.isfinite(_as_float(value))]


def _as_float(value) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise, or skip the optimizer step, when a training loss term is not finite.

    Args:
        skip_nonfinite (bool): Skip such steps instead of stopping. Defaults to False.
    """

    priority = 'VERY_HIGH'

    def __init__(self, skip_nonfinite: bool = False) -> None:
        if not isinstance(skip_nonfinite, bool):
            raise TypeError(f'NonFiniteLossHook: skip_nonfinite must be True or False, got '
                            f'{skip_nonfinite!r}')
        self.skip_nonfinite = skip_nonfinite
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
            return log_vars
        where = f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {bad_terms}'
        if not self.skip_nonfinite:
            raise FloatingPointError(
                f'non-finite loss at {where}. Training stopped; resume from the last '
                f'checkpoint after fixing the cause (lower lr, clip_grad, bad labels), or '
                f'skip such steps with NonFiniteLossHook(skip_nonfinite=True)'
                f'{self._cfg_option_hint(runner)}')
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
    def _cfg_option_hint(runner) -> str:
        """``' (--cfg-options custom_hooks.1.skip_nonfinite=True)'`` when this hook comes
        from the config's ``custom_hooks``."""
        hooks = runner.cfg.get('custom_hooks') or []
        for i, hook in enumerate(hooks):
            if isinstance(hook, dict) and hook.get('type') in ('NonFiniteLossHook',
                                                                NonFiniteLossHook):
                new_key = '' if 'skip_nonfinite' in hook else '+'  # tools/train.py syntax
                return f' (--cfg-options {new_key}custom_hooks.{i}.skip_nonfinite=True)'
        return ''
