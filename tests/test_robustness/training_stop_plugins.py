"""A hook that makes a training diverge while its lr is too high, for ``test_training_stops``.

The tests start ``tools/train.py`` in a subprocess with this folder on ``PYTHONPATH`` and
``custom_imports = dict(imports=['training_stop_plugins'])`` in the config.
"""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet_lite.registry import HOOKS


@HOOKS.register_module()
class NaNLossAboveLrHook(Hook):
    """From the 1-based training ``iteration`` on, make the loss term ``term`` NaN at every
    iteration whose lr is above ``lr`` (``lr=0``: at every iteration).

    Args:
        iteration (int): First iteration that can be poisoned, as the log counts them.
        lr (float): The loss is poisoned only while the optimizer's lr exceeds this.
        term (str): Loss name, e.g. ``'loss_bbox'``.
    """

    def __init__(self, iteration: int, lr: float = 0.0, term: str = 'loss_bbox') -> None:
        self.iteration = iteration
        self.lr = lr
        self.term = term

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        compute_losses = model.loss

        def poisoned_loss(*args, **kwargs):
            losses = compute_losses(*args, **kwargs)
            lr = runner.optim_wrapper.get_lr()['lr'][0]
            if runner.iter + 1 >= self.iteration and lr > self.lr:
                value = losses[self.term]
                losses[self.term] = (value * float('nan') if torch.is_tensor(value) else
                                     [v * float('nan') for v in value])
            return losses

        model.loss = poisoned_loss
