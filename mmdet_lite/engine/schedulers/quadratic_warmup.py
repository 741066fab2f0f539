"""Quadratic warm-up of a parameter (YOLOX's learning-rate warm-up).

Over ``T = end - begin`` steps the value rises as ``base * ((t + 1) / T) ** 2`` for step
``t = 0 .. T-1``: it starts at ``base / T**2`` and reaches ``base`` on the last step.
mmdetection computes it in chainable form, adding ``base * (2t + 1) / T**2`` to the
param group's current value at every step (the sum of the odd numbers ``1 + 3 + ... +
(2t + 1)`` is ``(t + 1)**2``), and so does this module: other schedulers acting on the same
parameter add up with it exactly as in mmdetection.
"""
from typing import Optional

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.momentum_scheduler import MomentumSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from torch.optim import Optimizer

from mmdet_lite.registry import PARAM_SCHEDULERS


class SchedulerArgumentError(ValueError, AssertionError):
    """A scheduler argument that mmdetection rejects with an ``assert``."""


@PARAM_SCHEDULERS.register_module()
class QuadraticWarmupParamScheduler(_ParamScheduler):
    """Warm a parameter of every param group up from ``base / T**2`` to ``base``, quadratically.

    At step ``t`` of the warm-up (``t = step - begin``) the value becomes
    ``previous + base * (2t + 1) / T**2`` (the first step sets ``base / T**2``), with
    ``T = end - begin`` and ``base`` the group's ``initial_<param_name>``: alone on the
    parameter, ``base * ((t + 1) / T) ** 2``. Outside ``[begin, end)`` the value is left as
    it is.

    Args:
        optimizer (Optimizer): The optimizer (or optim wrapper) whose groups are updated.
        param_name (str): The group key to schedule, e.g. ``'lr'`` or ``'momentum'``.
        begin (int): First step that updates the value. Defaults to 0.
        end (int): Step at which updating stops (exclusive); must be finite. Defaults to
            INF, which is rejected: the warm-up needs its length.
        last_step (int): Index of the last step taken, to resume without a state dict.
            Defaults to -1 (not stepped yet).
        by_epoch (bool): Whether steps are epochs (else iterations). Defaults to True.
        verbose (bool): Whether to log the value at every update. Defaults to False.

    Raises:
        ValueError: ``end`` is not finite, or (from mmengine) ``end <= begin``.
    """

    def __init__(self,
                 optimizer: Optimizer,
                 param_name: str,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False) -> None:
        if end >= INF:
            raise ValueError(f'{type(self).__name__}: `end` must be finite (the step at which '
                             f'the warm-up ends), but got end={end}')
        # set before mmengine's __init__, whose first step() already needs it
        self.total_iters = end - begin
        super().__init__(optimizer=optimizer, param_name=param_name, begin=begin, end=end,
                         last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls,
                              *args,
                              begin: int = 0,
                              end: int = INF,
                              by_epoch: bool = True,
                              epoch_length: Optional[int] = None,
                              **kwargs) -> 'QuadraticWarmupParamScheduler':
        """Build the iteration-based scheduler of an epoch-based config
        (``convert_to_iter_based=True``): ``begin`` and ``end`` are multiplied by
        ``epoch_length``.

        Unlike mmengine's own schedulers, mmdetection does not round the products to int;
        neither do we, so fractional epochs give the same steps as there.

        Args:
            *args: Passed on to the constructor (the optimizer).
            begin (int): First epoch of the warm-up. Defaults to 0.
            end (int): Epoch at which it ends (exclusive). Defaults to INF.
            by_epoch (bool): Must be True: only an epoch-based config can be converted.
            epoch_length (int): Iterations per epoch, > 0.
            **kwargs: Passed on to the constructor.

        Returns:
            QuadraticWarmupParamScheduler: An instance with ``by_epoch=False``.

        Raises:
            SchedulerArgumentError: ``by_epoch`` is False or ``epoch_length`` is not positive.
        """
        if not by_epoch:
            raise SchedulerArgumentError(
                f'{cls.__name__}.build_iter_from_epoch: only a config with by_epoch=True can '
                'be converted to iteration-based')
        if epoch_length is None or epoch_length <= 0:
            raise SchedulerArgumentError(
                f'{cls.__name__}.build_iter_from_epoch: `epoch_length` must be a positive '
                f'integer, but got {epoch_length}')
        begin = begin * epoch_length
        if end != INF:
            end = end * epoch_length
        return cls(*args, begin=begin, end=end, by_epoch=False, **kwargs)

    def _get_value(self) -> list:
        """The values after step ``self.last_step``, one per param group (chainable form).

        mmengine counts ``last_step`` only inside ``[begin, end)``, from 0 at ``begin``, so
        the warm-up has the same shape wherever it starts.
        """
        steps_sq = self.total_iters**2
        increments = [base * (2 * self.last_step + 1) / steps_sq for base in self.base_values]
        if self.last_step == 0:
            # the very first step sets the value rather than adding to it
            return increments
        return [group[self.param_name] + inc
                for group, inc in zip(self.optimizer.param_groups, increments)]


@PARAM_SCHEDULERS.register_module()
class QuadraticWarmupLR(LRSchedulerMixin, QuadraticWarmupParamScheduler):
    """Quadratic warm-up of every param group's learning rate.

    Args:
        optimizer (Optimizer): The optimizer (or optim wrapper) whose groups are updated.
        begin (int): First step that updates the lr. Defaults to 0.
        end (int): Step at which the warm-up ends (exclusive); must be finite.
        last_step (int): Index of the last step taken. Defaults to -1.
        by_epoch (bool): Whether steps are epochs. Defaults to True.
        verbose (bool): Whether to log the lr at every update. Defaults to False.
    """


@PARAM_SCHEDULERS.register_module()
class QuadraticWarmupMomentum(MomentumSchedulerMixin, QuadraticWarmupParamScheduler):
    """Quadratic warm-up of every param group's momentum (``betas[0]`` for Adam-like
    optimizers, as mmengine's momentum schedulers handle it).

    Args:
        optimizer (Optimizer): The optimizer (or optim wrapper) whose groups are updated.
        begin (int): First step that updates the momentum. Defaults to 0.
        end (int): Step at which the warm-up ends (exclusive); must be finite.
        last_step (int): Index of the last step taken. Defaults to -1.
        by_epoch (bool): Whether steps are epochs. Defaults to True.
        verbose (bool): Whether to log the momentum at every update. Defaults to False.
    """
