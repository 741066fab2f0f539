"""Detectors."""
from .base import BaseDetector
from .faster_rcnn import FasterRCNN
from .mask_rcnn import MaskRCNN
from .retinanet import RetinaNet
from .single_stage import SingleStageDetector
from .two_stage import TwoStageDetector

__all__ = [
    'BaseDetector', 'TwoStageDetector', 'FasterRCNN', 'MaskRCNN', 'SingleStageDetector',
    'RetinaNet'
]

# Detection transformers.
from .base_detr import DetectionTransformer  # noqa: E402
from .detr import DETR  # noqa: E402

__all__ += ['DetectionTransformer', 'DETR']
