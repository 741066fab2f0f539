"""Generalized focal losses (GFL): quality focal loss and distribution focal loss."""
from functools import partial
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import LossArgumentError, check_reduction_override, weighted_loss


def _split_label_score(target: Sequence[Tensor]):
    if len(target) != 2:
        raise LossArgumentError('target for QFL must be a tuple of two elements, including '
                                'category label and quality label, respectively')
    return target


def _qfl_from_labels(pred: Tensor, target: Sequence[Tensor], beta: float,
                     activated: bool) -> Tensor:
    """QFL [N] for ``target = (labels [N], scores [N])``; label ``C`` (or < 0) is background.

    Every entry is first supervised towards 0; each positive's own class entry is then
    replaced by its BCE towards the quality score, modulated by ``|score - p|**beta``.
    """
    label, score = _split_label_score(target)
    prob = pred if activated else pred.sigmoid()
    bce = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
    loss = bce(pred, pred.new_zeros(pred.shape), reduction='none') * prob.pow(beta)
    num_classes = pred.size(1)
    rows = ((label >= 0) & (label < num_classes)).nonzero().squeeze(1)
    if rows.numel() > 0:
        cols = label[rows].long()
        pos_score = score[rows].type_as(pred)
        pos_loss = bce(pred[rows, cols], pos_score, reduction='none') * \
            (pos_score - prob[rows, cols]).abs().pow(beta)
        loss = loss.index_put((rows, cols), pos_loss)
    return loss.sum(dim=1)


@weighted_loss
def quality_focal_loss(pred: Tensor, target: Sequence[Tensor], beta: float = 2.0) -> Tensor:
    """Quality focal loss (Li et al., 2020) on logits.

    Args:
        pred (Tensor): Joint class-quality logits [N, C].
        target (tuple[Tensor]): Class labels [N] (``C`` = background) and quality (IoU)
            scores [N].
        beta (float): Power of the modulating factor. Defaults to 2.0.

    Returns:
        Tensor: Loss per sample [N] (summed over classes).
    """
    return _qfl_from_labels(pred, target, beta, activated=False)


@weighted_loss
def quality_focal_loss_with_prob(pred: Tensor, target: Sequence[Tensor],
                                 beta: float = 2.0) -> Tensor:
    """Quality focal loss on probabilities; see :func:`quality_focal_loss`.

    Args:
        pred (Tensor): Joint class-quality probabilities [N, C].
        target (tuple[Tensor]): Class labels [N] and quality scores [N].
        beta (float): Power of the modulating factor. Defaults to 2.0.

    Returns:
        Tensor: Loss per sample [N].
    """
    return _qfl_from_labels(pred, target, beta, activated=True)


@weighted_loss
def quality_focal_loss_tensor_target(pred: Tensor,
                                     target: Tensor,
                                     beta: float = 2.0,
                                     activated: bool = False) -> Tensor:
    """Quality focal loss with a dense soft target (one-hot rows scaled by quality).

    Non-zero target entries are positives towards their value; zero entries are negatives.

    Args:
        pred (Tensor): Logits (or probabilities with ``activated``) [N, C, ...].
        target (Tensor): Soft targets of the same shape.
        beta (float): Power of the modulating factor. Defaults to 2.0.
        activated (bool): ``pred`` holds probabilities. Defaults to False.

    Returns:
        Tensor: Loss summed over dim 1, [N, ...].
    """
    if pred.size() != target.size():
        raise LossArgumentError(f'pred and target must have the same shape, but got '
                                f'{tuple(pred.shape)} and {tuple(target.shape)}')
    prob = pred if activated else pred.sigmoid()
    bce = F.binary_cross_entropy if activated else F.binary_cross_entropy_with_logits
    target = target.type_as(pred)
    neg_loss = bce(pred, torch.zeros_like(pred), reduction='none') * prob.pow(beta)
    pos_loss = bce(pred, target, reduction='none') * (target - prob).abs().pow(beta)
    return torch.where(target != 0, pos_loss, neg_loss).sum(dim=1)


@weighted_loss
def distribution_focal_loss(pred: Tensor, label: Tensor) -> Tensor:
    """Distribution focal loss (Li et al., 2020).

    A continuous distance ``y`` between integers ``l`` and ``l + 1`` is learnt as the two
    neighbouring bins: ``(l + 1 - y) * CE(pred, l) + (y - l) * CE(pred, l + 1)``.

    Args:
        pred (Tensor): Logits over the bins 0..n [N, n + 1].
        label (Tensor): Target distances in [0, n) [N].

    Returns:
        Tensor: Loss per sample [N].
    """
    left = label.long()
    right = left + 1
    weight_left = right.float() - label
    weight_right = label - left.float()
    return (F.cross_entropy(pred, left, reduction='none') * weight_left +
            F.cross_entropy(pred, right, reduction='none') * weight_right)


@MODELS.register_module()
class QualityFocalLoss(nn.Module):
    """Quality focal loss module (sigmoid only).

    Args:
        use_sigmoid (bool): Must be True. Defaults to True.
        beta (float): Power of the modulating factor. Defaults to 2.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        activated (bool): Inputs are probabilities, not logits. Defaults to False.
    """

    def __init__(self,
                 use_sigmoid: bool = True,
                 beta: float = 2.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 activated: bool = False) -> None:
        super().__init__()
        if use_sigmoid is not True:
            raise LossArgumentError('Only sigmoid in QFL supported now (use_sigmoid=True).')
        self.use_sigmoid = use_sigmoid
        self.beta = beta
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.activated = activated

    def forward(self,
                pred: Tensor,
                target: Union[Sequence[Tensor], Tensor],
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Joint class-quality predictions [N, C].
            target (tuple[Tensor] | Tensor): ``(labels [N], scores [N])``, or soft one-hot
                targets shaped like ``pred``.
            weight (Tensor, optional): Per-sample weights [N].
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        if isinstance(target, Tensor):
            loss_fn = partial(quality_focal_loss_tensor_target, activated=self.activated)
        elif self.activated:
            loss_fn = quality_focal_loss_with_prob
        else:
            loss_fn = quality_focal_loss
        return self.loss_weight * loss_fn(pred, target, weight, beta=self.beta,
                                          reduction=reduction, avg_factor=avg_factor)


@MODELS.register_module()
class DistributionFocalLoss(nn.Module):
    """Distribution focal loss module.

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
            pred (Tensor): Bin logits [N, n + 1].
            target (Tensor): Target distances [N].
            weight (Tensor, optional): Per-sample weights [N].
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * distribution_focal_loss(pred, target, weight,
                                                          reduction=reduction,
                                                          avg_factor=avg_factor)
