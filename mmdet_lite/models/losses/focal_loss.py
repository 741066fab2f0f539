"""Sigmoid focal loss (RetinaNet), in plain torch."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import weight_reduce_loss


def _labels_to_one_hot(pred: Tensor, target: Tensor) -> Tensor:
    """Class indices [N] in 0..C (C = background) -> one-hot [N, C]; background is all zeros."""
    if pred.dim() == target.dim():
        return target.type_as(pred)
    num_classes = pred.size(1)
    if target.numel() > 0 and (target.min() < 0 or target.max() > num_classes):
        raise ValueError(f'focal loss labels must lie in [0, {num_classes}] (num_classes means '
                         f'background), but got [{int(target.min())}, {int(target.max())}]')
    return F.one_hot(target, num_classes=num_classes + 1)[:, :num_classes].type_as(pred)


def _match_weight(weight: Optional[Tensor], loss: Tensor) -> Optional[Tensor]:
    """Let a per-sample weight [N] (or flattened [N*C]) broadcast over the loss [N, C]."""
    if weight is None or weight.shape == loss.shape:
        return weight
    if weight.size(0) == loss.size(0):
        return weight.view(-1, 1)
    return weight.view(loss.size(0), -1)


def sigmoid_focal_loss(pred: Tensor,
                       target: Tensor,
                       weight: Optional[Tensor] = None,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       reduction: str = 'mean',
                       avg_factor: Optional[float] = None,
                       activated: bool = False) -> Tensor:
    """Focal loss ``-alpha_t * (1 - p_t)**gamma * log(p_t)`` per class (Lin et al., 2017).

    Args:
        pred (Tensor): Logits [N, C] (probabilities when ``activated``).
        target (Tensor): Labels [N] in 0..C (C = background) or one-hot targets [N, C].
        weight (Tensor, optional): Weights [N] or [N, C].
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Weight of the positive term (negatives get ``1 - alpha``).
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
        avg_factor (float, optional): Denominator of the mean (number of positives).
        activated (bool): ``pred`` are already probabilities. Defaults to False.

    Returns:
        Tensor: Scalar loss, or [N, C] for reduction ``'none'``.
    """
    target = _labels_to_one_hot(pred, target)  # [N, C]
    prob = pred if activated else pred.sigmoid()
    # 1 - p_t: the probability mass the model puts on the wrong answer.
    one_minus_pt = (1 - prob) * target + prob * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * one_minus_pt.pow(gamma)
    if activated:
        bce = F.binary_cross_entropy(pred, target, reduction='none')
    else:
        bce = F.binary_cross_entropy_with_logits(pred, target, reduction='none')
    loss = bce * focal_weight
    return weight_reduce_loss(loss, _match_weight(weight, loss), reduction, avg_factor)


@MODELS.register_module()
class FocalLoss(nn.Module):
    """Sigmoid focal loss module.

    Args:
        use_sigmoid (bool): Must be True; only the sigmoid form exists. Defaults to True.
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Balance of positives vs. negatives. Defaults to 0.25.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        activated (bool): Inputs are probabilities, not logits. Defaults to False.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 gamma: float = 2.0,
                 alpha: float = 0.25,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 activated: bool = False) -> None:
        super().__init__()
        if not use_sigmoid:
            raise ValueError('FocalLoss only supports use_sigmoid=True')
        self.use_sigmoid = use_sigmoid
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.activated = activated

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Logits [N, C].
            target (Tensor): Labels [N] in 0..C (C = background) or one-hot [N, C].
            weight (Tensor, optional): Weights [N] or [N, C].
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * sigmoid_focal_loss(
            pred, target, weight, gamma=self.gamma, alpha=self.alpha, reduction=reduction,
            avg_factor=avg_factor, activated=self.activated)
