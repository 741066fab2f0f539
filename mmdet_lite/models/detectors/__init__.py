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

# Fast R-CNN, RPN as a detector and Mask Scoring R-CNN.
from .fast_rcnn import FastRCNN  # noqa: E402
from .mask_scoring_rcnn import MaskScoringRCNN  # noqa: E402
from .rpn import RPN  # noqa: E402

__all__ += ['FastRCNN', 'MaskScoringRCNN', 'RPN']

# Cascade R-CNN.
from .cascade_rcnn import CascadeRCNN  # noqa: E402

__all__ += ['CascadeRCNN']

# FCOS.
from .fcos import FCOS  # noqa: E402

__all__ += ['FCOS']

# YOLOv3 and YOLOF.
from .yolo import YOLOV3  # noqa: E402
from .yolof import YOLOF  # noqa: E402

__all__ += ['YOLOV3', 'YOLOF']

# ATSS and GFL.
from .atss import ATSS  # noqa: E402
from .gfl import GFL  # noqa: E402

__all__ += ['ATSS', 'GFL']

# CenterNet and AutoAssign.
from .autoassign import AutoAssign  # noqa: E402
from .centernet import CenterNet  # noqa: E402

__all__ += ['AutoAssign', 'CenterNet']

# Single-stage instance segmentors: SOLO and SOLOv2.
from .single_stage_instance_seg import SingleStageInstanceSegmentor  # noqa: E402
from .solo import SOLO  # noqa: E402
from .solov2 import SOLOv2  # noqa: E402

__all__ += ['SingleStageInstanceSegmentor', 'SOLO', 'SOLOv2']

# CondInst.
from .condinst import CondInst  # noqa: E402

__all__ += ['CondInst']

# Grid R-CNN.
from .grid_rcnn import GridRCNN  # noqa: E402

__all__ += ['GridRCNN']

# PAA.
from .paa import PAA  # noqa: E402

__all__ += ['PAA']

# TOOD and VFNet.
from .tood import TOOD  # noqa: E402
from .vfnet import VFNet  # noqa: E402

__all__ += ['TOOD', 'VFNet']
