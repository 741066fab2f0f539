"""UniformAssigner (YOLOF): every gt gets the same number of positives."""
from typing import Optional

import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import bbox_xyxy_to_cxcywh, get_box_tensor
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import BaseAssigner


@TASK_UTILS.register_module()
class UniformAssigner(BaseAssigner):
    """Give each gt its ``match_times`` nearest predictions and nearest priors.

    Nearness is the L1 distance of (cx, cy, w, h). Steps: every prediction starts
    negative (0); predictions whose best IoU with any gt exceeds ``neg_ignore_thr`` are
    ignored (-1); then, for each gt, its ``match_times`` nearest predicted boxes and
    ``match_times`` nearest priors become positive for it, or ignored (-1) when the prior's
    IoU with the gt is below ``pos_ignore_thr``. Ignored boxes are not considered.

    The result also carries, for the ``2 * match_times * G`` (prediction, gt) pairs
    (predicted-box matches of all gts first, then prior matches, gt index fastest), the
    extra properties ``pos_idx`` (bool, the pair was not ignored), ``pos_predicted_boxes``
    and ``target_boxes`` [2 * match_times * G, 4]. ``max_overlaps`` is each gt's best IoU
    with any prior, shape [G] (as in mmdetection).

    Args:
        pos_ignore_thr (float): Prior IoU below which a matched pair is ignored.
        neg_ignore_thr (float): Prediction IoU above which an unmatched prediction is
            ignored instead of negative.
        match_times (int): Matches per gt, from predictions and from priors each.
            Defaults to 4.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
    """

    def __init__(self,
                 pos_ignore_thr: float,
                 neg_ignore_thr: float,
                 match_times: int = 4,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        self.match_times = match_times
        self.pos_ignore_thr = pos_ignore_thr
        self.neg_ignore_thr = neg_ignore_thr
        self.iou_calculator = TASK_UTILS.build(iou_calculator)

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None) -> AssignResult:
        """Assign gts to predictions.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4] (anchors) and
                ``decoder_priors`` [N, 4] (the predicted boxes), both (x1, y1, x2, y2).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G] (or None).
            gt_instances_ignore (InstanceData, optional): Not used.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, -1 ignored, k + 1 for gt k),
            ``max_overlaps`` [G] (None without gts or predictions), ``labels`` [N] and the
            extra properties described above.
        """
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        priors = pred_instances.priors
        bbox_pred = pred_instances.decoder_priors
        num_gts, num_bboxes = gt_bboxes.size(0), bbox_pred.size(0)

        assigned_gt_inds = bbox_pred.new_zeros((num_bboxes, ), dtype=torch.long)
        if num_gts == 0 or num_bboxes == 0:
            result = AssignResult(num_gts, assigned_gt_inds, None,
                                  bbox_pred.new_full((num_bboxes, ), -1, dtype=torch.long))
            result.set_extra_property('pos_idx', bbox_pred.new_empty(0, dtype=torch.bool))
            result.set_extra_property('pos_predicted_boxes', bbox_pred.new_empty((0, 4)))
            result.set_extra_property('target_boxes', bbox_pred.new_empty((0, 4)))
            return result

        gt_cxcywh = bbox_xyxy_to_cxcywh(gt_bboxes)
        # The top-k runs on the CPU as in mmdetection (its tie order then matches).
        pred_cost = torch.cdist(bbox_xyxy_to_cxcywh(bbox_pred), gt_cxcywh, p=1).cpu()
        prior_cost = torch.cdist(bbox_xyxy_to_cxcywh(priors), gt_cxcywh, p=1).cpu()
        pred_nearest = pred_cost.topk(self.match_times, dim=0, largest=False).indices
        prior_nearest = prior_cost.topk(self.match_times, dim=0, largest=False).indices
        # [2 * match_times * G] prediction indices; the gt index runs fastest.
        indexes = torch.cat([pred_nearest, prior_nearest], dim=1).reshape(-1)
        indexes = indexes.to(bbox_pred.device)

        pred_overlaps = self.iou_calculator(bbox_pred, gt_bboxes)  # [N, G]
        anchor_overlaps = self.iou_calculator(priors, gt_bboxes)  # [N, G]
        anchor_max_overlaps = anchor_overlaps.max(dim=0).values  # [G]
        assigned_gt_inds[pred_overlaps.max(dim=1).values > self.neg_ignore_thr] = -1

        pos_gt_index = torch.arange(num_gts, device=bbox_pred.device).repeat(
            self.match_times * 2)
        pos_ignore_idx = anchor_overlaps[indexes, pos_gt_index] < self.pos_ignore_thr
        pos_gt_inds = pos_gt_index + 1
        pos_gt_inds[pos_ignore_idx] = -1
        assigned_gt_inds[indexes] = pos_gt_inds

        if gt_labels is not None:
            assigned_labels = assigned_gt_inds.new_full((num_bboxes, ), -1)
            pos_inds = torch.nonzero(assigned_gt_inds > 0, as_tuple=True)[0]
            assigned_labels[pos_inds] = gt_labels[assigned_gt_inds[pos_inds] - 1]
        else:
            assigned_labels = None

        result = AssignResult(num_gts, assigned_gt_inds, anchor_max_overlaps, assigned_labels)
        result.set_extra_property('pos_idx', ~pos_ignore_idx)
        result.set_extra_property('pos_predicted_boxes', bbox_pred[indexes])
        result.set_extra_property('target_boxes', gt_bboxes[pos_gt_index])
        return result
