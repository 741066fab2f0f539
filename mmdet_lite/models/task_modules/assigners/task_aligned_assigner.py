"""Task-aligned assignment (TOOD): rank priors by score ** alpha * IoU ** beta."""
from typing import Optional

import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import AssignerError, BaseAssigner

INF = 100000000  # marks "not a positive"; also max_overlaps of unassigned priors


@TASK_UTILS.register_module()
class TaskAlignedAssigner(BaseAssigner):
    """Assign each gt its ``topk`` best-aligned predictions whose prior center is inside it.

    The alignment metric of a (prediction, gt) pair is ``score[gt label] ** alpha *
    IoU(pred box, gt) ** beta``. A gt's ``topk`` predictions of highest metric are positive
    when the metric is > 0 and the prior center lies inside the gt by more than 0.01 px; a
    prediction positive for several gts goes to the one with the highest IoU. Others are
    negative (0); nothing is ignored. ``max_overlaps`` is the IoU with the assigned gt
    (-1e8 elsewhere) and the result also carries ``assign_metrics`` [N] (the metric of the
    assigned pair, 0 elsewhere) as an attribute.

    Args:
        topk (int): Positives considered per gt (>= 1).
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
    """

    def __init__(self,
                 topk: int,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        if not topk >= 1:
            raise AssignerError(f'{type(self).__name__}: topk must be >= 1, got {topk!r}.')
        self.topk = topk
        self.iou_calculator = TASK_UTILS.build(iou_calculator)

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               alpha: int = 1,
               beta: int = 6) -> AssignResult:
        """Assign gts to predictions.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4] (extra columns dropped),
                ``bboxes`` [N, 4] decoded predictions and ``scores`` [N, C] probabilities.
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): Not used.
            alpha (int): Exponent of the score. Defaults to 1.
            beta (int): Exponent of the IoU. Defaults to 6.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, k + 1 for gt k), ``max_overlaps``
            [N], ``labels`` [N] (-1 where not positive) and ``assign_metrics`` [N].
        """
        priors = pred_instances.priors[:, :4]
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        num_gt, num_bboxes = gt_bboxes.size(0), priors.size(0)
        overlaps = self.iou_calculator(pred_instances.bboxes, gt_bboxes).detach()  # [N, G]
        bbox_scores = pred_instances.scores[:, gt_labels].detach()  # [N, G]
        assigned_gt_inds = priors.new_zeros((num_bboxes, ), dtype=torch.long)
        assign_metrics = priors.new_zeros((num_bboxes, ))

        if num_gt == 0 or num_bboxes == 0:
            result = AssignResult(num_gt, assigned_gt_inds, priors.new_zeros((num_bboxes, )),
                                  priors.new_full((num_bboxes, ), -1, dtype=torch.long))
            result.assign_metrics = assign_metrics
            return result

        alignment_metrics = bbox_scores**alpha * overlaps**beta
        topk = min(self.topk, num_bboxes)
        candidate_idxs = alignment_metrics.topk(topk, dim=0, largest=True).indices  # [k, G]
        gt_cols = torch.arange(num_gt, device=priors.device).expand_as(candidate_idxs)
        is_pos = alignment_metrics[candidate_idxs, gt_cols] > 0

        centers = (priors[:, :2] + priors[:, 2:4]) / 2.0
        cand_x, cand_y = centers[candidate_idxs, 0], centers[candidate_idxs, 1]  # [k, G]
        margins = torch.stack([cand_x - gt_bboxes[:, 0], cand_y - gt_bboxes[:, 1],
                               gt_bboxes[:, 2] - cand_x, gt_bboxes[:, 3] - cand_y])
        is_pos &= margins.min(dim=0).values > 0.01

        pos_overlaps = torch.full_like(overlaps, -INF)
        pos_rows, pos_cols = candidate_idxs[is_pos], gt_cols[is_pos]
        pos_overlaps[pos_rows, pos_cols] = overlaps[pos_rows, pos_cols]
        max_overlaps, argmax_overlaps = pos_overlaps.max(dim=1)
        assigned = max_overlaps != -INF
        assigned_gt_inds[assigned] = argmax_overlaps[assigned] + 1
        assign_metrics[assigned] = alignment_metrics[assigned, argmax_overlaps[assigned]]

        assigned_labels = assigned_gt_inds.new_full((num_bboxes, ), -1)
        pos_inds = torch.nonzero(assigned_gt_inds > 0, as_tuple=True)[0]
        assigned_labels[pos_inds] = gt_labels[assigned_gt_inds[pos_inds] - 1]
        result = AssignResult(num_gt, assigned_gt_inds, max_overlaps, assigned_labels)
        result.assign_metrics = assign_metrics
        return result
