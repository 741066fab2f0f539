"""Mixed precision training for ``tools/train.py --amp``, on CUDA and on the CPU.

On CUDA (and the other accelerators mmengine supports) ``--amp`` switches the optimizer
wrapper to ``AmpOptimWrapper`` (mmengine's, with the non-finite-loss guard of
:mod:`mmdet_lite.engine.optim_wrappers`): fp16 autocast with a dynamic ``GradScaler``, as
mmdetection does. mmengine refuses ``AmpOptimWrapper`` without an accelerator, so on the CPU
``--amp`` uses :class:`CPUAmpOptimWrapper` instead: bf16 autocast and no loss scaling (bf16
has fp32's exponent range, so gradients do not underflow the way fp16 ones do). It never
falls back to fp32 silently.
"""
from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log

from ..registry import OPTIM_WRAPPERS
from .optim_wrappers import OptimWrapper

# AmpOptimWrapper arguments that mean nothing without a GradScaler
_SCALER_ARGS = ('loss_scale', 'use_fsdp')


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` that runs the forward pass and losses under CPU bf16 autocast.

    It derives from mmdet_lite's :class:`~mmdet_lite.engine.optim_wrappers.OptimWrapper`, so
    that ``NonFiniteLossHook`` can skip its steps with a non-finite loss too.

    Parameters, gradients and optimizer state stay fp32; autocast runs matmuls and
    convolutions in bf16 (their outputs are bf16) and keeps precision-sensitive ops such as
    losses and reductions in fp32.

    Args:
        dtype (str | torch.dtype): Autocast dtype; CPU autocast supports only
            ``'bfloat16'``. Defaults to ``'bfloat16'``.
        **kwargs: Arguments of ``OptimWrapper`` (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16', **kwargs) -> None:
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f'CPUAmpOptimWrapper: CPU autocast supports only bfloat16, '
                             f'got dtype={dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Gradient-accumulation context of ``OptimWrapper`` plus bf16 autocast."""
        with super().optim_context(model), \
                torch.autocast(device_type='cpu', dtype=self.cast_dtype):
            yield


def enable_amp(cfg: Config, device: Optional[str] = None) -> str:
    """Switch ``cfg.optim_wrapper`` to mixed precision for ``device``.

    Args:
        cfg (Config): A training config with an ``optim_wrapper``; changed in place.
        device (str, optional): ``'cuda'``, ``'cpu'``, ... Defaults to the device the
            Runner will use (mmengine's ``get_device()``).

    Returns:
        str: The optimizer wrapper type now in the config.

    Raises:
        KeyError: The config has no ``optim_wrapper``.
        ValueError: The config already asks for an incompatible autocast dtype.
    """
    if 'optim_wrapper' not in cfg:
        raise KeyError('--amp needs an `optim_wrapper` in the config, e.g. '
                       "optim_wrapper = dict(type='OptimWrapper', optimizer=dict(...))")
    device = device or get_device()
    wrapper = cfg.optim_wrapper
    current = wrapper.get('type', 'OptimWrapper')
    if current in ('AmpOptimWrapper', 'CPUAmpOptimWrapper'):
        print_log(f'--amp: the config already uses {current}', logger='current')
    if current not in ('OptimWrapper', 'AmpOptimWrapper', 'CPUAmpOptimWrapper'):
        raise ValueError(f'--amp replaces OptimWrapper by a mixed precision wrapper, but the '
                         f'config uses optim_wrapper.type={current!r}')
    if device == 'cpu':
        dtype = wrapper.get('dtype')
        if dtype not in (None, 'bfloat16', torch.bfloat16):
            raise ValueError(f'--amp on the CPU autocasts to bfloat16, but the config sets '
                             f'optim_wrapper.dtype={dtype!r}')
        for key in _SCALER_ARGS:
            wrapper.pop(key, None)
        wrapper.type = 'CPUAmpOptimWrapper'
        print_log('--amp: no GPU, training with bf16 autocast on the CPU '
                  '(CPUAmpOptimWrapper)', logger='current')
    else:
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
        print_log(f'--amp: fp16 autocast with dynamic loss scaling on {device} '
                  '(AmpOptimWrapper)', logger='current')
    return wrapper.type
