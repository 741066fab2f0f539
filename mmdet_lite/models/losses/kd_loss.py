"""Knowledge-distillation KL divergence loss (LD / GFL distillation)."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import LossArgumentError, check_reduction_override, weighted_loss


@weighted_loss
def knowledge_distillation_kl_div_loss(pred: Tensor,
                                       soft_label: Tensor,
                                       T: int,
                                       detach_target: bool = True) -> Tensor:
    """KL divergence between temperature-softened teacher and student distributions.

    ``T**2 * mean_c KL(softmax(soft_label / T) || softmax(pred / T))``; the ``T**2`` keeps
    the gradient scale independent of the temperature.

    Args:
        pred (Tensor): Student logits [N, n + 1].
        soft_label (Tensor): Teacher logits [N, n + 1].
        T (int): Temperature.
        detach_target (bool): Stop gradients into the teacher. Defaults to True.

    Returns:
        Tensor: Loss per sample [N].
    """
    if pred.size() != soft_label.size():
        raise LossArgumentError(f'pred and soft_label must have the same shape, but got '
                                f'{tuple(pred.shape)} and {tuple(soft_label.shape)}')
    target = F.softmax(soft_label / T, dim=1)
    if detach_target:
        target = target.detach()
    return F.kl_div(F.log_softmax(pred / T, dim=1), target, reduction='none').mean(1) * (T * T)


@MODELS.register_module()
class KnowledgeDistillationKLDivLoss(nn.Module):
    """Knowledge-distillation KL divergence loss module.

    Args:
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        T (int): Temperature, >= 1. Defaults to 10.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0, T: int = 10) -> None:
        super().__init__()
        if not T >= 1:
            raise LossArgumentError(f'T must be >= 1, but got {T}')
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.T = T

    def forward(self,
                pred: Tensor,
                soft_label: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Student logits [N, n + 1].
            soft_label (Tensor): Teacher logits [N, n + 1].
            weight (Tensor, optional): Per-sample weights [N].
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        return self.loss_weight * knowledge_distillation_kl_div_loss(
            pred, soft_label, weight, reduction=reduction, avg_factor=avg_factor, T=self.T)
