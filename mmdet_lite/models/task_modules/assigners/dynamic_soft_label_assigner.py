"""Dynamic soft label assignment (RTMDet): SimOTA-style matching with a soft-label cost."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import BaseAssigner
from .sim_ota_assigner import dynamic_k_matching

INF = 100000000  # max_overlaps of unmatched priors is -INF (as in mmdetection)
EPS = 1.0e-7


def center_of_mass(masks: Tensor, eps: float = 1e-7) -> Tensor:
    """Center of mass (x, y) of each mask.

    Args:
        masks (Tensor): Masks [N, H, W].
        eps (float): Lower bound of the mass (empty masks give (0, 0)).

    Returns:
        Tensor: Centers [N, 2], (x, y) in pixels.
    """
    _, h, w = masks.shape
    rows = torch.arange(h, device=masks.device)[:, None]
    cols = torch.arange(w, device=masks.device)
    mass = masks.sum(dim=(1, 2)).float().clamp(min=eps)
    center_y = (masks * rows).sum(dim=(1, 2)) / mass
    center_x = (masks * cols).sum(dim=(1, 2)) / mass
    return torch.stack([center_x, center_y], dim=1)


@TASK_UTILS.register_module()
class DynamicSoftLabelAssigner(BaseAssigner):
    """Assign with RTMDet's cost: soft-label classification, IoU and a soft center prior.

    Candidates are the priors whose point lies inside a gt box. For each (candidate, gt):
    the soft label is ``one_hot(label) * IoU``; the class cost is
    ``BCE_with_logits(scores, soft_label) * |soft_label - sigmoid(scores)| ** 2`` summed
    over classes; the IoU cost is ``-log(IoU + 1e-7) * iou_weight``; the center prior is
    ``10 ** (distance / stride - soft_center_radius)``, the distance from the prior point to
    the gt center (mask center of mass when the gts have ``masks``). Gts then take their
    ``k`` cheapest candidates (:func:`dynamic_k_matching`, ``k`` from the top ``topk`` IoUs).
    Unmatched priors are negative (0); ``max_overlaps`` is the IoU with the matched gt, -1e8
    for unmatched priors.

    Args:
        soft_center_radius (float): Radius of the soft center prior. Defaults to 3.0.
        topk (int): Top IoUs summed into the dynamic k. Defaults to 13.
        iou_weight (float): Weight of the IoU cost. Defaults to 3.0.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
    """

    def __init__(self,
                 soft_center_radius: float = 3.0,
                 topk: int = 13,
                 iou_weight: float = 3.0,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        self.soft_center_radius = soft_center_radius
        self.topk = topk
        self.iou_weight = iou_weight
        self.iou_calculator = TASK_UTILS.build(iou_calculator)

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign gts to priors.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4] as (x, y, stride, stride),
                ``bboxes`` [N, 4] decoded predictions and ``scores`` [N, C] class logits.
            gt_instances (InstanceData): ``bboxes`` [G, 4] (tensor or box object),
                ``labels`` [G], optionally ``masks`` [G, H, W].
            gt_instances_ignore (InstanceData, optional): Not used.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, k + 1 for gt k), ``max_overlaps``
            [N], ``labels`` [N] (-1 where not positive).
        """
        gt_bboxes = gt_instances.bboxes
        gt_labels = gt_instances.labels
        num_gt = len(gt_bboxes)
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

        prior_center = priors[:, :2]
        if isinstance(gt_bboxes, BaseBoxes):
            # Box objects count their borders as inside, as mmdetection's do.
            is_in_gts = gt_bboxes.find_inside_points(prior_center)
        else:
            deltas = torch.cat([prior_center[:, None] - gt_bboxes[:, :2],
                                gt_bboxes[:, 2:] - prior_center[:, None]], dim=-1)
            is_in_gts = deltas.min(dim=-1).values > 0
        valid_mask = is_in_gts.any(dim=1)
        valid_decoded_bbox = decoded_bboxes[valid_mask]
        valid_pred_scores = pred_scores[valid_mask]
        num_valid = valid_decoded_bbox.size(0)
        if num_valid == 0:
            return empty_result

        if 'masks' in gt_instances:
            masks = gt_instances.masks
            if hasattr(masks, 'to_tensor'):  # BitmapMasks and the like
                masks = masks.to_tensor(dtype=torch.float32, device=priors.device)
            gt_center = center_of_mass(masks, eps=EPS)
        elif isinstance(gt_bboxes, BaseBoxes):
            gt_center = gt_bboxes.centers
        else:
            gt_center = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) / 2.0
        valid_prior = priors[valid_mask]
        distance = (valid_prior[:, None, :2] - gt_center[None, :, :]).pow(2).sum(-1).sqrt()
        distance = distance / valid_prior[:, 2:3]  # in strides
        soft_center_prior = torch.pow(10, distance - self.soft_center_radius)

        pairwise_ious = self.iou_calculator(valid_decoded_bbox, gt_bboxes)  # [V, G]
        iou_cost = -torch.log(pairwise_ious + EPS) * self.iou_weight

        gt_onehot = F.one_hot(gt_labels.to(torch.int64), pred_scores.shape[-1]).float()
        logits = valid_pred_scores[:, None, :].expand(-1, num_gt, -1)  # [V, G, C]
        soft_label = gt_onehot[None] * pairwise_ious[..., None]
        scale = (soft_label - logits.sigmoid()).abs().pow(2.0)
        soft_cls_cost = (F.binary_cross_entropy_with_logits(logits, soft_label,
                                                            reduction='none') * scale).sum(-1)

        cost_matrix = soft_cls_cost + iou_cost + soft_center_prior
        matched_pred_ious, matched_gt_inds = self.dynamic_k_matching(
            cost_matrix, pairwise_ious, num_gt, valid_mask)

        assigned_gt_inds[valid_mask] = matched_gt_inds + 1
        assigned_labels = assigned_gt_inds.new_full((num_bboxes, ), -1)
        assigned_labels[valid_mask] = gt_labels[matched_gt_inds].long()
        max_overlaps = assigned_gt_inds.new_full((num_bboxes, ), -INF, dtype=torch.float32)
        max_overlaps[valid_mask] = matched_pred_ious.to(max_overlaps.dtype)
        return AssignResult(num_gt, assigned_gt_inds, max_overlaps, assigned_labels)

    def dynamic_k_matching(self, cost: Tensor, pairwise_ious: Tensor, num_gt: int,
                           valid_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """:func:`dynamic_k_matching` with ``candidate_topk = self.topk``."""
        return dynamic_k_matching(cost, pairwise_ious, num_gt, valid_mask, self.topk)
