"""One-to-k Hungarian matching (DDQ-DETR's auxiliary dense queries)."""
from typing import Optional

import torch
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .hungarian_assigner import linear_sum_assignment
from .task_aligned_assigner import TaskAlignedAssigner


@TASK_UTILS.register_module()
class TopkHungarianAssigner(TaskAlignedAssigner):
    """Match every gt to ``k`` predictions with the Hungarian algorithm.

    The cost is ``cls_cost + reg_cost + iou_cost``; each gt column is repeated
    ``k = min(topk, num_preds // num_gts)`` times so the optimal one-to-one matching of the
    widened table gives each gt ``k`` distinct predictions. Unmatched predictions are
    negative (0). ``max_overlaps`` and the ``assign_metrics`` attribute hold, for the
    matched predictions only (in matching order), the IoU with and the alignment metric
    ``score ** alpha * IoU ** beta`` of their gt.

    Args:
        *args: ``TaskAlignedAssigner``'s arguments (``topk``, ``iou_calculator``).
        cls_cost (dict): Classification cost config.
            Defaults to ``dict(type='FocalLossCost', weight=2.0)``.
        reg_cost (dict): Box L1 cost config.
            Defaults to ``dict(type='BBoxL1Cost', weight=5.0)``.
        iou_cost (dict): IoU cost config.
            Defaults to ``dict(type='IoUCost', iou_mode='giou', weight=2.0)``.
        **kwargs: ``TaskAlignedAssigner``'s keyword arguments.
    """

    def __init__(self,
                 *args,
                 cls_cost: ConfigType = dict(type='FocalLossCost', weight=2.0),
                 reg_cost: ConfigType = dict(type='BBoxL1Cost', weight=5.0),
                 iou_cost: ConfigType = dict(type='IoUCost', iou_mode='giou', weight=2.0),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cls_cost = TASK_UTILS.build(cls_cost)
        self.reg_cost = TASK_UTILS.build(reg_cost)
        self.iou_cost = TASK_UTILS.build(iou_cost)

    def assign(self,
               pred_scores: Tensor,
               decode_bboxes: Tensor,
               gt_bboxes: Tensor,
               gt_labels: Tensor,
               img_meta: Optional[dict],
               alpha: int = 1,
               beta: int = 6,
               **kwargs) -> AssignResult:
        """Assign each gt its ``k`` best predictions.

        Args:
            pred_scores (Tensor): Class probabilities [N, C].
            decode_bboxes (Tensor): Predicted boxes [N, 4], (x1, y1, x2, y2) in pixels.
            gt_bboxes (Tensor): Gt boxes [G, 4].
            gt_labels (Tensor): Gt labels [G].
            img_meta (dict): ``img_shape`` (h, w), for the L1 cost.
            alpha (int): Exponent of the score in the alignment metric. Defaults to 1.
            beta (int): Exponent of the IoU in the alignment metric. Defaults to 6.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, k + 1 for gt k), ``labels`` [N]
            (-1 where not matched); with gts, ``max_overlaps`` [P] and ``assign_metrics`` [P]
            for the P matched predictions; without gts, ``max_overlaps`` None.
        """
        pred_scores = pred_scores.detach()
        decode_bboxes = decode_bboxes.detach()
        overlaps_all = self.iou_calculator(decode_bboxes, gt_bboxes).detach()  # [N, G]
        alignment_metrics = pred_scores[:, gt_labels]**alpha * overlaps_all**beta

        pred_instances = BaseDataElement(bboxes=decode_bboxes, scores=pred_scores)
        gt_instances = BaseDataElement(bboxes=gt_bboxes, labels=gt_labels)
        cost = (self.cls_cost(pred_instances, gt_instances, img_meta) +
                self.reg_cost(pred_instances, gt_instances, img_meta) +
                self.iou_cost(pred_instances, gt_instances, img_meta))  # [N, G]

        num_gt, num_bboxes = gt_bboxes.size(0), pred_scores.size(0)
        assigned_gt_inds = pred_scores.new_zeros((num_bboxes, ), dtype=torch.long)
        if num_gt == 0:
            return AssignResult(0, assigned_gt_inds, None,
                                pred_scores.new_full((num_bboxes, ), -1, dtype=torch.long))

        topk = min(self.topk, num_bboxes // num_gt)
        # Column g * topk + j is the j-th copy of gt g.
        repeated_cost = cost[..., None].repeat(1, 1, topk).view(num_bboxes, -1)
        rows, cols = linear_sum_assignment(repeated_cost)
        matched_preds = torch.from_numpy(rows).to(pred_scores.device)
        matched_gts = torch.from_numpy(cols).to(pred_scores.device) // topk

        assigned_labels = assigned_gt_inds.new_full((num_bboxes, ), -1)
        if matched_preds.numel() > 0:
            assigned_labels[matched_preds] = gt_labels[matched_gts]
        else:
            assigned_labels = None  # as mmdetection, when nothing could be matched
        assigned_gt_inds[matched_preds] = matched_gts + 1

        overlaps = self.iou_calculator(decode_bboxes[matched_preds], gt_bboxes[matched_gts],
                                       is_aligned=True).detach()
        result = AssignResult(num_gt, assigned_gt_inds, overlaps, assigned_labels)
        result.assign_metrics = alignment_metrics[matched_preds, matched_gts]
        return result
