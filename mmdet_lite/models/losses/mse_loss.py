"""Mean squared error loss."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import check_reduction_override, weighted_loss


@weighted_loss
def mse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Element-wise squared error ``(pred - target)**2`` (shapes broadcast as in torch)."""
    return F.mse_loss(pred, target, reduction='none')


@MODELS.register_module()
class MSELoss(nn.Module):
    """Mean squared error loss module.

    Args:
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Predictions of any shape.
            target (Tensor): Targets of the same shape.
            weight (Tensor, optional): Element-wise weights.
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * mse_loss(pred, target, weight, reduction=reduction,
                                           avg_factor=avg_factor)
