"""Sampling result over predicted masks (query-based heads such as K-Net / MaskFormer)."""
from typing import Any, Dict

import torch
from torch import Tensor

from ..assigners import AssignResult
from .sampling_result import SamplingResult, _NoGtError


class MaskSamplingResult(SamplingResult):
    """Positive / negative predicted masks and the gt mask matched to each positive.

    Args:
        pos_inds (Tensor): Indices [P] of positive predictions.
        neg_inds (Tensor): Indices [Q] of negative predictions.
        masks (Tensor): Predicted masks [N, H, W].
        gt_masks (Tensor): Gt masks [G, H, W].
        assign_result (AssignResult): The assignment over the predictions.
        gt_flags (Tensor): uint8 [N], 1 where a prediction is a gt.
        avg_factor_with_neg (bool): ``avg_factor`` counts negatives too. Defaults to True.
    """

    def __init__(self,
                 pos_inds: Tensor,
                 neg_inds: Tensor,
                 masks: Tensor,
                 gt_masks: Tensor,
                 assign_result: AssignResult,
                 gt_flags: Tensor,
                 avg_factor_with_neg: bool = True) -> None:
        self.pos_inds = pos_inds
        self.neg_inds = neg_inds
        self.num_pos = max(pos_inds.numel(), 1)
        self.num_neg = max(neg_inds.numel(), 1)
        self.avg_factor = self.num_pos + self.num_neg if avg_factor_with_neg else self.num_pos
        self.pos_masks = masks[pos_inds]
        self.neg_masks = masks[neg_inds]
        self.pos_is_gt = gt_flags[pos_inds]
        self.num_gts = gt_masks.shape[0]
        self.pos_assigned_gt_inds = assign_result.gt_inds[pos_inds] - 1
        if gt_masks.numel() == 0:
            if self.pos_assigned_gt_inds.numel() != 0:
                raise _NoGtError('MaskSamplingResult: positives were sampled but there is '
                                 'no gt mask')
            self.pos_gt_masks = torch.empty_like(gt_masks)
        else:
            self.pos_gt_masks = gt_masks[self.pos_assigned_gt_inds, :]

    @property
    def masks(self) -> Tensor:
        """Tensor: Positive then negative masks [P + Q, H, W]."""
        return torch.cat([self.pos_masks, self.neg_masks])

    @property
    def info(self) -> Dict[str, Any]:
        """dict: The main attributes, for printing and debugging."""
        return {
            'pos_inds': self.pos_inds,
            'neg_inds': self.neg_inds,
            'pos_masks': self.pos_masks,
            'neg_masks': self.neg_masks,
            'pos_is_gt': self.pos_is_gt,
            'num_gts': self.num_gts,
            'pos_assigned_gt_inds': self.pos_assigned_gt_inds,
        }
