"""Assigners: decide which prior is matched to which ground-truth box."""
from .assign_result import AssignResult
from .iou2d_calculator import BboxOverlaps2D
from .max_iou_assigner import MaxIoUAssigner

__all__ = ['AssignResult', 'BboxOverlaps2D', 'MaxIoUAssigner']
