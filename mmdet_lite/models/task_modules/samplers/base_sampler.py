"""Base class of samplers that draw a fixed-size set of positives and negatives."""
from abc import ABCMeta, abstractmethod

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import BaseBoxes, cat_boxes, get_box_tensor
from ..assigners import AssignResult
from ..assigners.max_iou_assigner import get_prior_boxes
from .sampling_result import SamplingResult


class BaseSampler(metaclass=ABCMeta):
    """Sample ``num`` priors with about ``pos_fraction`` positives.

    Subclasses choose *which* indices (``_sample_pos`` / ``_sample_neg``); this class decides
    *how many*, and optionally adds the gt boxes as proposals first.

    Args:
        num (int): Total number of samples per image.
        pos_fraction (float): Upper bound of the fraction of positives.
        neg_pos_ub (int): Upper bound of negatives per positive; -1 disables. Defaults to -1.
        add_gt_as_proposals (bool): Prepend the gt boxes to the priors as (sure) positives.
            Defaults to True.
    """

    def __init__(self,
                 num: int,
                 pos_fraction: float,
                 neg_pos_ub: int = -1,
                 add_gt_as_proposals: bool = True,
                 **kwargs) -> None:
        self.num = num
        self.pos_fraction = pos_fraction
        self.neg_pos_ub = neg_pos_ub
        self.add_gt_as_proposals = add_gt_as_proposals
        # Who draws the positives / negatives; CombinedSampler replaces these.
        self.pos_sampler = self
        self.neg_sampler = self

    @abstractmethod
    def _sample_pos(self, assign_result: AssignResult, num_expected: int, **kwargs) -> Tensor:
        """Indices of at most ``num_expected`` positive priors."""

    @abstractmethod
    def _sample_neg(self, assign_result: AssignResult, num_expected: int, **kwargs) -> Tensor:
        """Indices of at most ``num_expected`` negative priors."""

    def sample(self, assign_result: AssignResult, pred_instances: InstanceData,
               gt_instances: InstanceData, **kwargs) -> SamplingResult:
        """Sample positives and negatives.

        Args:
            assign_result (AssignResult): Assignment over the priors (modified in place when
                gt boxes are added).
            pred_instances (InstanceData): ``priors`` [N, 4] (or ``bboxes``); a tensor or a
                box object.
            gt_instances (InstanceData): ``bboxes`` [G, 4] (tensor or box object) and
                ``labels`` [G].

        Returns:
            SamplingResult: With at most ``num * pos_fraction`` positives and ``num`` in all.
        """
        gt_bboxes = gt_instances.bboxes
        gt_labels = gt_instances.labels
        priors = get_prior_boxes(pred_instances)
        if priors.dim() < 2:
            priors = priors[None, :]
        if not isinstance(priors, BaseBoxes):
            priors = priors[:, :4]  # proposals may carry a score column
        gt_flags = priors.new_zeros((priors.shape[0], ), dtype=torch.uint8)
        if self.add_gt_as_proposals and len(gt_bboxes) > 0:
            # Every gt is then a positive, so the RoI head always sees well-aligned boxes.
            # The gt boxes take the kind of the priors (box type or tensor) so both concatenate.
            if isinstance(priors, BaseBoxes):
                gt_priors = gt_bboxes.convert_to(type(priors)) if isinstance(
                    gt_bboxes, BaseBoxes) else type(priors)(gt_bboxes)
            else:
                gt_priors = get_box_tensor(gt_bboxes)
            priors = cat_boxes([gt_priors.to(priors.dtype), priors], dim=0)
            assign_result.add_gt_(gt_labels)
            gt_flags = torch.cat([gt_flags.new_ones(gt_bboxes.shape[0]), gt_flags])

        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = self.pos_sampler._sample_pos(assign_result, num_expected_pos,
                                                bboxes=priors, **kwargs).unique()
        num_sampled_pos = pos_inds.numel()
        num_expected_neg = self.num - num_sampled_pos
        if self.neg_pos_ub >= 0:
            neg_upper_bound = int(self.neg_pos_ub * max(1, num_sampled_pos))
            num_expected_neg = min(num_expected_neg, neg_upper_bound)
        neg_inds = self.neg_sampler._sample_neg(assign_result, num_expected_neg,
                                                bboxes=priors, **kwargs).unique()
        return SamplingResult(pos_inds=pos_inds, neg_inds=neg_inds, priors=priors,
                              gt_bboxes=gt_bboxes, assign_result=assign_result,
                              gt_flags=gt_flags)
