"""Sigmoid focal loss (RetinaNet), in plain torch."""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .accuracy import accuracy
from .utils import LossArgumentError, check_reduction_override, weight_reduce_loss


def _check_labels(pred: Tensor, labels: Tensor) -> None:
    num_classes = pred.size(1)
    if labels.numel() > 0 and (labels.min() < 0 or labels.max() > num_classes):
        raise LossArgumentError(
            f'focal loss labels must lie in [0, {num_classes}] (num_classes means '
            f'background), but got [{int(labels.min())}, {int(labels.max())}]')


def _match_weight(weight: Optional[Tensor], loss: Tensor) -> Optional[Tensor]:
    """Let a per-sample weight [N] (or flattened [N*C]) broadcast over the loss [N, C]."""
    if weight is None or weight.shape == loss.shape:
        return weight
    if weight.size(0) == loss.size(0):
        weight = weight.view(-1, 1)
    elif weight.numel() == loss.numel():
        weight = weight.view(loss.size(0), -1)
    else:
        raise LossArgumentError(f'focal loss weight {tuple(weight.shape)} matches neither the '
                                f'samples nor the elements of the loss {tuple(loss.shape)}')
    if weight.dim() != loss.dim():
        raise LossArgumentError(f'focal loss weight {tuple(weight.shape)} can not be aligned '
                                f'with the loss {tuple(loss.shape)}')
    return weight


def _focal_terms(logits: Tensor, prob: Tensor, gamma: float, alpha: float,
                 positive: bool) -> Tensor:
    """Element-wise focal loss of logits whose target is 1 (``positive``) or 0.

    ``-log(p) = softplus(-x)`` and ``-log(1 - p) = softplus(x)``: one stable op each.
    """
    if positive:
        return alpha * (1 - prob).pow(gamma) * F.softplus(-logits)
    return (1 - alpha) * prob.pow(gamma) * F.softplus(logits)


def _focal_loss_from_labels(pred: Tensor, labels: Tensor, gamma: float,
                            alpha: float) -> Tensor:
    """Element-wise loss [N, C] for class labels [N] in 0..C (C = background).

    A dense head has ~10^5 anchors x C classes and a few hundred positive entries, so every
    entry is first computed as a negative and only the positive ones, (i, labels[i]), are
    replaced: no [N, C] one-hot target and about a third of the element-wise passes (and
    of their backward) of the textbook form.
    """
    _check_labels(pred, labels)
    prob = pred.sigmoid()  # [N, C]
    loss = _focal_terms(pred, prob, gamma, alpha, positive=False)  # [N, C]
    rows = torch.nonzero(labels < pred.size(1)).squeeze(1)  # [P] positive anchors
    if rows.numel() == 0:
        return loss
    cols = labels[rows]
    pos_loss = _focal_terms(pred[rows, cols], prob[rows, cols], gamma, alpha, positive=True)
    return loss.index_put((rows, cols), pos_loss)


def _focal_loss_from_targets(pred: Tensor, target: Tensor, gamma: float, alpha: float,
                             activated: bool) -> Tensor:
    """Element-wise loss [N, C] for soft or one-hot targets [N, C] (or probabilities)."""
    target = target.type_as(pred)
    prob = pred if activated else pred.sigmoid()
    # 1 - p_t: the probability mass the model puts on the wrong answer.
    one_minus_pt = (1 - prob) * target + prob * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * one_minus_pt.pow(gamma)
    if activated:
        bce = F.binary_cross_entropy(pred, target, reduction='none')
    else:
        bce = F.binary_cross_entropy_with_logits(pred, target, reduction='none')
    return bce * focal_weight


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
    if pred.dim() == target.dim():
        loss = _focal_loss_from_targets(pred, target, gamma, alpha, activated)
    elif activated:  # probabilities: the log-sigmoid shortcut does not apply
        _check_labels(pred, target)
        one_hot = F.one_hot(target, num_classes=pred.size(1) + 1)[:, :pred.size(1)]
        loss = _focal_loss_from_targets(pred, one_hot, gamma, alpha, activated)
    else:
        loss = _focal_loss_from_labels(pred, target, gamma, alpha)
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
            raise LossArgumentError('FocalLoss only supports use_sigmoid=True')
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
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * sigmoid_focal_loss(
            pred, target, weight, gamma=self.gamma, alpha=self.alpha, reduction=reduction,
            avg_factor=avg_factor, activated=self.activated)


@MODELS.register_module()
class FocalCustomLoss(nn.Module):
    """Sigmoid focal loss whose classifier layout is chosen by the loss (V3Det).

    The classifier has ``num_classes`` outputs; targets are class indices [N] in 0..C.
    ``pred`` is always treated as logits (``activated`` is stored only, as mmdetection).

    Args:
        use_sigmoid (bool): Must be True. Defaults to True.
        num_classes (int): Number of classes; must be set (not -1). Defaults to -1.
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Balance of positives vs. negatives. Defaults to 0.25.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        activated (bool): Stored for config compatibility. Defaults to False.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 num_classes: int = -1,
                 gamma: float = 2.0,
                 alpha: float = 0.25,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 activated: bool = False) -> None:
        super().__init__()
        if not use_sigmoid:
            raise LossArgumentError('FocalCustomLoss only supports use_sigmoid=True')
        if num_classes == -1:
            raise LossArgumentError('FocalCustomLoss needs num_classes')
        self.use_sigmoid = use_sigmoid
        self.num_classes = num_classes
        self.gamma = gamma
        self.alpha = alpha
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.activated = activated
        self.custom_cls_channels = True
        self.custom_activation = True
        self.custom_accuracy = True

    def get_cls_channels(self, num_classes: int) -> int:
        """Classifier outputs: ``num_classes``."""
        if num_classes != self.num_classes:
            raise LossArgumentError(f'num_classes {num_classes} differs from the loss\'s '
                                    f'{self.num_classes}')
        return num_classes

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Sigmoid class probabilities [N, num_classes] (no background column)."""
        return cls_score[:, :self.num_classes].sigmoid()

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> Dict[str, Tensor]:
        """Top-1 accuracy over the foreground samples: ``{'acc_classes': Tensor}``."""
        pos_inds = labels < self.num_classes
        return dict(acc_classes=accuracy(cls_score[:, :self.num_classes][pos_inds],
                                         labels[pos_inds]))

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss of logits [N, C] against labels [N] (C = background)."""
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * sigmoid_focal_loss(
            pred, target, weight, gamma=self.gamma, alpha=self.alpha, reduction=reduction,
            avg_factor=avg_factor)
