"""Online hard example mining sampler (https://arxiv.org/abs/1604.03540)."""
from typing import List, Optional

import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import bbox2roi
from ..assigners import AssignResult
from .base_sampler import BaseSampler


@TASK_UTILS.register_module()
class OHEMSampler(BaseSampler):
    """Keep the positives / negatives with the highest classification loss.

    When there are more candidates than wanted, they are run through the RoI head of
    ``context`` (without gradients) and the ones with the largest ``loss_key`` loss are
    kept. Negatives are scored as background (label ``bbox_head.num_classes``).

    The context must provide ``bbox_head`` (with ``num_classes`` and ``loss(cls_score,
    bbox_pred, rois, labels, label_weights, bbox_targets, bbox_weights,
    reduction_override)`` returning a dict of per-RoI losses for ``reduction_override=
    'none'``) and ``_bbox_forward(feats, rois)`` returning a dict with ``cls_score``. A
    cascade context (with ``num_stages``) indexes ``bbox_head`` by ``current_stage`` and is
    called as ``_bbox_forward(current_stage, feats, rois)``.

    Args:
        num (int): Number of samples per image.
        pos_fraction (float): Upper bound of the fraction of positives.
        context (BaseRoIHead): The RoI head that owns the sampler.
        neg_pos_ub (int): Upper bound of negatives per positive; -1 disables.
            Defaults to -1.
        add_gt_as_proposals (bool): Add gt boxes as proposals. Defaults to True.
        loss_key (str): Loss used for ranking. Defaults to 'loss_cls'.
    """

    def __init__(self,
                 num: int,
                 pos_fraction: float,
                 context,
                 neg_pos_ub: int = -1,
                 add_gt_as_proposals: bool = True,
                 loss_key: str = 'loss_cls',
                 **kwargs) -> None:
        super().__init__(num, pos_fraction, neg_pos_ub, add_gt_as_proposals)
        self.context = context
        if not hasattr(self.context, 'num_stages'):
            self.bbox_head = self.context.bbox_head
        else:
            self.bbox_head = self.context.bbox_head[self.context.current_stage]
        self.loss_key = loss_key

    def hard_mining(self, inds: Tensor, num_expected: int, bboxes: Tensor, labels: Tensor,
                    feats: Optional[List[Tensor]]) -> Tensor:
        """The ``num_expected`` entries of ``inds`` whose boxes have the largest loss.

        Args:
            inds (Tensor): Candidate prior indices [K].
            num_expected (int): How many to keep.
            bboxes (Tensor | BaseBoxes): Boxes of the candidates [K, 4].
            labels (Tensor): Labels the loss is computed against [K].
            feats (list[Tensor]): Multi-level features of this image.

        Returns:
            Tensor: ``num_expected`` indices out of ``inds``, hardest first.
        """
        with torch.no_grad():
            rois = bbox2roi([bboxes])
            if not hasattr(self.context, 'num_stages'):
                bbox_results = self.context._bbox_forward(feats, rois)
            else:
                bbox_results = self.context._bbox_forward(self.context.current_stage, feats,
                                                          rois)
            cls_score = bbox_results['cls_score']
            loss = self.bbox_head.loss(
                cls_score=cls_score,
                bbox_pred=None,
                rois=rois,
                labels=labels,
                label_weights=cls_score.new_ones(cls_score.size(0)),
                bbox_targets=None,
                bbox_weights=None,
                reduction_override='none')[self.loss_key]
            _, topk_loss_inds = loss.topk(num_expected)
        return inds[topk_loss_inds]

    def _sample_pos(self,
                    assign_result: AssignResult,
                    num_expected: int,
                    bboxes: Optional[Tensor] = None,
                    feats: Optional[List[Tensor]] = None,
                    **kwargs) -> Tensor:
        """All positives, or the ``num_expected`` hardest against their gt labels."""
        pos_inds = torch.nonzero(assign_result.gt_inds > 0, as_tuple=True)[0]
        if pos_inds.numel() <= num_expected:
            return pos_inds
        return self.hard_mining(pos_inds, num_expected, bboxes[pos_inds],
                                assign_result.labels[pos_inds], feats)

    def _sample_neg(self,
                    assign_result: AssignResult,
                    num_expected: int,
                    bboxes: Optional[Tensor] = None,
                    feats: Optional[List[Tensor]] = None,
                    **kwargs) -> Tensor:
        """All negatives, or the ``num_expected`` hardest against the background label."""
        neg_inds = torch.nonzero(assign_result.gt_inds == 0, as_tuple=True)[0]
        if len(neg_inds) <= num_expected:
            return neg_inds
        neg_labels = assign_result.labels.new_full((neg_inds.size(0), ),
                                                   self.bbox_head.num_classes)
        return self.hard_mining(neg_inds, num_expected, bboxes[neg_inds], neg_labels, feats)
