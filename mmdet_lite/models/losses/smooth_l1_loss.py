"""Smooth L1 and L1 regression losses."""
from typing import Optional

import torch
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import (LossArgumentError, check_reduction_override, weighted_loss,
                    zero_weight_loss)


def _check_same_shape(pred: Tensor, target: Tensor) -> None:
    if pred.size() != target.size():
        raise LossArgumentError(f'pred and target must have the same shape, but got '
                                f'{tuple(pred.shape)} and {tuple(target.shape)}')


@weighted_loss
def smooth_l1_loss(pred: Tensor, target: Tensor, beta: float = 1.0) -> Tensor:
    """Element-wise smooth L1 (Huber / beta) loss.

    ``0.5 * d**2 / beta`` where ``d = |pred - target| < beta``, else ``d - 0.5 * beta``.

    Args:
        pred (Tensor): Predictions, e.g. box deltas [N, 4].
        target (Tensor): Targets of the same shape.
        beta (float): Where the loss switches from quadratic to linear; must be > 0.

    Returns:
        Tensor: Element-wise loss, same shape as ``pred``.
    """
    if beta <= 0:
        raise LossArgumentError(f'beta must be > 0, but got {beta}')
    if target.numel() == 0:
        return pred.sum() * 0
    _check_same_shape(pred, target)
    diff = torch.abs(pred - target)
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


@weighted_loss
def l1_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Element-wise L1 loss ``|pred - target|`` (same shape as ``pred``)."""
    if target.numel() == 0:
        return pred.sum() * 0
    _check_same_shape(pred, target)
    return torch.abs(pred - target)


class _RegressionLoss(nn.Module):
    """Shared forward of the L1-style losses: reduction choice and the all-zero-weight shortcut."""

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.loss_weight = loss_weight

    def _loss(self, pred: Tensor, target: Tensor, weight: Optional[Tensor], reduction: str,
              avg_factor: Optional[float], **kwargs) -> Tensor:
        raise NotImplementedError

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Predictions, e.g. [N, 4].
            target (Tensor): Targets, same shape as ``pred``.
            weight (Tensor, optional): Element-wise weights, [N, 4] or [N].
            avg_factor (float, optional): Denominator of the mean (e.g. number of positives).
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss (scalar unless reduction is ``'none'``).
        """
        zero = zero_weight_loss(pred, weight)
        if zero is not None:
            return zero
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * self._loss(pred, target, weight, reduction, avg_factor,
                                             **kwargs)


@MODELS.register_module()
class SmoothL1Loss(_RegressionLoss):
    """Smooth L1 loss module.

    Args:
        beta (float): Threshold between the quadratic and linear parts. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, beta: float = 1.0, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        self.beta = beta

    def _loss(self, pred, target, weight, reduction, avg_factor, **kwargs):
        return smooth_l1_loss(pred, target, weight, beta=self.beta, reduction=reduction,
                              avg_factor=avg_factor, **kwargs)


@MODELS.register_module()
class L1Loss(_RegressionLoss):
    """L1 loss module.

    Args:
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def _loss(self, pred, target, weight, reduction, avg_factor, **kwargs):
        return l1_loss(pred, target, weight, reduction=reduction, avg_factor=avg_factor)
