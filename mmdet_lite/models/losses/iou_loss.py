"""IoU-based box regression losses."""
from typing import Optional

from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import bbox_overlaps
from .utils import weighted_loss, zero_weight_loss


@weighted_loss
def giou_loss(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """Element-wise ``1 - GIoU`` between aligned boxes (Rezatofighi et al., 2019).

    Args:
        pred (Tensor): Predicted boxes [N, 4] (x1, y1, x2, y2).
        target (Tensor): Target boxes [N, 4] (x1, y1, x2, y2).
        eps (float): Lower bound of the IoU and enclosing-area denominators.

    Returns:
        Tensor: Loss per box pair [N], in [0, 2].
    """
    if pred.numel() == 0:  # bbox_overlaps returns fresh zeros; keep the graph instead
        return pred.sum(dim=-1) * 0  # [0]
    gious = bbox_overlaps(pred, target, mode='giou', is_aligned=True, eps=eps)  # [N]
    return 1 - gious


@MODELS.register_module()
class GIoULoss(nn.Module):
    """Generalized IoU loss module.

    Args:
        eps (float): Numerical stability term. Defaults to 1e-6.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, eps: float = 1e-6, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.eps = eps
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
            pred (Tensor): Predicted boxes [N, 4] (x1, y1, x2, y2).
            target (Tensor): Target boxes [N, 4].
            weight (Tensor, optional): Weights [N], or [N, 4] (averaged to [N]).
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        zero = zero_weight_loss(pred, weight)
        if zero is not None:
            return zero
        if pred.shape != target.shape:
            raise ValueError(f'GIoULoss: pred and target must have the same shape, but got '
                             f'{tuple(pred.shape)} and {tuple(target.shape)}')
        reduction = reduction_override if reduction_override else self.reduction
        if weight is not None and weight.dim() > 1:
            # The loss is one value per box: reduce per-coordinate weights [N, 4] to [N].
            if weight.shape != pred.shape:
                raise ValueError(f'GIoULoss: weight must be [N] or shaped like pred '
                                 f'{tuple(pred.shape)}, but got {tuple(weight.shape)}')
            weight = weight.mean(-1)
        return self.loss_weight * giou_loss(pred, target, weight, eps=self.eps,
                                            reduction=reduction, avg_factor=avg_factor)
