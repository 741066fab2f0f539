"""L2 loss with optional positive/negative margins and negative mining (QDTrack-style)."""
from typing import Optional, Tuple, Union

import numpy as np
import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from .utils import LossArgumentError, check_reduction_override, weighted_loss


@weighted_loss
def l2_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Element-wise squared error ``|pred - target|**2``; shapes must match."""
    if pred.size() != target.size():
        raise LossArgumentError(f'pred and target must have the same shape, but got '
                                f'{tuple(pred.shape)} and {tuple(target.shape)}')
    return torch.abs(pred - target)**2


@MODELS.register_module()
class L2Loss(BaseModule):
    """L2 loss on similarity scores with binary targets (1 positive, 0 negative).

    Before the loss, entries with weight <= 0 are ignored, margins are subtracted from the
    positive / negative predictions, predictions are clamped to [0, 1], and negatives beyond
    ``neg_pos_ub`` times the positives are dropped (the hardest kept with ``hard_mining``,
    else a random subset). The mean is over the entries that remain.

    Args:
        neg_pos_ub (int): Upper bound of negatives per positive; <= 0 keeps all.
            Defaults to -1.
        pos_margin (float): Subtracted from positive predictions when > 0. Defaults to -1.
        neg_margin (float): Subtracted from negative predictions when > 0. Defaults to -1.
        hard_mining (bool): Keep the highest-loss negatives instead of random ones.
            Defaults to False.
        reduction (str): ``'none'`` or ``'mean'`` (the loss always passes an
            ``avg_factor``, so ``'sum'`` raises). Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 neg_pos_ub: int = -1,
                 pos_margin: float = -1,
                 neg_margin: float = -1,
                 hard_mining: bool = False,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.neg_pos_ub = neg_pos_ub
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.hard_mining = hard_mining
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
            pred (Tensor): Predicted scores [N, M].
            target (Tensor): Binary targets [N, M].
            weight (Tensor, optional): Element weights [N, M]; <= 0 ignores an entry.
            avg_factor (float, optional): Replaced by the number of kept entries.
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The weighted loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        # update_weight marks ignored targets in place; keep the caller's tensor intact.
        target = target.clone()
        pred, weight, avg_factor = self.update_weight(pred, target, weight, avg_factor)
        return self.loss_weight * l2_loss(pred, target, weight, reduction=reduction,
                                          avg_factor=avg_factor)

    def update_weight(self, pred: Tensor, target: Tensor, weight: Optional[Tensor],
                      avg_factor: Optional[float]) -> Tuple[Tensor, Tensor, Tensor]:
        """Apply the margins and the negative mining.

        Entries of ``target`` whose weight is <= 0 are set to -1 in place (as mmdetection),
        so they count as neither positive nor negative. ``pred`` and ``weight`` are copied.

        Args:
            pred (Tensor): Predicted scores [N, M].
            target (Tensor): Binary targets [N, M]; edited in place.
            weight (Tensor, optional): Element weights [N, M].
            avg_factor (float, optional): Ignored; recomputed.

        Returns:
            tuple: Adjusted and clamped ``pred`` [N, M], the weights [N, M] with dropped
            negatives zeroed, and the number of entries with positive weight (a 0-dim
            tensor).
        """
        weight = target.new_ones(target.size()) if weight is None else weight.clone()
        target[weight <= 0] = -1
        pos_inds = target == 1
        neg_inds = target == 0
        pred = pred.clone()
        if self.pos_margin > 0:
            pred[pos_inds] -= self.pos_margin
        if self.neg_margin > 0:
            pred[neg_inds] -= self.neg_margin
        pred = torch.clamp(pred, min=0, max=1)

        num_pos = int(pos_inds.sum())
        num_neg = int(neg_inds.sum())
        if self.neg_pos_ub > 0 and num_neg / (num_pos + 1e-6) > self.neg_pos_ub:
            num_neg = num_pos * self.neg_pos_ub
            neg_idx = torch.nonzero(neg_inds, as_tuple=False)  # [K, 2]
            if self.hard_mining:
                costs = l2_loss(pred, target, reduction='none')[neg_idx[:, 0],
                                                                neg_idx[:, 1]].detach()
                neg_idx = neg_idx[costs.topk(num_neg)[1], :]
            else:
                neg_idx = self.random_choice(neg_idx, num_neg)
            kept_neg = torch.zeros_like(neg_inds)
            kept_neg[neg_idx[:, 0], neg_idx[:, 1]] = True
            weight[neg_inds & ~kept_neg] = 0
        return pred, weight, (weight > 0).sum()

    @staticmethod
    def random_choice(gallery: Union[list, np.ndarray, Tensor],
                      num: int) -> Union[np.ndarray, Tensor]:
        """Pick ``num`` random rows of ``gallery`` (numpy's shuffle, as mmdetection).

        Args:
            gallery (list | ndarray | Tensor): Candidates, indexed along the first axis.
            num (int): How many to keep; at most ``len(gallery)``.

        Returns:
            ndarray | Tensor: The chosen rows, of the gallery's type (a list gives an array).
        """
        if len(gallery) < num:
            raise LossArgumentError(f'can not choose {num} of {len(gallery)} candidates')
        if isinstance(gallery, list):
            gallery = np.array(gallery)
        order = np.arange(len(gallery))
        np.random.shuffle(order)
        chosen = order[:num]
        if not isinstance(gallery, np.ndarray):
            chosen = torch.from_numpy(chosen).long().to(gallery.device)
        return gallery[chosen]
