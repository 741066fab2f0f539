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

# Deformable DETR.
from .deformable_detr import DeformableDETR  # noqa: E402

__all__ += ['DeformableDETR']

# Conditional DETR and DAB-DETR.
from .conditional_detr import ConditionalDETR  # noqa: E402
from .dab_detr import DABDETR  # noqa: E402

__all__ += ['ConditionalDETR', 'DABDETR']

# DINO.
from .dino import DINO  # noqa: E402

__all__ += ['DINO']

# YOLOX.
from .yolox import YOLOX  # noqa: E402

__all__ += ['YOLOX']

# RTMDet.
from .rtmdet import RTMDet  # noqa: E402

__all__ += ['RTMDet']
