"""Focal-loss matching costs: per class (Deformable DETR, DINO), per mask pixel, per token."""
from typing import Optional, Tuple, Union

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from .base_match_cost import BaseMatchCost


@TASK_UTILS.register_module()
class FocalLossCost(BaseMatchCost):
    """Focal-loss cost of predicting each ground truth's class (or mask).

    With ``p = sigmoid(logit)``, the per-entry costs are
    ``pos = -log(p + eps) * alpha * (1 - p) ** gamma`` (the focal loss if the entry were
    positive) and ``neg = -log(1 - p + eps) * (1 - alpha) * p ** gamma`` (if negative).
    With labels the cost is ``pos - neg`` at the ground truth's class; with binary masks
    (``binary_input=True``) it is the mean over pixels of ``pos`` where the gt mask is 1 and
    ``neg`` where it is 0.

    Args:
        alpha (float | int): Focal loss alpha. Defaults to 0.25.
        gamma (float | int): Focal loss gamma. Defaults to 2.
        eps (float): Added inside the logarithms. Defaults to 1e-12.
        binary_input (bool): Compare mask logits with binary gt masks (``masks`` fields)
            instead of class logits with labels (``scores`` / ``labels``). Defaults to False.
        weight (float | int): Multiplier of the cost matrix. Defaults to 1.
    """

    def __init__(self,
                 alpha: Union[float, int] = 0.25,
                 gamma: Union[float, int] = 2,
                 eps: float = 1e-12,
                 binary_input: bool = False,
                 weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.binary_input = binary_input

    def _pos_neg_costs(self, logits: Tensor) -> Tuple[Tensor, Tensor]:
        """Focal loss of every entry of ``logits`` as a positive and as a negative."""
        prob = logits.sigmoid()
        pos = -(prob + self.eps).log() * self.alpha * (1 - prob).pow(self.gamma)
        neg = -(1 - prob + self.eps).log() * (1 - self.alpha) * prob.pow(self.gamma)
        return pos, neg

    def _focal_loss_cost(self, cls_pred: Tensor, gt_labels: Tensor) -> Tensor:
        """Class cost.

        Args:
            cls_pred (Tensor): Class logits [num_preds, num_classes].
            gt_labels (Tensor): Labels [num_gts].

        Returns:
            Tensor: Weighted cost [num_preds, num_gts].
        """
        pos, neg = self._pos_neg_costs(cls_pred)
        return (pos[:, gt_labels] - neg[:, gt_labels]) * self.weight

    def _binary_focal_cost(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Unnormalized focal cost summed over the flattened entries.

        Args:
            logits (Tensor): [num_preds, d1, ..., dn].
            targets (Tensor): Binary [num_gts, d1, ..., dn].

        Returns:
            Tensor: [num_preds, num_gts], not weighted.
        """
        pos, neg = self._pos_neg_costs(logits.flatten(1))
        targets = targets.flatten(1).to(pos.dtype)
        return pos @ targets.t() + neg @ (1 - targets).t()

    def _mask_focal_loss_cost(self, cls_pred: Tensor, gt_labels: Tensor) -> Tensor:
        """Mask cost: mean over pixels.

        Args:
            cls_pred (Tensor): Mask logits [num_preds, d1, ..., dn].
            gt_labels (Tensor): Binary gt masks [num_gts, d1, ..., dn].

        Returns:
            Tensor: Weighted cost [num_preds, num_gts].
        """
        num_entries = cls_pred.flatten(1).shape[1]
        return self._binary_focal_cost(cls_pred, gt_labels) / num_entries * self.weight

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Cost [num_preds, num_gts] from ``scores``/``labels`` or, with ``binary_input``,
        from ``masks`` (pred logits [N, ...], gt binary [G, ...])."""
        if self.binary_input:
            return self._mask_focal_loss_cost(pred_instances.masks, gt_instances.masks)
        return self._focal_loss_cost(pred_instances.scores, gt_instances.labels)


@TASK_UTILS.register_module()
class BinaryFocalLossCost(FocalLossCost):
    """Focal cost against a binary target per token (Grounding DINO).

    Reads ``pred_instances.scores`` (token logits [num_preds, num_tokens]),
    ``gt_instances.positive_maps`` (binary [num_gts, num_tokens]) and
    ``gt_instances.text_token_mask`` (every row is the same [num_tokens] mask; the first is
    used). Only the tokens of the mask count; the per-token costs are summed (not averaged).
    Arguments as ``FocalLossCost``.
    """

    def _focal_loss_cost(self, cls_pred: Tensor, gt_labels: Tensor) -> Tensor:
        """Token cost.

        Args:
            cls_pred (Tensor): Logits [num_preds, num_tokens].
            gt_labels (Tensor): Binary targets [num_gts, num_tokens].

        Returns:
            Tensor: Weighted cost [num_preds, num_gts].
        """
        return self._binary_focal_cost(cls_pred, gt_labels) * self.weight

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Cost [num_preds, num_gts] over the tokens of ``text_token_mask[0]``."""
        tokens = torch.nonzero(gt_instances.text_token_mask[0]).squeeze(-1)
        return self._focal_loss_cost(pred_instances.scores[:, tokens],
                                     gt_instances.positive_maps[:, tokens])
