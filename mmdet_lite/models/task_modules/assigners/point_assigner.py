"""PointAssigner (RepPoints): each gt takes its ``pos_num`` nearest points on its own level."""
from typing import Optional

import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from .assign_result import AssignResult
from .base_assigner import BaseAssigner


@TASK_UTILS.register_module()
class PointAssigner(BaseAssigner):
    """Assign each gt to the nearest points of the pyramid level matching its size.

    A point's level is ``int(log2(stride))``; a gt's level is
    ``int((log2(w / scale) + log2(h / scale)) / 2)`` (truncated toward zero, as
    mmdetection), clamped to the levels present. On its level, a gt takes the ``pos_num``
    points nearest to its center, distances measured in units of the gt's (w, h); a point
    claimed by several gts keeps the nearest one. Other points are negative (0); nothing
    is ignored.

    Args:
        scale (int): Gt size (in pixels) that maps to level 0 is ``scale`` times
            ``2 ** level``. Defaults to 4.
        pos_num (int): Positive points per gt. Defaults to 3.
    """

    def __init__(self, scale: int = 4, pos_num: int = 3) -> None:
        self.scale = scale
        self.pos_num = pos_num

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign gts to points.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 3 or 4] as (x, y, stride, ...).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): Not used.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, k + 1 for gt k), ``max_overlaps``
            None, ``labels`` [N] (-1 where not positive).
        """
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        points = pred_instances.priors
        num_points, num_gts = points.shape[0], gt_bboxes.shape[0]

        assigned_gt_inds = points.new_zeros((num_points, ), dtype=torch.long)
        assigned_labels = points.new_full((num_points, ), -1, dtype=torch.long)
        if num_gts == 0 or num_points == 0:
            return AssignResult(num_gts, assigned_gt_inds, None, assigned_labels)

        points_xy = points[:, :2]
        points_lvl = torch.log2(points[:, 2]).int()
        gt_xy = (gt_bboxes[:, :2] + gt_bboxes[:, 2:]) / 2
        gt_wh = (gt_bboxes[:, 2:] - gt_bboxes[:, :2]).clamp(min=1e-6)
        gt_lvl = ((torch.log2(gt_wh[:, 0] / self.scale) +
                   torch.log2(gt_wh[:, 1] / self.scale)) / 2).int()
        gt_lvl = gt_lvl.clamp(min=points_lvl.min(), max=points_lvl.max())

        assigned_dist = points.new_full((num_points, ), float('inf'))
        for idx in range(num_gts):
            on_level = torch.nonzero(points_lvl == gt_lvl[idx], as_tuple=True)[0]
            dist = ((points_xy[on_level] - gt_xy[idx]) / gt_wh[idx]).norm(dim=1)
            k = min(self.pos_num, dist.numel())
            nearest_dist, nearest = dist.topk(k, largest=False)
            nearest = on_level[nearest]
            # A point already held by a nearer gt stays with it.
            closer = nearest_dist < assigned_dist[nearest]
            assigned_gt_inds[nearest[closer]] = idx + 1
            assigned_dist[nearest[closer]] = nearest_dist[closer]

        pos_inds = torch.nonzero(assigned_gt_inds > 0, as_tuple=True)[0]
        assigned_labels[pos_inds] = gt_labels[assigned_gt_inds[pos_inds] - 1]
        return AssignResult(num_gts, assigned_gt_inds, None, assigned_labels)
