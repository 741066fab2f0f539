"""Varifocal loss (VarifocalNet): IoU-aware classification loss."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import LossArgumentError, check_reduction_override, weight_reduce_loss


def varifocal_loss(pred: Tensor,
                   target: Tensor,
                   weight: Optional[Tensor] = None,
                   alpha: float = 0.75,
                   gamma: float = 2.0,
                   iou_weighted: bool = True,
                   reduction: str = 'mean',
                   avg_factor: Optional[float] = None) -> Tensor:
    """Varifocal loss (Zhang et al., 2021).

    BCE towards the IoU-aware target ``q``. Positives (``q > 0``) are weighted by ``q`` (or
    1 without ``iou_weighted``); negatives are down-weighted by ``alpha * |p - q|**gamma``.

    Args:
        pred (Tensor): Logits [N, C].
        target (Tensor): IoU-aware targets [N, C] (the IoU at the gt class, else 0).
        weight (Tensor, optional): Element-wise weights.
        alpha (float): Scale of the negative term. Defaults to 0.75.
        gamma (float): Power of the negative modulating factor. Defaults to 2.0.
        iou_weighted (bool): Weight positives by their target. Defaults to True.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        avg_factor (float, optional): Denominator of the mean.

    Returns:
        Tensor: Scalar loss, or [N, C] for reduction ``'none'``.
    """
    if pred.size() != target.size():
        raise LossArgumentError(f'pred and target must have the same shape, but got '
                                f'{tuple(pred.shape)} and {tuple(target.shape)}')
    prob = pred.sigmoid()
    target = target.type_as(pred)
    positive = (target > 0.0).float()
    pos_weight = target * positive if iou_weighted else positive
    focal_weight = pos_weight + alpha * (prob - target).abs().pow(gamma) * (1 - positive)
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction='none') * focal_weight
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class VarifocalLoss(nn.Module):
    """Varifocal loss module (sigmoid only).

    Args:
        use_sigmoid (bool): Must be True. Defaults to True.
        alpha (float): Scale of the negative term; >= 0. Defaults to 0.75.
        gamma (float): Power of the negative modulating factor. Defaults to 2.0.
        iou_weighted (bool): Weight positives by their target. Defaults to True.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 alpha: float = 0.75,
                 gamma: float = 2.0,
                 iou_weighted: bool = True,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if use_sigmoid is not True:
            raise LossArgumentError('Only sigmoid varifocal loss supported now '
                                    '(use_sigmoid=True).')
        if not alpha >= 0.0:
            raise LossArgumentError(f'alpha must be >= 0, but got {alpha}')
        self.use_sigmoid = use_sigmoid
        self.alpha = alpha
        self.gamma = gamma
        self.iou_weighted = iou_weighted
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
            pred (Tensor): Logits [N, C].
            target (Tensor): IoU-aware targets [N, C].
            weight (Tensor, optional): Element-wise weights.
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * varifocal_loss(
            pred, target, weight, alpha=self.alpha, gamma=self.gamma,
            iou_weighted=self.iou_weighted, reduction=reduction, avg_factor=avg_factor)
