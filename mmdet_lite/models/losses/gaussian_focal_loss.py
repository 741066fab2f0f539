"""Focal loss on Gaussian heatmap targets (CornerNet / CenterNet)."""
from typing import Optional, Union

from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import LossArgumentError, check_reduction_override, weight_reduce_loss, weighted_loss

# Keeps log() finite at probabilities of exactly 0 or 1.
_LOG_EPS = 1e-12


@weighted_loss
def gaussian_focal_loss(pred: Tensor,
                        gaussian_target: Tensor,
                        alpha: float = 2.0,
                        gamma: float = 4.0,
                        pos_weight: float = 1.0,
                        neg_weight: float = 1.0) -> Tensor:
    """Element-wise focal loss against a Gaussian heatmap.

    Peaks (target exactly 1) are positives: ``-log(p) * (1 - p)**alpha``. Every other
    location is a negative down-weighted near a peak:
    ``-log(1 - p) * p**alpha * (1 - target)**gamma``.

    Args:
        pred (Tensor): Heatmap probabilities (after sigmoid), e.g. [B, C, H, W].
        gaussian_target (Tensor): Target heatmap in [0, 1], same shape.
        alpha (float): Power of the prediction in the modulating factor. Defaults to 2.0.
        gamma (float): Power of ``1 - target`` for negatives. Defaults to 4.0.
        pos_weight (float): Weight of the positive term. Defaults to 1.0.
        neg_weight (float): Weight of the negative term. Defaults to 1.0.

    Returns:
        Tensor: Element-wise loss, same shape as ``pred``.
    """
    is_peak = gaussian_target.eq(1)
    neg_weights = (1 - gaussian_target).pow(gamma)
    pos_loss = -(pred + _LOG_EPS).log() * (1 - pred).pow(alpha) * is_peak
    neg_loss = -(1 - pred + _LOG_EPS).log() * pred.pow(alpha) * neg_weights
    return pos_weight * pos_loss + neg_weight * neg_loss


def gaussian_focal_loss_with_pos_inds(pred: Tensor,
                                      gaussian_target: Tensor,
                                      pos_inds: Tensor,
                                      pos_labels: Tensor,
                                      alpha: float = 2.0,
                                      gamma: float = 4.0,
                                      pos_weight: float = 1.0,
                                      neg_weight: float = 1.0,
                                      reduction: str = 'mean',
                                      avg_factor: Optional[Union[int, float]] = None) -> Tensor:
    """Gaussian focal loss whose positives are given explicitly (CenterNet-update).

    The positive term is taken at ``pred[pos_inds, pos_labels]`` instead of where the
    target equals 1; the negative term covers every location. Each term is reduced on its
    own (with the same ``avg_factor``) before they are added.

    Args:
        pred (Tensor): Probabilities [N, num_classes].
        gaussian_target (Tensor): Target heatmap [N, num_classes].
        pos_inds (Tensor): Rows of the positives [M].
        pos_labels (Tensor): Class of each positive [M].
        alpha (float): Power of the prediction. Defaults to 2.0.
        gamma (float): Power of ``1 - target`` for negatives. Defaults to 4.0.
        pos_weight (float): Weight of the positive term. Defaults to 1.0.
        neg_weight (float): Weight of the negative term. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        avg_factor (int | float, optional): Denominator of both means.

    Returns:
        Tensor: Scalar loss (for ``'none'``, the broadcast sum of the [M, 1] positive and
        [N, num_classes] negative terms, as in mmdetection).
    """
    neg_weights = (1 - gaussian_target).pow(gamma)
    pos_pred = pred[pos_inds].gather(1, pos_labels.unsqueeze(1))  # [M, 1]
    pos_loss = -(pos_pred + _LOG_EPS).log() * (1 - pos_pred).pow(alpha)
    pos_loss = weight_reduce_loss(pos_loss, None, reduction, avg_factor)
    neg_loss = -(1 - pred + _LOG_EPS).log() * pred.pow(alpha) * neg_weights
    neg_loss = weight_reduce_loss(neg_loss, None, reduction, avg_factor)
    return pos_weight * pos_loss + neg_weight * neg_loss


@MODELS.register_module()
class GaussianFocalLoss(nn.Module):
    """Gaussian focal loss module; the target is a Gaussian heatmap, not 0/1 labels.

    Args:
        alpha (float): Power of the prediction. Defaults to 2.0.
        gamma (float): Power of ``1 - target`` for negatives. Defaults to 4.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        pos_weight (float): Weight of the positive term. Defaults to 1.0.
        neg_weight (float): Weight of the negative term. Defaults to 1.0.
    """

    def __init__(self,
                 alpha: float = 2.0,
                 gamma: float = 4.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 pos_weight: float = 1.0,
                 neg_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.pos_weight = pos_weight
        self.neg_weight = neg_weight

    def forward(self,
                pred: Tensor,
                target: Tensor,
                pos_inds: Optional[Tensor] = None,
                pos_labels: Optional[Tensor] = None,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[Union[int, float]] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Probabilities, e.g. [N, num_classes] or [B, C, H, W].
            target (Tensor): Gaussian heatmap of the same shape.
            pos_inds (Tensor, optional): Rows of explicit positives [M]; needs
                ``pos_labels``. Then ``weight`` is not used.
            pos_labels (Tensor, optional): Class of each explicit positive [M].
            weight (Tensor, optional): Element-wise weights.
            avg_factor (int | float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        common = dict(alpha=self.alpha, gamma=self.gamma, pos_weight=self.pos_weight,
                      neg_weight=self.neg_weight, reduction=reduction, avg_factor=avg_factor)
        if pos_inds is not None:
            if pos_labels is None:
                raise LossArgumentError('GaussianFocalLoss: pos_labels must be given with '
                                        'pos_inds')
            return self.loss_weight * gaussian_focal_loss_with_pos_inds(
                pred, target, pos_inds, pos_labels, **common)
        return self.loss_weight * gaussian_focal_loss(pred, target, weight, **common)
