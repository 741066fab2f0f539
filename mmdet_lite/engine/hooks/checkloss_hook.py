"""Stop training when the total loss is NaN or infinite, checked every few iterations."""
from typing import Optional

import torch
from mmengine.hooks import Hook

from ...registry import HOOKS
from .hook_errors import InvalidLossError


@HOOKS.register_module()
class CheckInvalidLossHook(Hook):
    """Raise when ``outputs['loss']`` is not finite, every ``interval`` training iterations.

    The check runs after iterations whose 1-based number is a multiple of ``interval``, so
    a NaN in other iterations goes unseen (mmdetection's behaviour). The error is raised
    after the optimizer step, whose weights may already be NaN: for a check before the
    step, on every iteration, with the option to skip the step instead, see
    :class:`NonFiniteLossHook`.

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 50.
    """

    def __init__(self, interval: int = 50) -> None:
        self.interval = interval

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        """Check the step's total loss when the iteration number is a multiple of interval.

        Args:
            runner (Runner): The runner.
            batch_idx (int): Index of the batch in the epoch.
            data_batch (dict, optional): The batch. Unused.
            outputs (dict, optional): The step's log variables; ``outputs['loss']`` is the
                total loss (a scalar tensor).

        Raises:
            InvalidLossError: (an ``AssertionError`` too) the loss is NaN or infinite.
        """
        if not self.every_n_train_iters(runner, self.interval):
            return
        loss = torch.as_tensor(outputs['loss'])
        if not torch.isfinite(loss).all():
            runner.logger.info('loss become infinite or NaN!')
            raise InvalidLossError(
                f'CheckInvalidLossHook: the loss is {loss.tolist()} at iteration '
                f'{runner.iter + 1}; training stopped.')
