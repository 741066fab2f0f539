"""Balanced L1 loss (Libra R-CNN)."""
import math
from typing import Optional

import torch
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import LossArgumentError, check_reduction_override, weighted_loss


@weighted_loss
def balanced_l1_loss(pred: Tensor,
                     target: Tensor,
                     beta: float = 1.0,
                     alpha: float = 0.5,
                     gamma: float = 1.5) -> Tensor:
    """Element-wise balanced L1 loss (Pang et al., 2019).

    With ``d = |pred - target|`` and ``b = e**(gamma / alpha) - 1``:
    ``alpha / b * (b * d + 1) * log(b * d / beta + 1) - alpha * d`` where ``d < beta``, else
    ``gamma * d + gamma / b - alpha * beta``. Inliers get larger gradients than in smooth L1.

    Args:
        pred (Tensor): Predictions, e.g. box deltas [N, 4].
        target (Tensor): Targets of the same shape.
        beta (float): Where the two pieces meet; must be > 0. Defaults to 1.0.
        alpha (float): Gradient scale of inliers. Defaults to 0.5.
        gamma (float): Bound of the outlier gradient. Defaults to 1.5.

    Returns:
        Tensor: Element-wise loss, same shape as ``pred``.
    """
    if beta <= 0:
        raise LossArgumentError(f'beta must be > 0, but got {beta}')
    if target.numel() == 0:
        return pred.sum() * 0
    if pred.size() != target.size():
        raise LossArgumentError(f'pred and target must have the same shape, but got '
                                f'{tuple(pred.shape)} and {tuple(target.shape)}')
    diff = torch.abs(pred - target)
    b = math.e**(gamma / alpha) - 1
    inlier = alpha / b * (b * diff + 1) * torch.log(b * diff / beta + 1) - alpha * diff
    outlier = gamma * diff + gamma / b - alpha * beta
    return torch.where(diff < beta, inlier, outlier)


@MODELS.register_module()
class BalancedL1Loss(nn.Module):
    """Balanced L1 loss module.

    Args:
        alpha (float): Gradient scale of inliers. Defaults to 0.5.
        gamma (float): Bound of the outlier gradient. Defaults to 1.5.
        beta (float): Threshold between the two pieces. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 alpha: float = 0.5,
                 gamma: float = 1.5,
                 beta: float = 1.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.beta = beta
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Predictions [N, 4].
            target (Tensor): Targets [N, 4].
            weight (Tensor, optional): Element-wise weights [N, 4] (or broadcastable).
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * balanced_l1_loss(
            pred, target, weight, alpha=self.alpha, gamma=self.gamma, beta=self.beta,
            reduction=reduction, avg_factor=avg_factor, **kwargs)
