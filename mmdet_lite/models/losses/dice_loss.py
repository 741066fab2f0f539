"""Dice loss for masks (V-Net form or the naive form)."""
from typing import Optional

import torch
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import LossArgumentError, check_reduction_override, weight_reduce_loss


def dice_loss(pred: Tensor,
              target: Tensor,
              weight: Optional[Tensor] = None,
              eps: float = 1e-3,
              reduction: str = 'mean',
              naive_dice: bool = False,
              avg_factor: Optional[float] = None) -> Tensor:
    """Dice loss per sample, ``1 - dice``, over everything but the first dimension.

    V-Net form: ``2 * sum(p * t) / ((sum(p**2) + eps) + (sum(t**2) + eps))``. Naive form:
    ``(2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps)``.

    Args:
        pred (Tensor): Probabilities [N, *].
        target (Tensor): Targets [N, *] (same number of elements per sample).
        weight (Tensor, optional): Per-sample weights [N].
        eps (float): Smoothing term. Defaults to 1e-3.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        naive_dice (bool): Use first powers in the denominator. Defaults to False.
        avg_factor (float, optional): Denominator of the mean.

    Returns:
        Tensor: Scalar loss, or [N] for reduction ``'none'``.
    """
    flat_pred = pred.flatten(1)
    flat_target = target.flatten(1).float()
    overlap = torch.sum(flat_pred * flat_target, 1)
    if naive_dice:
        dice = (2 * overlap + eps) / (flat_pred.sum(1) + flat_target.sum(1) + eps)
    else:
        pred_sq = torch.sum(flat_pred * flat_pred, 1) + eps
        target_sq = torch.sum(flat_target * flat_target, 1) + eps
        dice = 2 * overlap / (pred_sq + target_sq)
    loss = 1 - dice
    if weight is not None:
        if weight.ndim != loss.ndim or len(weight) != len(pred):
            raise LossArgumentError(f'dice_loss weight must have shape [{len(pred)}], but got '
                                    f'{tuple(weight.shape)}')
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class DiceLoss(nn.Module):
    """Dice loss module.

    Args:
        use_sigmoid (bool): Activate with sigmoid (softmax is not supported).
            Defaults to True.
        activate (bool): Apply the activation to ``pred``; False when ``pred`` already
            holds probabilities. Defaults to True.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        naive_dice (bool): Use the naive (first-power) denominator. Defaults to False.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        eps (float): Smoothing term. Defaults to 1e-3.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 activate: bool = True,
                 reduction: str = 'mean',
                 naive_dice: bool = False,
                 loss_weight: float = 1.0,
                 eps: float = 1e-3) -> None:
        super().__init__()
        self.use_sigmoid = use_sigmoid
        self.reduction = reduction
        self.naive_dice = naive_dice
        self.loss_weight = loss_weight
        self.eps = eps
        self.activate = activate

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                reduction_override: Optional[str] = None,
                avg_factor: Optional[float] = None) -> Tensor:
        """Compute the loss.

        Note the argument order (as mmdetection): ``reduction_override`` comes before
        ``avg_factor``.

        Args:
            pred (Tensor): Logits (or probabilities without ``activate``) [N, *].
            target (Tensor): Targets [N, *].
            weight (Tensor, optional): Per-sample weights [N].
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.
            avg_factor (float, optional): Denominator of the mean.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        if self.activate:
            if not self.use_sigmoid:
                raise NotImplementedError('DiceLoss only supports the sigmoid activation')
            pred = pred.sigmoid()
        return self.loss_weight * dice_loss(pred, target, weight, eps=self.eps,
                                            reduction=reduction, naive_dice=self.naive_dice,
                                            avg_factor=avg_factor)
