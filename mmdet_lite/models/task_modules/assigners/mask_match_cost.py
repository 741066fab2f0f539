"""Mask matching costs (MaskFormer, Mask2Former): dice and binary cross-entropy."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from .base_match_cost import BaseMatchCost


@TASK_UTILS.register_module()
class DiceCost(BaseMatchCost):
    """Dice loss between every predicted mask and every gt mask.

    ``cost = 1 - (2 * sum(p * g) + eps) / (sum(p) + sum(g) + eps)``, with squares in the
    denominator (``sum(p**2) + sum(g**2)``) when ``naive_dice`` is False (K-Net, SOLO).

    Args:
        pred_act (bool): Apply a sigmoid to the predicted masks first. Defaults to False.
        eps (float): Smoothing term of numerator and denominator. Defaults to 1e-3.
        naive_dice (bool): First powers in the denominator. Defaults to True.
        weight (float | int): Multiplier of the cost matrix. Defaults to 1.
    """

    def __init__(self,
                 pred_act: bool = False,
                 eps: float = 1e-3,
                 naive_dice: bool = True,
                 weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        self.pred_act = pred_act
        self.eps = eps
        self.naive_dice = naive_dice

    def _binary_mask_dice_loss(self, mask_preds: Tensor, gt_masks: Tensor) -> Tensor:
        """Dice loss matrix.

        Args:
            mask_preds (Tensor): Mask predictions [num_preds, *].
            gt_masks (Tensor): Binary gt masks [num_gts, *].

        Returns:
            Tensor: [num_preds, num_gts], not weighted.
        """
        mask_preds = mask_preds.flatten(1)
        gt_masks = gt_masks.flatten(1).float()
        numerator = 2 * mask_preds @ gt_masks.t()
        if self.naive_dice:
            denominator = mask_preds.sum(-1)[:, None] + gt_masks.sum(-1)[None, :]
        else:
            denominator = (mask_preds.pow(2).sum(-1)[:, None] +
                           gt_masks.pow(2).sum(-1)[None, :])
        return 1 - (numerator + self.eps) / (denominator + self.eps)

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Cost [num_preds, num_gts] between ``pred_instances.masks`` [N, ...] and
        ``gt_instances.masks`` [G, ...] (tensors)."""
        pred_masks = pred_instances.masks
        if self.pred_act:
            pred_masks = pred_masks.sigmoid()
        return self._binary_mask_dice_loss(pred_masks, gt_instances.masks) * self.weight


@TASK_UTILS.register_module()
class CrossEntropyLossCost(BaseMatchCost):
    """Mean binary cross-entropy (from logits) of every predicted mask against every gt mask.

    Args:
        use_sigmoid (bool): Sigmoid (binary) cross-entropy; the softmax form is not
            implemented (as in mmdetection). Defaults to True.
        weight (float | int): Multiplier of the cost matrix. Defaults to 1.
    """

    def __init__(self, use_sigmoid: bool = True, weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        self.use_sigmoid = use_sigmoid

    def _binary_cross_entropy(self, cls_pred: Tensor, gt_labels: Tensor) -> Tensor:
        """BCE matrix.

        Args:
            cls_pred (Tensor): Logits [num_preds, *] (or [num_preds, 1, *]).
            gt_labels (Tensor): Binary targets [num_gts, *].

        Returns:
            Tensor: Mean BCE over the entries, [num_preds, num_gts], not weighted.
        """
        cls_pred = cls_pred.flatten(1).float()
        gt_labels = gt_labels.flatten(1).float()
        # The BCE of each entry if its target were 1, and if it were 0.
        as_pos = F.binary_cross_entropy_with_logits(
            cls_pred, torch.ones_like(cls_pred), reduction='none')
        as_neg = F.binary_cross_entropy_with_logits(
            cls_pred, torch.zeros_like(cls_pred), reduction='none')
        cost = as_pos @ gt_labels.t() + as_neg @ (1 - gt_labels).t()
        return cost / cls_pred.shape[1]

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Cost [num_preds, num_gts] between mask logits ``pred_instances.masks`` and binary
        ``gt_instances.masks``."""
        if not self.use_sigmoid:
            raise NotImplementedError('CrossEntropyLossCost supports use_sigmoid=True only.')
        return self._binary_cross_entropy(pred_instances.masks,
                                          gt_instances.masks) * self.weight
