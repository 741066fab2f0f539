"""Detectors."""
from .base import BaseDetector
from .faster_rcnn import FasterRCNN
from .mask_rcnn import MaskRCNN
from .two_stage import TwoStageDetector

__all__ = ['BaseDetector', 'TwoStageDetector', 'FasterRCNN', 'MaskRCNN']
