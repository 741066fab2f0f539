"""Score-HLR sampler (ISR-N of PISA, https://arxiv.org/abs/1904.04821)."""
from typing import Optional, Tuple, Union

import torch
from mmengine.structures import InstanceData
from numpy import ndarray
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import bbox2roi, get_box_tensor
from ..assigners import AssignResult
from ..assigners.max_iou_assigner import get_prior_boxes
from .base_sampler import BaseSampler
from .nms_match import nms_match
from .random_sampler import RandomSampler
from .sampling_result import SamplingResult


@TASK_UTILS.register_module()
class ScoreHLRSampler(BaseSampler):
    """Random positives; negatives ranked by score hierarchical local rank (Score-HLR).

    Negatives whose best foreground score exceeds ``score_thr`` are grouped by NMS-match of
    their decoded boxes; inside a group they rank by score, and ranks are compared across
    groups (first all group leaders, then all runners-up, ...), ties broken by score. The
    best-ranked are kept (random low-score negatives fill up), and their loss weights are
    ``(bias + (1 - bias) * w) ** k`` with ``w`` falling linearly with the rank, rescaled so
    the weighted loss sum equals the unweighted one.

    :meth:`sample` returns ``(SamplingResult, neg_label_weights)``.

    Args:
        num (int): Number of sampled RoIs.
        pos_fraction (float): Upper bound of the fraction of positives.
        context (BaseRoIHead): RoI head with ``bbox_roi_extractor``, ``bbox_head`` (with
            ``num_classes``, ``bbox_coder`` and ``loss(..., reduction_override='none')``),
            ``with_shared_head`` and ``_bbox_forward(feats, rois)``.
        neg_pos_ub (int): Upper bound of negatives per positive; -1 disables.
            Defaults to -1.
        add_gt_as_proposals (bool): Add gt boxes as proposals. Defaults to True.
        k (float): Power of the weight mapping. Defaults to 0.5.
        bias (float): Shift of the weight mapping. Defaults to 0.
        score_thr (float): Minimum score for a negative to be ranked. Defaults to 0.05.
        iou_thr (float): IoU threshold of the NMS-match grouping. Defaults to 0.5.
    """

    def __init__(self,
                 num: int,
                 pos_fraction: float,
                 context,
                 neg_pos_ub: int = -1,
                 add_gt_as_proposals: bool = True,
                 k: float = 0.5,
                 bias: float = 0,
                 score_thr: float = 0.05,
                 iou_thr: float = 0.5,
                 **kwargs) -> None:
        super().__init__(num=num, pos_fraction=pos_fraction, neg_pos_ub=neg_pos_ub,
                         add_gt_as_proposals=add_gt_as_proposals)
        self.k = k
        self.bias = bias
        self.score_thr = score_thr
        self.iou_thr = iou_thr
        self.context = context
        if not hasattr(context, 'num_stages'):
            self.bbox_roi_extractor = context.bbox_roi_extractor
            self.bbox_head = context.bbox_head
            self.with_shared_head = context.with_shared_head
            if self.with_shared_head:
                self.shared_head = context.shared_head
        else:
            self.bbox_roi_extractor = context.bbox_roi_extractor[context.current_stage]
            self.bbox_head = context.bbox_head[context.current_stage]

    @staticmethod
    def random_choice(gallery: Union[Tensor, ndarray, list], num: int) -> Tensor:
        """``num`` random elements of ``gallery``; see :meth:`RandomSampler.random_choice`."""
        return RandomSampler.random_choice(gallery, num)

    def _sample_pos(self, assign_result: AssignResult, num_expected: int,
                    **kwargs) -> Tensor:
        """Random positives, at most ``num_expected``."""
        pos_inds = torch.nonzero(assign_result.gt_inds > 0).flatten()
        if pos_inds.numel() <= num_expected:
            return pos_inds
        return self.random_choice(pos_inds, num_expected)

    def _sample_neg(self, assign_result: AssignResult, num_expected: int, bboxes: Tensor,
                    feats: Tensor, **kwargs) -> Tuple[Tensor, Optional[Tensor]]:
        """Negatives ranked by Score-HLR, with their loss weights.

        Args:
            assign_result (AssignResult): Assignment over the priors.
            num_expected (int): Number of negatives wanted.
            bboxes (Tensor): All priors [N, 4].
            feats (list[Tensor]): Multi-level features of this image.

        Returns:
            tuple[Tensor, Tensor | None]: Indices of the sampled negatives and their label
            weights (None when there is no negative).
        """
        neg_inds = torch.nonzero(assign_result.gt_inds == 0).flatten()
        num_neg = neg_inds.size(0)
        if num_neg == 0:
            return neg_inds, None
        with torch.no_grad():
            neg_rois = bbox2roi([bboxes[neg_inds]])
            bbox_result = self.context._bbox_forward(feats, neg_rois)
            cls_score, bbox_pred = bbox_result['cls_score'], bbox_result['bbox_pred']
            ori_loss = self.bbox_head.loss(
                cls_score=cls_score,
                bbox_pred=None,
                rois=None,
                labels=neg_inds.new_full((num_neg, ), self.bbox_head.num_classes),
                label_weights=cls_score.new_ones(num_neg),
                bbox_targets=None,
                bbox_weights=None,
                reduction_override='none')['loss_cls']

            # Best foreground class (the last column is background).
            max_score, argmax_score = cls_score.softmax(-1)[:, :-1].max(-1)
            valid_inds = (max_score > self.score_thr).nonzero().view(-1)
            invalid_inds = (max_score <= self.score_thr).nonzero().view(-1)
            num_valid, num_invalid = valid_inds.size(0), invalid_inds.size(0)
            num_expected = min(num_neg, num_expected)
            num_hlr = min(num_valid, num_expected)
            num_rand = num_expected - num_hlr
            if num_valid == 0:
                select_inds = torch.randperm(num_neg)[:num_expected]
                return neg_inds[select_inds], cls_score.new_ones(num_expected)

            valid_max_score = max_score[valid_inds]
            valid_bbox_pred = bbox_pred[valid_inds].view(num_valid, -1, 4)
            selected_bbox_pred = valid_bbox_pred[range(num_valid), argmax_score[valid_inds]]
            pred_bboxes = get_box_tensor(self.bbox_head.bbox_coder.decode(
                neg_rois[valid_inds][:, 1:], selected_bbox_pred))
            groups = nms_match(torch.cat([pred_bboxes, valid_max_score[:, None]], -1),
                               self.iou_thr)
            # Importance: the rank inside the group dominates, the score breaks ties.
            imp = cls_score.new_zeros(num_valid)
            for group in groups:
                group_score = valid_max_score[group]
                rank = group_score.new_tensor(range(group_score.size(0)))
                imp[group] = num_valid - rank + group_score
            _, imp_rank_inds = imp.sort(descending=True)
            _, imp_rank = imp_rank_inds.sort()
            hlr_inds = imp_rank_inds[:num_expected]
            if num_rand > 0:
                rand_inds = torch.randperm(num_invalid)[:num_rand]
                select_inds = torch.cat([valid_inds[hlr_inds], invalid_inds[rand_inds]])
            else:
                select_inds = valid_inds[hlr_inds]

            neg_label_weights = cls_score.new_ones(num_expected)
            up_bound = max(num_expected, num_valid)
            imp_weights = (up_bound - imp_rank[hlr_inds].float()) / up_bound
            neg_label_weights[:num_hlr] = imp_weights
            neg_label_weights[num_hlr:] = imp_weights.min()
            neg_label_weights = (self.bias + (1 - self.bias) * neg_label_weights).pow(self.k)
            # Keep the total loss of the selected negatives unchanged.
            ori_selected_loss = ori_loss[select_inds]
            new_loss = ori_selected_loss * neg_label_weights
            neg_label_weights *= ori_selected_loss.sum() / new_loss.sum()
            return neg_inds[select_inds], neg_label_weights

    def sample(self, assign_result: AssignResult, pred_instances: InstanceData,
               gt_instances: InstanceData, **kwargs) -> Tuple[SamplingResult, Optional[Tensor]]:
        """Sample positives at random and negatives by Score-HLR.

        Args:
            assign_result (AssignResult): Assignment over the priors (gt rows are added to
                it when ``add_gt_as_proposals``).
            pred_instances (InstanceData): ``priors`` [N, 4].
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            **kwargs: ``feats`` (multi-level features of the image), passed to the samplers.

        Returns:
            tuple[SamplingResult, Tensor | None]: The result and the negatives' label
            weights.
        """
        gt_bboxes = gt_instances.bboxes
        priors = get_box_tensor(get_prior_boxes(pred_instances))
        gt_flags = priors.new_zeros((priors.shape[0], ), dtype=torch.uint8)
        if self.add_gt_as_proposals and len(gt_bboxes) > 0:
            priors = torch.cat([get_box_tensor(gt_bboxes).to(priors.dtype), priors], dim=0)
            assign_result.add_gt_(gt_instances.labels)
            gt_flags = torch.cat([priors.new_ones(gt_bboxes.shape[0], dtype=torch.uint8),
                                  gt_flags])

        num_expected_pos = int(self.num * self.pos_fraction)
        pos_inds = self.pos_sampler._sample_pos(assign_result, num_expected_pos, bboxes=priors,
                                                **kwargs)
        num_sampled_pos = pos_inds.numel()
        num_expected_neg = self.num - num_sampled_pos
        if self.neg_pos_ub >= 0:
            num_expected_neg = min(num_expected_neg,
                                   int(self.neg_pos_ub * max(1, num_sampled_pos)))
        neg_inds, neg_label_weights = self.neg_sampler._sample_neg(
            assign_result, num_expected_neg, bboxes=priors, **kwargs)
        sampling_result = SamplingResult(pos_inds=pos_inds, neg_inds=neg_inds, priors=priors,
                                         gt_bboxes=gt_bboxes, assign_result=assign_result,
                                         gt_flags=gt_flags)
        return sampling_result, neg_label_weights
