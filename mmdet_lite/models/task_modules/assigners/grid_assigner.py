"""GridAssigner (YOLOv3): MaxIoU-like assignment restricted to each gt's responsible cell."""
from typing import Optional, Tuple, Union

import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import AssignerError, BaseAssigner


@TASK_UTILS.register_module()
class GridAssigner(BaseAssigner):
    """Assign gts to priors by IoU, positives only among "responsible" priors.

    Steps: every prior starts ignored (-1); priors whose best IoU (over all priors' gts)
    is in ``[0, neg_iou_thr]`` (or ``(lo, hi]`` for a pair) become negative (0). Then,
    among the responsible priors only (``pred_instances.responsible_flags``, the priors of
    the grid cell holding a gt center): best IoU > ``pos_iou_thr`` makes a positive, and
    every gt claims its best responsible prior(s) when that IoU > ``min_pos_iou``. Note
    the comparisons: unlike ``MaxIoUAssigner`` they are strict for positives and
    inclusive for the negative upper bound, as in mmdetection.

    Args:
        pos_iou_thr (float): IoU above which a responsible prior is positive.
        neg_iou_thr (float | tuple[float, float]): Negative upper bound, or ``(lo, hi]``.
        min_pos_iou (float): A gt claims its best prior only above this IoU.
            Defaults to 0.
        gt_max_assign_all (bool): A gt claims all responsible priors tied at its maximum.
            Defaults to True.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
    """

    def __init__(self,
                 pos_iou_thr: float,
                 neg_iou_thr: Union[float, Tuple[float, float]],
                 min_pos_iou: float = .0,
                 gt_max_assign_all: bool = True,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.gt_max_assign_all = gt_max_assign_all
        self.iou_calculator = TASK_UTILS.build(iou_calculator)

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign gts to priors.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4] and ``responsible_flags`` [N]
                (bool or 0/1).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): Not used.

        Returns:
            AssignResult: ``gt_inds`` [N] (-1 ignored, 0 negative, k + 1 for gt k),
            ``max_overlaps`` [N] (best IoU over the responsible priors' view: -1 for
            priors that are not responsible), ``labels`` [N] (-1 where not positive).
        """
        gt_bboxes = gt_instances.bboxes
        gt_labels = gt_instances.labels
        priors = pred_instances.priors
        responsible = pred_instances.responsible_flags.bool()
        num_gts, num_priors = len(gt_bboxes), priors.size(0)

        overlaps = self.iou_calculator(gt_bboxes, priors)  # [G, N]
        assigned_gt_inds = overlaps.new_full((num_priors, ), -1, dtype=torch.long)
        if num_gts == 0 or num_priors == 0:
            if num_gts == 0:
                assigned_gt_inds[:] = 0
            return AssignResult(num_gts, assigned_gt_inds, overlaps.new_zeros((num_priors, )),
                                overlaps.new_full((num_priors, ), -1, dtype=torch.long))

        # Negatives are judged on the IoU with all gts, before restricting to responsible.
        max_overlaps = overlaps.max(dim=0).values
        thr = self.neg_iou_thr
        if isinstance(thr, (tuple, list)):
            if len(thr) != 2:
                raise AssignerError('GridAssigner: neg_iou_thr as a range must be (lo, hi), '
                                    f'got {thr!r}.')
            assigned_gt_inds[(max_overlaps > thr[0]) & (max_overlaps <= thr[1])] = 0
        elif isinstance(thr, (int, float)) and not isinstance(thr, bool):
            assigned_gt_inds[(max_overlaps >= 0) & (max_overlaps <= thr)] = 0

        overlaps[:, ~responsible] = -1.
        max_overlaps, argmax_overlaps = overlaps.max(dim=0)
        gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)

        positive = (max_overlaps > self.pos_iou_thr) & responsible
        assigned_gt_inds[positive] = argmax_overlaps[positive] + 1

        for i in range(num_gts):  # later gts win ties, as the loop overwrites
            if gt_max_overlaps[i] <= self.min_pos_iou:
                continue
            if self.gt_max_assign_all:
                assigned_gt_inds[(overlaps[i, :] == gt_max_overlaps[i]) & responsible] = i + 1
            elif responsible[gt_argmax_overlaps[i]]:
                assigned_gt_inds[gt_argmax_overlaps[i]] = i + 1

        assigned_labels = assigned_gt_inds.new_full((num_priors, ), -1)
        pos_inds = torch.nonzero(assigned_gt_inds > 0, as_tuple=True)[0]
        assigned_labels[pos_inds] = gt_labels[assigned_gt_inds[pos_inds] - 1]
        return AssignResult(num_gts, assigned_gt_inds, max_overlaps, assigned_labels)
