"""Average the normalization layers' states over all ranks before validation (YOLOX)."""
from collections import OrderedDict

import torch
from mmengine.dist import all_reduce, get_dist_info
from mmengine.hooks import Hook
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from ...registry import HOOKS


def get_norm_states(module: nn.Module) -> 'OrderedDict[str, torch.Tensor]':
    """The state_dict entries of every normalization layer in ``module``.

    Args:
        module (nn.Module): Any module.

    Returns:
        OrderedDict[str, Tensor]: ``'<layer name>.<key>'`` -> tensor for the BatchNorm
        (and InstanceNorm) layers: weight, bias, running_mean, running_var,
        num_batches_tracked, named as in ``module.state_dict()``.
    """
    states = OrderedDict()
    for name, child in module.named_modules():
        if isinstance(child, _NormBase):
            for key, value in child.state_dict().items():
                states[f'{name}.{key}' if name else key] = value
    return states


@HOOKS.register_module()
class SyncNormHook(Hook):
    """Before each validation, replace every rank's norm states by their mean over ranks.

    Under DDP without SyncBN, each rank's BN running statistics follow its own share of the
    data; averaging them makes validation (and the checkpoint) use the same statistics on
    every rank. Does nothing in a single process. ``num_batches_tracked`` is averaged too
    (as a float, then stored back into the integer buffer).
    """

    def before_val_epoch(self, runner) -> None:
        """Average the norm layers' states of ``runner.model`` over all ranks."""
        _, world_size = get_dist_info()
        if world_size == 1:
            return
        module = runner.model
        states = get_norm_states(module)
        if not states:
            return
        # One all-reduce for all layers; the same model on every rank gives the same order.
        flat = torch.cat([value.detach().flatten().float() for value in states.values()])
        all_reduce(flat, op='mean')
        sizes = [value.numel() for value in states.values()]
        averaged = OrderedDict(
            (key, chunk.view_as(value))
            for (key, value), chunk in zip(states.items(), flat.split(sizes)))
        module.load_state_dict(averaged, strict=False)
