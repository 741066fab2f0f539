"""ExpMomentumEMA: the weight average YOLOX and RTMDet evaluate with (mmdetection 3.3's
``mmdet/models/layers/ema.py``), used through mmengine's ``EMAHook``::

    custom_hooks = [dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002,
                         update_buffers=True, priority=49)]
"""
import math
from typing import Optional, Union

import torch
from mmengine.model import ExponentialMovingAverage
from torch import Tensor, nn

from mmdet_lite.registry import MODELS


class EMAArgumentError(ValueError, AssertionError):
    """An ExpMomentumEMA argument mmdetection rejects with an assert."""


@MODELS.register_module()
class ExpMomentumEMA(ExponentialMovingAverage):
    """Exponential moving average whose momentum decays from 1 to ``momentum``.

    ``steps`` is how many times ``update_parameters`` ran before (mmengine copies the model at
    the first call, so the first average sees ``steps == 1``); with it::

        m = (1 - momentum) * exp(-(1 + steps) / gamma) + momentum
        averaged = (1 - m) * averaged + m * source

    Early updates nearly copy the model (m close to 1); after a few ``gamma`` steps m settles
    at ``momentum``.

    Args:
        model (nn.Module): The model to average.
        momentum (float): The final momentum. Defaults to 0.0002.
        gamma (int): Decay time constant of the momentum, in updates; must be > 0.
            Defaults to 2000.
        interval (int): Average every ``interval`` calls of ``update_parameters``.
            Defaults to 1.
        device (torch.device, optional): Device for the averaged copy. Defaults to None
            (the model's).
        update_buffers (bool): Average the buffers (e.g. BN running stats) too, instead of
            copying them. Defaults to False.
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 0.0002,
                 gamma: int = 2000,
                 interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = False) -> None:
        super().__init__(model=model, momentum=momentum, interval=interval, device=device,
                         update_buffers=update_buffers)
        if not gamma > 0:
            raise EMAArgumentError(f'ExpMomentumEMA: gamma must be greater than 0, got {gamma}.')
        self.gamma = gamma

    def avg_func(self, averaged_param: Tensor, source_param: Tensor,
                 steps: Union[int, Tensor]) -> None:
        """Move ``averaged_param`` towards ``source_param`` in place.

        Args:
            averaged_param (Tensor): The averaged parameter (updated in place).
            source_param (Tensor): The current model's parameter, same shape.
            steps (int | Tensor): Calls of ``update_parameters`` before this one (mmengine
                keeps it as a 0-d tensor buffer).
        """
        momentum = (1 - self.momentum) * math.exp(-float(1 + steps) / self.gamma) \
            + self.momentum
        averaged_param.lerp_(source_param, momentum)
