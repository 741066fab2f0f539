"""Assigners: decide which prior is matched to which ground-truth box."""
from .assign_result import AssignResult
from .iou2d_calculator import BboxOverlaps2D
from .max_iou_assigner import MaxIoUAssigner

__all__ = ['AssignResult', 'BboxOverlaps2D', 'MaxIoUAssigner']

# DETR: one-to-one matching and its costs.
from .hungarian_assigner import HungarianAssigner  # noqa: E402
from .match_cost import BBoxL1Cost, ClassificationCost, IoUCost  # noqa: E402

__all__ += ['HungarianAssigner', 'BBoxL1Cost', 'ClassificationCost', 'IoUCost']
