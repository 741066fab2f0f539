"""One-to-one matching of predictions to ground truths by minimum total cost (DETR)."""
from typing import List, Optional, Union

import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult


@TASK_UTILS.register_module()
class HungarianAssigner:
    """Match every ground truth to a distinct prediction, minimizing the summed cost.

    The cost of a (prediction, ground truth) pair is the sum of the ``match_costs``
    (e.g. class probability, normalized L1 and GIoU for DETR). The optimal one-to-one
    matching is solved with ``scipy.optimize.linear_sum_assignment``. Unmatched predictions
    are background: ``gt_inds`` is 0 for them and ``k + 1`` for a prediction matched to
    ground truth ``k``; nothing is ignored (-1).

    Args:
        match_costs (dict | list[dict]): Configs of the costs (registered in TASK_UTILS).

    Example:
        >>> assigner = HungarianAssigner([dict(type='ClassificationCost', weight=1.),
        ...                               dict(type='IoUCost', iou_mode='giou', weight=2.)])
    """

    def __init__(self, match_costs: Union[ConfigType, List[ConfigType]]) -> None:
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        if not isinstance(match_costs, (list, tuple)) or not match_costs:
            raise ValueError('HungarianAssigner: match_costs must be a cost config or a '
                             f'non-empty list of them, got {match_costs!r}.')
        self.match_costs = [TASK_UTILS.build(cfg) for cfg in match_costs]

    def assign(self, pred_instances: InstanceData, gt_instances: InstanceData,
               img_meta: Optional[dict] = None, **kwargs) -> AssignResult:
        """Match predictions to ground truths.

        Args:
            pred_instances (InstanceData): ``scores`` (class logits [N, C]) and ``bboxes``
                ([N, 4], (x1, y1, x2, y2) in pixels), as the match costs need.
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            img_meta (dict, optional): ``img_shape`` (h, w), used to normalize L1 costs.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 background, k+1 matched to gt k), ``labels`` [N]
            (-1 for background), ``max_overlaps`` None.

        Raises:
            ValueError: If there are more ground truths than predictions: a one-to-one
                matching could not give every ground truth a prediction.
        """
        gt_labels = gt_instances.labels
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        device = gt_labels.device
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full((num_preds, ), -1, dtype=torch.long, device=device)
        if num_gts > num_preds:
            raise ValueError(
                f'HungarianAssigner: {num_gts} ground-truth boxes but only {num_preds} '
                f'predictions (num_queries={num_preds}); one-to-one matching needs '
                'num_queries >= the number of ground truths per image. Increase the '
                "detector's num_queries or drop boxes from the annotations.")
        if num_gts == 0:
            return AssignResult(num_gts, gt_inds, None, labels)

        cost = sum(match_cost(pred_instances=pred_instances, gt_instances=gt_instances,
                              img_meta=img_meta) for match_cost in self.match_costs)
        cost = cost.detach().cpu().float()  # [num_preds, num_gts]
        if not torch.isfinite(cost).all():
            raise ValueError('HungarianAssigner: the matching cost has NaN/inf entries; the '
                             'predicted scores or boxes are not finite.')
        # imported here: scipy.optimize costs ~0.5 s to import, and only DETR-like
        # detectors ever match with it
        from scipy.optimize import linear_sum_assignment
        pred_idx, gt_idx = linear_sum_assignment(cost.numpy())
        pred_idx = torch.as_tensor(pred_idx, dtype=torch.long, device=device)
        gt_idx = torch.as_tensor(gt_idx, dtype=torch.long, device=device)
        gt_inds[pred_idx] = gt_idx + 1
        labels[pred_idx] = gt_labels[gt_idx]
        return AssignResult(num_gts, gt_inds, None, labels)
