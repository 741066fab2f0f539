"""ATSS: adaptive training sample selection (Zhang et al., 2020), and DDOD's cost variant."""
import warnings
from typing import List, Optional

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import AssignerError, BaseAssigner

# Marks "not a positive of this gt" in the overlap table; also what unassigned priors get as
# max_overlaps (as in mmdetection).
INF = 100000000


def bbox_center_distance(bboxes: Tensor, priors: Tensor) -> Tensor:
    """Euclidean distance between box centers and prior centers.

    Args:
        bboxes (Tensor): Boxes [G, 4], (x1, y1, x2, y2).
        priors (Tensor): Priors [N, 4], (x1, y1, x2, y2).

    Returns:
        Tensor: Distances [N, G].
    """
    box_centers = (bboxes[:, :2] + bboxes[:, 2:4]) / 2
    prior_centers = (priors[:, :2] + priors[:, 2:4]) / 2
    return (prior_centers[:, None, :] - box_centers[None, :, :]).pow(2).sum(-1).sqrt()


@TASK_UTILS.register_module()
class ATSSAssigner(BaseAssigner):
    """Pick positives per gt by an adaptive IoU threshold among its nearest priors.

    For each gt: on every pyramid level take the ``topk`` priors whose centers are nearest
    to the gt center; over these candidates the IoU threshold is mean + std (unbiased) of
    their IoUs; candidates with IoU >= threshold whose center lies inside the gt (by more
    than 0.01 px) are positive. A prior positive for several gts goes to the one it
    overlaps most. Results: ``gt_inds`` 0 for negatives, -1 for priors inside an ignored
    region that are not positive, ``k + 1`` for gt ``k``; ``max_overlaps`` is the IoU with
    the assigned gt and -1e8 for the others.

    With ``alpha`` set (DDOD), the "IoU" above is ``sigmoid(score) ** (1 - alpha) *
    IoU(pred box, gt) ** alpha``, computed from ``pred_instances.scores`` and
    ``pred_instances.bboxes``.

    Args:
        topk (int): Candidates per level and gt.
        alpha (float, optional): DDOD cost exponent; None for plain ATSS. Defaults to None.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
        ignore_iof_thr (float): Priors whose IoF with an ignored box exceeds this are ignored
            (negative disables). Defaults to -1.
    """

    def __init__(self,
                 topk: int,
                 alpha: Optional[float] = None,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D'),
                 ignore_iof_thr: float = -1) -> None:
        self.topk = topk
        self.alpha = alpha
        self.iou_calculator = TASK_UTILS.build(iou_calculator)
        self.ignore_iof_thr = ignore_iof_thr

    def _quality(self, pred_instances: InstanceData, priors: Tensor, gt_bboxes: Tensor,
                 gt_labels: Tensor) -> Tensor:
        """The [N, G] "overlap" table the selection ranks by (IoU, or DDOD's cost)."""
        message = ('ATSSAssigner: the cost-based (DDOD) assignment needs alpha together with '
                   'pred_instances.scores and pred_instances.bboxes; set all of them, or '
                   'none for plain ATSS.')
        if self.alpha is None:
            if 'scores' in pred_instances or 'bboxes' in pred_instances:
                warnings.warn(message)
            return self.iou_calculator(priors, gt_bboxes)
        if not ('scores' in pred_instances and 'bboxes' in pred_instances):
            raise AssignerError(message)
        cls_cost = torch.sigmoid(pred_instances.scores[:, gt_labels])
        overlaps = self.iou_calculator(pred_instances.bboxes, gt_bboxes)
        if cls_cost.shape != overlaps.shape:
            raise AssignerError(f'ATSSAssigner: class cost {tuple(cls_cost.shape)} and IoU '
                                f'{tuple(overlaps.shape)} tables differ in shape.')
        return cls_cost**(1 - self.alpha) * overlaps**self.alpha

    def assign(self,
               pred_instances: InstanceData,
               num_level_priors: List[int],
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None) -> AssignResult:
        """Assign gts to priors.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4] (extra columns dropped); with
                ``alpha``, also ``scores`` [N, C] (logits) and ``bboxes`` [N, 4].
            num_level_priors (list[int]): Number of priors of each level (sums to N).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): ``bboxes`` [K, 4] to ignore.

        Returns:
            AssignResult: ``gt_inds`` [N], ``max_overlaps`` [N], ``labels`` [N] (-1 where
            not positive).
        """
        priors = pred_instances.priors[:, :4]
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        num_gt, num_priors = gt_bboxes.size(0), priors.size(0)

        overlaps = self._quality(pred_instances, priors, gt_bboxes, gt_labels)  # [N, G]
        assigned_gt_inds = overlaps.new_zeros((num_priors, ), dtype=torch.long)
        if num_gt == 0 or num_priors == 0:
            return AssignResult(num_gt, assigned_gt_inds, overlaps.new_zeros((num_priors, )),
                                overlaps.new_full((num_priors, ), -1, dtype=torch.long))

        distances = bbox_center_distance(gt_bboxes, priors)  # [N, G]
        gt_bboxes_ignore = None if gt_instances_ignore is None else gt_instances_ignore.bboxes
        if (self.ignore_iof_thr > 0 and gt_bboxes_ignore is not None
                and gt_bboxes_ignore.numel() > 0):
            ignore_iof = self.iou_calculator(priors, gt_bboxes_ignore, mode='iof')  # [N, K]
            ignored = ignore_iof.max(dim=1).values > self.ignore_iof_thr
            distances[ignored, :] = INF  # never nearer than a non-ignored prior
            assigned_gt_inds[ignored] = -1

        # Per level, the topk priors nearest to each gt center: [sum_k, G] global indices.
        candidate_idxs = []
        start = 0
        for level_size in num_level_priors:
            level_dist = distances[start:start + level_size]
            k = min(self.topk, level_size)
            candidate_idxs.append(level_dist.topk(k, dim=0, largest=False).indices + start)
            start += level_size
        candidate_idxs = torch.cat(candidate_idxs, dim=0)

        gt_cols = torch.arange(num_gt, device=priors.device).expand_as(candidate_idxs)
        candidate_overlaps = overlaps[candidate_idxs, gt_cols]  # [sum_k, G]
        threshold = candidate_overlaps.mean(0) + candidate_overlaps.std(0)
        is_pos = candidate_overlaps >= threshold[None, :]

        # The candidate's center must lie inside the gt (anchor-free targets are distances).
        centers = (priors[:, :2] + priors[:, 2:4]) / 2
        cand_x, cand_y = centers[candidate_idxs, 0], centers[candidate_idxs, 1]  # [sum_k, G]
        margins = torch.stack([cand_x - gt_bboxes[:, 0], cand_y - gt_bboxes[:, 1],
                               gt_bboxes[:, 2] - cand_x, gt_bboxes[:, 3] - cand_y])
        is_pos &= margins.min(dim=0).values > 0.01

        # A prior positive for several gts goes to the gt it overlaps most.
        pos_overlaps = torch.full_like(overlaps, -INF)
        pos_rows, pos_cols = candidate_idxs[is_pos], gt_cols[is_pos]
        pos_overlaps[pos_rows, pos_cols] = overlaps[pos_rows, pos_cols]
        max_overlaps, argmax_overlaps = pos_overlaps.max(dim=1)
        assigned = max_overlaps != -INF
        assigned_gt_inds[assigned] = argmax_overlaps[assigned] + 1

        assigned_labels = assigned_gt_inds.new_full((num_priors, ), -1)
        pos_inds = torch.nonzero(assigned_gt_inds > 0, as_tuple=True)[0]
        assigned_labels[pos_inds] = gt_labels[assigned_gt_inds[pos_inds] - 1]
        return AssignResult(num_gt, assigned_gt_inds, max_overlaps, assigned_labels)
