"""Task modules: anchors, box coding, assignment and sampling (registered in TASK_UTILS)."""
from .assigners import AssignResult, BboxOverlaps2D, MaxIoUAssigner
from .coders import DeltaXYWHBBoxCoder
from .prior_generators import AnchorGenerator
from .samplers import BaseSampler, PseudoSampler, RandomSampler, SamplingResult

__all__ = [
    'AnchorGenerator', 'DeltaXYWHBBoxCoder', 'AssignResult', 'BboxOverlaps2D', 'MaxIoUAssigner',
    'BaseSampler', 'RandomSampler', 'PseudoSampler', 'SamplingResult'
]

# DETR: one-to-one matching and its costs.
from .assigners import (BBoxL1Cost, ClassificationCost, HungarianAssigner,  # noqa: E402
                        IoUCost)

__all__ += ['HungarianAssigner', 'BBoxL1Cost', 'ClassificationCost', 'IoUCost']
