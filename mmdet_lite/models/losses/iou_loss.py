"""IoU-family box regression loss modules: IoU, Bounded IoU, GIoU, DIoU, CIoU, EIoU, SIoU.

The element-wise functions live in ``iou_loss_functions``; they are re-exported here so
``mmdet_lite.models.losses.iou_loss.giou_loss`` resolves as in mmdetection.
"""
import warnings
from typing import Callable, Optional

from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .iou_loss_functions import (bounded_iou_loss, check_iou_loss_mode, ciou_loss, diou_loss,
                                 eiou_loss, giou_loss, iou_loss, siou_loss)
from .utils import LossArgumentError, check_reduction_override, zero_weight_loss

__all__ = [
    'IoULoss', 'BoundedIoULoss', 'GIoULoss', 'DIoULoss', 'CIoULoss', 'EIoULoss', 'SIoULoss',
    'iou_loss', 'bounded_iou_loss', 'giou_loss', 'diou_loss', 'ciou_loss', 'eiou_loss',
    'siou_loss'
]


def _box_weight(weight: Optional[Tensor], pred: Tensor) -> Optional[Tensor]:
    """Reduce per-coordinate weights [N, 4] to the one-per-box weights [N] of the loss."""
    if weight is None or weight.dim() <= 1:
        return weight
    if weight.shape != pred.shape:
        raise LossArgumentError(f'weight must be [N] or shaped like pred {tuple(pred.shape)}, '
                                f'but got {tuple(weight.shape)}')
    return weight.mean(-1)


class _IoUFamilyLoss(nn.Module):
    """Shared forward of the IoU-family modules.

    An all-zero (or all-negative) weight short-cuts to a graph-connected 0, then the override
    is checked, per-coordinate weights are averaged per box and ``_loss_fn`` runs.

    Args:
        eps (float): Numerical stability term of the loss function.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    # Whether the loss is one value per box (so [N, 4] weights are averaged to [N]).
    _per_box = True

    def __init__(self, eps: float = 1e-6, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.eps = eps
        self.reduction = reduction
        self.loss_weight = loss_weight

    def _loss_fn(self) -> Callable[..., Tensor]:
        raise NotImplementedError

    def _loss_kwargs(self) -> dict:
        return dict(eps=self.eps)

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Predicted boxes [N, 4] (x1, y1, x2, y2).
            target (Tensor): Target boxes [N, 4].
            weight (Tensor, optional): Weights [N], or [N, 4] (averaged to [N]).
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss: a scalar, or [N] for reduction ``'none'``.
        """
        zero = zero_weight_loss(pred, weight)
        if zero is not None:
            return zero
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        if self._per_box:
            weight = _box_weight(weight, pred)
        loss_kwargs = self._loss_kwargs()
        loss_kwargs.update(kwargs)
        return self.loss_weight * self._loss_fn()(
            pred, target, weight, reduction=reduction, avg_factor=avg_factor, **loss_kwargs)


@MODELS.register_module()
class IoULoss(_IoUFamilyLoss):
    """IoU loss: ``-log(IoU)``, ``1 - IoU`` or ``1 - IoU**2`` per box pair.

    Args:
        linear (bool): Deprecated; True means ``mode='linear'``. Defaults to False.
        eps (float): Lower bound of the IoU. Defaults to 1e-6.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        mode (str): ``'linear'``, ``'square'`` or ``'log'``. Defaults to ``'log'``.
    """

    def __init__(self,
                 linear: bool = False,
                 eps: float = 1e-6,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 mode: str = 'log') -> None:
        super().__init__(eps, reduction, loss_weight)
        check_iou_loss_mode(mode)
        if linear:
            mode = 'linear'
            warnings.warn('DeprecationWarning: Setting "linear=True" in IOULoss is deprecated, '
                          'please use "mode=`linear`" instead.')
        self.mode = mode
        self.linear = linear

    def _loss_fn(self) -> Callable[..., Tensor]:
        return iou_loss

    def _loss_kwargs(self) -> dict:
        return dict(mode=self.mode, eps=self.eps)

    def forward(self,
                pred: Tensor,
                target: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss; see :meth:`_IoUFamilyLoss.forward`.

        Unlike the other IoU losses, an all-zero weight with reduction ``'none'`` still
        returns the per-box loss (all zeros, shape [N]).
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        if reduction != 'none':
            zero = zero_weight_loss(pred, weight)
            if zero is not None:
                return zero
        weight = _box_weight(weight, pred)
        return self.loss_weight * iou_loss(pred, target, weight, mode=self.mode, eps=self.eps,
                                           reduction=reduction, avg_factor=avg_factor, **kwargs)


@MODELS.register_module()
class BoundedIoULoss(_IoUFamilyLoss):
    """Bounded IoU loss; one value per box and term [N, 4], so weights are [N, 4] too.

    Args:
        beta (float): Smooth L1 threshold. Defaults to 0.2.
        eps (float): Added to the denominators. Defaults to 1e-3.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    _per_box = False

    def __init__(self,
                 beta: float = 0.2,
                 eps: float = 1e-3,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(eps, reduction, loss_weight)
        self.beta = beta

    def _loss_fn(self) -> Callable[..., Tensor]:
        return bounded_iou_loss

    def _loss_kwargs(self) -> dict:
        return dict(beta=self.beta, eps=self.eps)


@MODELS.register_module()
class GIoULoss(_IoUFamilyLoss):
    """Generalized IoU loss ``1 - GIoU``.

    Args:
        eps (float): Lower bound of the denominators. Defaults to 1e-6.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def _loss_fn(self) -> Callable[..., Tensor]:
        return giou_loss


@MODELS.register_module()
class DIoULoss(_IoUFamilyLoss):
    """Distance IoU loss ``1 - DIoU``.

    Args:
        eps (float): Added to the union and the squared diagonal. Defaults to 1e-6.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def _loss_fn(self) -> Callable[..., Tensor]:
        return diou_loss


@MODELS.register_module()
class CIoULoss(_IoUFamilyLoss):
    """Complete IoU loss ``1 - CIoU``.

    Args:
        eps (float): Added to the union, the squared diagonal and the heights.
            Defaults to 1e-6.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def _loss_fn(self) -> Callable[..., Tensor]:
        return ciou_loss


@MODELS.register_module()
class EIoULoss(_IoUFamilyLoss):
    """Smooth extended-IoU loss.

    Args:
        eps (float): Added to the union. Defaults to 1e-6.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        smooth_point (float): Smooth L1 threshold. Defaults to 0.1.
    """

    def __init__(self,
                 eps: float = 1e-6,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 smooth_point: float = 0.1) -> None:
        super().__init__(eps, reduction, loss_weight)
        self.smooth_point = smooth_point

    def _loss_fn(self) -> Callable[..., Tensor]:
        return eiou_loss

    def _loss_kwargs(self) -> dict:
        return dict(smooth_point=self.smooth_point, eps=self.eps)


@MODELS.register_module()
class SIoULoss(_IoUFamilyLoss):
    """SCYLLA IoU loss ``1 - SIoU``.

    Args:
        eps (float): Numerical stability term. Defaults to 1e-6.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        neg_gamma (bool): Use the paper's sign of gamma. Defaults to False.
    """

    def __init__(self,
                 eps: float = 1e-6,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0,
                 neg_gamma: bool = False) -> None:
        super().__init__(eps, reduction, loss_weight)
        self.neg_gamma = neg_gamma

    def _loss_fn(self) -> Callable[..., Tensor]:
        return siou_loss

    def _loss_kwargs(self) -> dict:
        return dict(eps=self.eps, neg_gamma=self.neg_gamma)
