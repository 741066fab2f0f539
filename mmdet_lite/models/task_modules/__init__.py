"""Task modules: anchors, box coding, assignment and sampling (registered in TASK_UTILS)."""
from .assigners import AssignResult, BboxOverlaps2D, MaxIoUAssigner
from .coders import DeltaXYWHBBoxCoder
from .prior_generators import AnchorGenerator
from .samplers import BaseSampler, PseudoSampler, RandomSampler, SamplingResult

__all__ = [
    'AnchorGenerator', 'DeltaXYWHBBoxCoder', 'AssignResult', 'BboxOverlaps2D', 'MaxIoUAssigner',
    'BaseSampler', 'RandomSampler', 'PseudoSampler', 'SamplingResult'
]
