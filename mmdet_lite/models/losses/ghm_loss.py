"""Gradient harmonizing mechanism losses: GHM-C (classification) and GHM-R (regression)."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from .utils import check_reduction_override, weight_reduce_loss


def _expand_onehot_labels(labels: Tensor, label_weights: Tensor,
                          label_channels: int) -> Tuple[Tensor, Tensor]:
    """Class indices [N] to one-hot [N, C] (label ``C`` = all zeros), weights to [N, C]."""
    bin_labels = labels.new_zeros((labels.size(0), label_channels))
    rows = torch.nonzero((labels >= 0) & (labels < label_channels), as_tuple=True)[0]
    bin_labels[rows, labels[rows]] = 1
    return bin_labels, label_weights.view(-1, 1).expand(label_weights.size(0), label_channels)


class _GHMBase(nn.Module):
    """Shared density weighting of GHM-C and GHM-R.

    Args:
        bins (int): Number of gradient-norm bins over [0, 1].
        momentum (float): Moving-average factor of the bin counts; 0 uses this batch only.
        loss_weight (float): Multiplier of the loss.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
    """

    def __init__(self, bins: int, momentum: float, loss_weight: float, reduction: str) -> None:
        super().__init__()
        self.bins = bins
        self.momentum = momentum
        self.register_buffer('edges', torch.arange(bins + 1).float() / bins)
        if momentum > 0:
            self.register_buffer('acc_sum', torch.zeros(bins))
        self.loss_weight = loss_weight
        self.reduction = reduction

    def _harmonizing_weights(self, grad_norm: Tensor, valid: Tensor, tot: float) -> Tensor:
        """Weight each valid element by ``tot / (count of its bin)``, divided by the number of
        non-empty bins; elements outside every bin or not valid get 0.

        Args:
            grad_norm (Tensor): Gradient norm of each element (detached), any shape.
            valid (Tensor): Bool mask of the same shape.
            tot (float): Number of valid elements (at least 1).

        Returns:
            Tensor: Weights shaped like ``grad_norm``.
        """
        edges = self.edges.to(grad_norm.dtype)
        # bin i holds edges[i] <= g < edges[i + 1]
        bin_ids = torch.bucketize(grad_norm, edges, right=True) - 1
        in_bin = valid & (bin_ids >= 0) & (bin_ids < self.bins)
        counts = torch.bincount(bin_ids[in_bin], minlength=self.bins).to(grad_norm.dtype)
        filled = counts > 0
        if self.momentum > 0:
            mmt = self.momentum
            self.acc_sum.copy_(
                torch.where(filled, mmt * self.acc_sum + (1 - mmt) * counts, self.acc_sum))
            density = self.acc_sum
        else:
            density = counts
        per_bin = torch.where(filled, tot / density.clamp(min=1e-12), torch.zeros_like(density))
        weights = torch.zeros_like(grad_norm)
        weights[in_bin] = per_bin[bin_ids[in_bin]]
        num_filled = int(filled.sum())
        if num_filled > 0:
            weights = weights / num_filled
        return weights


@MODELS.register_module()
class GHMC(_GHMBase):
    """GHM classification loss (Li et al., 2019): sigmoid BCE re-weighted by the inverse
    density of the gradient norm ``|sigmoid(pred) - target|``.

    Args:
        bins (int): Number of bins. Defaults to 10.
        momentum (float): Moving-average factor of the bin counts. Defaults to 0.
        use_sigmoid (bool): Must be True. Defaults to True.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
    """

    def __init__(self,
                 bins: int = 10,
                 momentum: float = 0,
                 use_sigmoid: bool = True,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__(bins, momentum, loss_weight, reduction)
        # g is at most 1: widen the last bin so g == 1 falls inside.
        self.edges[-1] += 1e-6
        self.use_sigmoid = use_sigmoid
        if not self.use_sigmoid:
            raise NotImplementedError('GHMC only supports use_sigmoid=True')

    def forward(self,
                pred: Tensor,
                target: Tensor,
                label_weight: Tensor,
                reduction_override: Optional[str] = None,
                **kwargs) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Logits [N, C].
            target (Tensor): Binary targets [N, C], or class indices [N] (``C`` =
                background).
            label_weight (Tensor): 1 for valid, 0 for ignored; [N, C] (or [N] with index
                targets).
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The loss, averaged over the valid elements for ``'mean'``.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        if pred.dim() != target.dim():
            target, label_weight = _expand_onehot_labels(target, label_weight, pred.size(-1))
        target, label_weight = target.float(), label_weight.float()
        grad_norm = torch.abs(pred.sigmoid().detach() - target)
        valid = label_weight > 0
        tot = max(valid.float().sum().item(), 1.0)
        weights = self._harmonizing_weights(grad_norm, valid, tot)
        loss = F.binary_cross_entropy_with_logits(pred, target, reduction='none')
        loss = weight_reduce_loss(loss, weights, reduction=reduction, avg_factor=tot)
        return loss * self.loss_weight


@MODELS.register_module()
class GHMR(_GHMBase):
    """GHM regression loss (Li et al., 2019): authentic smooth L1
    ``sqrt(d**2 + mu**2) - mu`` re-weighted by the inverse density of its gradient norm.

    Args:
        mu (float): Smoothness of the authentic smooth L1. Defaults to 0.02.
        bins (int): Number of bins. Defaults to 10.
        momentum (float): Moving-average factor of the bin counts. Defaults to 0.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
    """

    def __init__(self,
                 mu: float = 0.02,
                 bins: int = 10,
                 momentum: float = 0,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean') -> None:
        super().__init__(bins, momentum, loss_weight, reduction)
        self.mu = mu
        # The gradient norm is below 1; an open-ended last bin.
        self.edges[-1] = 1e3

    def forward(self,
                pred: Tensor,
                target: Tensor,
                label_weight: Tensor,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            pred (Tensor): Box deltas [N, 4] (or [N, 4 * C]).
            target (Tensor): Target deltas, same shape.
            label_weight (Tensor): Weights, same shape; 0 ignores an element.
            avg_factor (float, optional): Not used: the mean is always over the sum of
                ``label_weight`` (as mmdetection).
            reduction_override (str, optional): Replaces ``self.reduction`` for this call.

        Returns:
            Tensor: The loss.
        """
        check_reduction_override(reduction_override)
        reduction = reduction_override if reduction_override else self.reduction
        mu = self.mu
        diff = pred - target
        loss = torch.sqrt(diff * diff + mu * mu) - mu
        grad_norm = torch.abs(diff / torch.sqrt(mu * mu + diff * diff)).detach()
        valid = label_weight > 0
        tot = max(label_weight.float().sum().item(), 1.0)
        weights = self._harmonizing_weights(grad_norm, valid, tot)
        loss = weight_reduce_loss(loss, weights, reduction=reduction, avg_factor=tot)
        return loss * self.loss_weight
