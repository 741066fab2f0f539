"""Assigners: decide which prior is matched to which ground-truth box, and the pairwise
matching costs of the query-based assigners (as mmdetection 3.3's ``assigners`` package)."""
from .approx_max_iou_assigner import ApproxMaxIoUAssigner
from .assign_result import AssignResult
from .atss_assigner import ATSSAssigner
from .base_assigner import AssignerError, BaseAssigner
from .center_region_assigner import CenterRegionAssigner
from .dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from .grid_assigner import GridAssigner
from .hungarian_assigner import HungarianAssigner
from .iou2d_calculator import BboxOverlaps2D, BboxOverlaps2D_GLIP
from .match_cost import (BaseMatchCost, BBoxL1Cost, BinaryFocalLossCost, ClassificationCost,
                         CrossEntropyLossCost, DiceCost, FocalLossCost, IoUCost)
from .max_iou_assigner import MaxIoUAssigner
from .point_assigner import PointAssigner
from .region_assigner import RegionAssigner
from .sim_ota_assigner import SimOTAAssigner
from .task_aligned_assigner import TaskAlignedAssigner
from .topk_hungarian_assigner import TopkHungarianAssigner
from .uniform_assigner import UniformAssigner

__all__ = [
    'BaseAssigner', 'AssignerError', 'AssignResult', 'BboxOverlaps2D', 'BboxOverlaps2D_GLIP',
    'MaxIoUAssigner', 'ApproxMaxIoUAssigner', 'ATSSAssigner', 'CenterRegionAssigner',
    'DynamicSoftLabelAssigner', 'GridAssigner', 'HungarianAssigner', 'PointAssigner',
    'RegionAssigner', 'SimOTAAssigner', 'TaskAlignedAssigner', 'TopkHungarianAssigner',
    'UniformAssigner', 'BaseMatchCost', 'BBoxL1Cost', 'BinaryFocalLossCost',
    'ClassificationCost', 'CrossEntropyLossCost', 'DiceCost', 'FocalLossCost', 'IoUCost'
]
