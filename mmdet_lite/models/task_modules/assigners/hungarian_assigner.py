"""One-to-one matching of predictions to ground truths by minimum total cost (DETR)."""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import AssignerError, BaseAssigner


def linear_sum_assignment(cost: Tensor):
    """``scipy.optimize.linear_sum_assignment`` of a [rows, cols] cost (any device/dtype).

    Imported when first needed: scipy.optimize takes ~0.5 s to import and only the
    query-based detectors match with it.

    Returns:
        tuple[np.ndarray, np.ndarray]: Matched row and column indices.
    """
    from scipy.optimize import linear_sum_assignment as _solve
    return _solve(cost.detach().cpu().float().numpy())


@TASK_UTILS.register_module()
class HungarianAssigner(BaseAssigner):
    """Match ground truths and predictions one to one, minimizing the summed cost.

    The cost of a (prediction, ground truth) pair is the sum of the ``match_costs``
    (e.g. class probability, normalized L1 and GIoU for DETR). The optimal matching is
    solved with ``scipy.optimize.linear_sum_assignment``: with more predictions than
    ground truths every ground truth gets one prediction; with more ground truths than
    predictions every prediction gets one ground truth and the other ground truths stay
    unmatched. Unmatched predictions are background: ``gt_inds`` is 0 for them and
    ``k + 1`` for a prediction matched to ground truth ``k``; nothing is ignored (-1).

    Args:
        match_costs (dict | list[dict] | tuple[dict]): Configs of the costs (registered in
            TASK_UTILS). A list must not be empty (as mmdetection asserts).

    Example:
        >>> assigner = HungarianAssigner([dict(type='ClassificationCost', weight=1.),
        ...                               dict(type='IoUCost', iou_mode='giou', weight=2.)])
    """

    def __init__(self, match_costs: Union[ConfigType, List[ConfigType],
                                          Sequence[ConfigType]]) -> None:
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        elif isinstance(match_costs, list) and len(match_costs) == 0:
            raise AssignerError('HungarianAssigner: match_costs must be a cost config or a '
                                'non-empty list of them, got an empty list.')
        self.match_costs = [TASK_UTILS.build(cfg) for cfg in match_costs]

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: Optional[dict] = None,
               **kwargs) -> AssignResult:
        """Match predictions to ground truths.

        Args:
            pred_instances (InstanceData): The fields the costs read, e.g. ``scores``
                (class logits [N, C]) and ``bboxes`` ([N, 4], (x1, y1, x2, y2) in pixels).
            gt_instances (InstanceData): ``labels`` [G] (a tensor) and the fields the costs
                read, e.g. ``bboxes`` [G, 4].
            img_meta (dict, optional): ``img_shape`` (h, w), used to normalize L1 costs.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 background, k+1 matched to gt k), ``labels`` [N]
            (-1 for background), ``max_overlaps`` None.
        """
        gt_labels = gt_instances.labels
        if not isinstance(gt_labels, Tensor):
            raise AssignerError('HungarianAssigner: gt_instances.labels must be a Tensor, '
                                f'got {type(gt_labels).__name__}.')
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        device = gt_labels.device
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full((num_preds, ), -1, dtype=torch.long, device=device)
        if num_gts == 0 or num_preds == 0:  # nothing to match: all background
            return AssignResult(num_gts, gt_inds, None, labels)

        costs = [match_cost(pred_instances=pred_instances, gt_instances=gt_instances,
                            img_meta=img_meta) for match_cost in self.match_costs]
        cost = torch.stack(costs).sum(dim=0)  # [num_preds, num_gts]
        if torch.isnan(cost).any() or torch.isneginf(cost).any():
            # scipy rejects these too (ValueError); say where they come from.
            raise ValueError('HungarianAssigner: the matching cost has NaN/inf entries; the '
                             'predicted scores or boxes are not finite.')
        pred_idx, gt_idx = linear_sum_assignment(cost)
        pred_idx = torch.as_tensor(pred_idx, dtype=torch.long, device=device)
        gt_idx = torch.as_tensor(gt_idx, dtype=torch.long, device=device)
        gt_inds[pred_idx] = gt_idx + 1
        labels[pred_idx] = gt_labels[gt_idx]
        return AssignResult(num_gts, gt_inds, None, labels)
