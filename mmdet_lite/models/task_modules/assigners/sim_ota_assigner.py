"""SimOTA (YOLOX): cost-based assignment with a dynamic number of positives per gt."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import BaseAssigner

INF = 100000.0  # cost of a prior outside a gt's box-and-center area; max_overlaps filler
EPS = 1.0e-7


def dynamic_k_matching(cost: Tensor, pairwise_ious: Tensor, num_gt: int, valid_mask: Tensor,
                       candidate_topk: int) -> Tuple[Tensor, Tensor]:
    """Give each gt its ``k`` cheapest candidates, ``k`` from the sum of its top IoUs.

    For every gt, ``k = max(1, int(sum of its candidate_topk largest IoUs))``; it takes the
    ``k`` candidates of lowest cost. A candidate taken by several gts keeps the cheapest.

    Args:
        cost (Tensor): Cost [V, G] of the V valid (candidate) priors.
        pairwise_ious (Tensor): IoU [V, G] of their predicted boxes with the gts.
        num_gt (int): G.
        valid_mask (Tensor): Bool [N] marking the V candidates among all N priors. Updated
            in place to mark the matched priors only.
        candidate_topk (int): How many top IoUs are summed into ``k``.

    Returns:
        tuple[Tensor, Tensor]: IoU with the matched gt and index of the matched gt, each [P]
        for the P matched priors (in prior order).
    """
    matching = torch.zeros_like(cost, dtype=torch.uint8)
    topk = min(candidate_topk, pairwise_ious.size(0))
    topk_ious = pairwise_ious.topk(topk, dim=0).values
    dynamic_ks = topk_ious.sum(0).int().clamp(min=1)
    for gt_idx in range(num_gt):
        cheapest = cost[:, gt_idx].topk(int(dynamic_ks[gt_idx]), largest=False).indices
        matching[cheapest, gt_idx] = 1

    shared = matching.sum(1) > 1
    if shared.any():
        cheapest_gt = cost[shared, :].argmin(dim=1)
        matching[shared, :] = 0
        matching[shared, cheapest_gt] = 1
    matched = matching.sum(1) > 0
    valid_mask[valid_mask.clone()] = matched

    matched_gt_inds = matching[matched, :].argmax(1)
    matched_pred_ious = (matching * pairwise_ious).sum(1)[matched]
    return matched_pred_ious, matched_gt_inds


@TASK_UTILS.register_module()
class SimOTAAssigner(BaseAssigner):
    """Assign by SimOTA's cost: class BCE plus ``-log(IoU)``, inside a center prior.

    Candidates are the priors whose point lies inside some gt box or inside some gt's
    center square (half size ``center_radius * stride``). The cost of a (candidate, gt)
    pair is ``cls_weight * BCE(scores, one_hot(label))`` summed over classes,
    ``+ iou_weight * -log(IoU + 1e-7)``, ``+ 1e5`` unless the point is in both the gt box
    and its center square. Each gt then takes its ``k`` cheapest candidates by
    :func:`dynamic_k_matching`. Unmatched priors are negative (0); nothing is ignored;
    ``max_overlaps`` is the IoU with the matched gt, -1e5 for unmatched priors.

    Args:
        center_radius (float): Half size of the center square, in strides.
            Defaults to 2.5.
        candidate_topk (int): Top IoUs summed into the dynamic k. Defaults to 10.
        iou_weight (float): Weight of the IoU cost. Defaults to 3.0.
        cls_weight (float): Weight of the class cost. Defaults to 1.0.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
    """

    def __init__(self,
                 center_radius: float = 2.5,
                 candidate_topk: int = 10,
                 iou_weight: float = 3.0,
                 cls_weight: float = 1.0,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        self.center_radius = center_radius
        self.candidate_topk = candidate_topk
        self.iou_weight = iou_weight
        self.cls_weight = cls_weight
        self.iou_calculator = TASK_UTILS.build(iou_calculator)

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign gts to priors.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4] as (x, y, stride_w, stride_h),
                ``bboxes`` [N, 4] decoded predictions (x1, y1, x2, y2) and ``scores``
                [N, C] class probabilities (already sigmoid-ed, e.g. times objectness).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): Not used.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, k + 1 for gt k), ``max_overlaps``
            [N], ``labels`` [N] (-1 where not positive).
        """
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        num_gt = gt_bboxes.size(0)
        decoded_bboxes = pred_instances.bboxes
        pred_scores = pred_instances.scores
        priors = pred_instances.priors
        num_bboxes = decoded_bboxes.size(0)

        assigned_gt_inds = decoded_bboxes.new_zeros((num_bboxes, ), dtype=torch.long)
        empty_result = AssignResult(
            num_gt, assigned_gt_inds, decoded_bboxes.new_zeros((num_bboxes, )),
            decoded_bboxes.new_full((num_bboxes, ), -1, dtype=torch.long))
        if num_gt == 0 or num_bboxes == 0:
            return empty_result

        valid_mask, is_in_boxes_and_center = self.get_in_gt_and_in_center_info(
            priors, gt_bboxes)
        valid_decoded_bbox = decoded_bboxes[valid_mask]
        valid_pred_scores = pred_scores[valid_mask]
        num_valid = valid_decoded_bbox.size(0)
        if num_valid == 0:
            return empty_result

        pairwise_ious = self.iou_calculator(valid_decoded_bbox, gt_bboxes)  # [V, G]
        iou_cost = -torch.log(pairwise_ious + EPS)
        gt_onehot = F.one_hot(gt_labels.to(torch.int64), pred_scores.shape[-1]).float()
        # BCE of every (candidate, gt) pair, summed over classes; fp32 for stability.
        with torch.autocast(device_type=valid_pred_scores.device.type, enabled=False):
            scores = valid_pred_scores.float()[:, None, :].expand(-1, num_gt, -1)
            cls_cost = F.binary_cross_entropy(
                scores, gt_onehot[None].expand(num_valid, -1, -1),
                reduction='none').sum(-1).to(valid_pred_scores.dtype)

        cost_matrix = (cls_cost * self.cls_weight + iou_cost * self.iou_weight +
                       (~is_in_boxes_and_center) * INF)
        matched_pred_ious, matched_gt_inds = self.dynamic_k_matching(
            cost_matrix, pairwise_ious, num_gt, valid_mask)

        assigned_gt_inds[valid_mask] = matched_gt_inds + 1
        assigned_labels = assigned_gt_inds.new_full((num_bboxes, ), -1)
        assigned_labels[valid_mask] = gt_labels[matched_gt_inds].long()
        max_overlaps = assigned_gt_inds.new_full((num_bboxes, ), -INF, dtype=torch.float32)
        max_overlaps[valid_mask] = matched_pred_ious.to(max_overlaps.dtype)
        return AssignResult(num_gt, assigned_gt_inds, max_overlaps, assigned_labels)

    def get_in_gt_and_in_center_info(self, priors: Tensor,
                                     gt_bboxes: Tensor) -> Tuple[Tensor, Tensor]:
        """Which prior points lie in gt boxes and in gt center squares.

        Args:
            priors (Tensor): [N, 4] as (x, y, stride_w, stride_h).
            gt_bboxes (Tensor): [G, 4].

        Returns:
            tuple[Tensor, Tensor]: Bool [N], the point is in any gt box or any center square
            (the candidates); bool [V, G] for the V candidates, the point is in that gt's
            box and in its center square.
        """
        x, y = priors[:, 0:1], priors[:, 1:2]  # [N, 1]
        stride_x, stride_y = priors[:, 2:3], priors[:, 3:4]
        in_box = torch.stack([x - gt_bboxes[:, 0], y - gt_bboxes[:, 1],
                              gt_bboxes[:, 2] - x, gt_bboxes[:, 3] - y]).min(0).values > 0

        gt_cx = (gt_bboxes[:, 0] + gt_bboxes[:, 2]) / 2.0
        gt_cy = (gt_bboxes[:, 1] + gt_bboxes[:, 3]) / 2.0
        half_w, half_h = self.center_radius * stride_x, self.center_radius * stride_y
        in_center = torch.stack([x - (gt_cx - half_w), y - (gt_cy - half_h),
                                 (gt_cx + half_w) - x, (gt_cy + half_h) - y]).min(0).values > 0

        candidates = in_box.any(dim=1) | in_center.any(dim=1)
        return candidates, in_box[candidates] & in_center[candidates]

    def dynamic_k_matching(self, cost: Tensor, pairwise_ious: Tensor, num_gt: int,
                           valid_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """:func:`dynamic_k_matching` with this assigner's ``candidate_topk``."""
        return dynamic_k_matching(cost, pairwise_ious, num_gt, valid_mask, self.candidate_topk)
