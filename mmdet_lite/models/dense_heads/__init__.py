"""Dense heads: predict scores and boxes at every position of every feature level."""
from .anchor_head import AnchorHead
from .base_dense_head import BaseDenseHead
from .retina_head import RetinaHead
from .rpn_head import RPNHead

__all__ = ['BaseDenseHead', 'AnchorHead', 'RPNHead', 'RetinaHead']

# DETR head.
from .detr_head import DETRHead  # noqa: E402

__all__ += ['DETRHead']

# Deformable DETR head.
from .deformable_detr_head import DeformableDETRHead  # noqa: E402

__all__ += ['DeformableDETRHead']

# DINO head.
from .dino_head import DINOHead  # noqa: E402

__all__ += ['DINOHead']

# Conditional DETR and DAB-DETR heads.
from .conditional_detr_head import ConditionalDETRHead  # noqa: E402
from .dab_detr_head import DABDETRHead  # noqa: E402

__all__ += ['ConditionalDETRHead', 'DABDETRHead']

# YOLOX head.
from .yolox_head import YOLOXHead  # noqa: E402

__all__ += ['YOLOXHead']

# RTMDet heads. mmdetection defines RTMDetSepBNHead in rtmdet_head.py; here it has its own
# file (rtmdet_head.py is long enough) and is also made an attribute of rtmdet_head, so
# that mmdetection's import path ``...dense_heads.rtmdet_head.RTMDetSepBNHead`` works
# (importing any submodule runs this package file first).
from . import rtmdet_head as _rtmdet_head  # noqa: E402
from .rtmdet_head import RTMDetHead  # noqa: E402
from .rtmdet_sep_bn_head import RTMDetSepBNHead  # noqa: E402

_rtmdet_head.RTMDetSepBNHead = RTMDetSepBNHead

__all__ += ['RTMDetHead', 'RTMDetSepBNHead']

# RTMDet-Ins heads (dynamic mask kernels; MaskFeatModule in layers/rtmdet_ins_layers.py).
# As for RTMDetSepBNHead above: mmdetection defines RTMDetInsSepBNHead in rtmdet_ins_head.py;
# here it has its own file and is made an attribute (and a star-export) of rtmdet_ins_head,
# so that ``...dense_heads.rtmdet_ins_head.RTMDetInsSepBNHead`` works without a cycle.
from . import rtmdet_ins_head as _rtmdet_ins_head  # noqa: E402
from .rtmdet_ins_head import RTMDetInsHead  # noqa: E402
from .rtmdet_ins_sep_bn_head import RTMDetInsSepBNHead  # noqa: E402

_rtmdet_ins_head.RTMDetInsSepBNHead = RTMDetInsSepBNHead
_rtmdet_ins_head.__all__.append('RTMDetInsSepBNHead')

__all__ += ['RTMDetInsHead', 'RTMDetInsSepBNHead']

# SSD / SSDLite head.
from .ssd_head import SSDHead  # noqa: E402

__all__ += ['SSDHead']

# Anchor-free heads: the point-based base and FCOS.
from .anchor_free_head import AnchorFreeHead  # noqa: E402
from .fcos_head import FCOSHead  # noqa: E402

__all__ += ['AnchorFreeHead', 'FCOSHead']

# YOLOv3 and YOLOF heads.
from .yolo_head import YOLOV3Head  # noqa: E402
from .yolof_head import YOLOFHead  # noqa: E402

__all__ += ['YOLOV3Head', 'YOLOFHead']

# ATSS and GFL heads (GFL's Integral layer lives in gfl_head.py, as in mmdetection).
from .atss_head import ATSSHead  # noqa: E402
from .gfl_head import GFLHead  # noqa: E402

__all__ += ['ATSSHead', 'GFLHead']

# CenterNet-update (CenterNet2's one-stage CenterNet) and AutoAssign heads.
from .autoassign_head import AutoAssignHead  # noqa: E402
from .centernet_update_head import CenterNetUpdateHead  # noqa: E402

__all__ += ['AutoAssignHead', 'CenterNetUpdateHead']

# SOLO / SOLOv2 mask heads. mmdetection defines the decoupled SOLO heads in solo_head.py;
# here they have their own file and are made attributes of solo_head (as RTMDetSepBNHead
# above), so ``...dense_heads.solo_head.DecoupledSOLOHead`` works.
from . import solo_head as _solo_head  # noqa: E402
from .base_mask_head import BaseMaskHead  # noqa: E402
from .decoupled_solo_head import DecoupledSOLOHead, DecoupledSOLOLightHead  # noqa: E402
from .solo_head import SOLOHead  # noqa: E402
from .solov2_head import SOLOV2Head  # noqa: E402

_solo_head.DecoupledSOLOHead = DecoupledSOLOHead
_solo_head.DecoupledSOLOLightHead = DecoupledSOLOLightHead

__all__ += ['BaseMaskHead', 'SOLOHead', 'DecoupledSOLOHead', 'DecoupledSOLOLightHead',
            'SOLOV2Head']

# CondInst heads (FCOS + dynamic mask params; mask head in condinst_mask_head.py).
from .condinst_head import CondInstBboxHead, CondInstMaskHead  # noqa: E402

__all__ += ['CondInstBboxHead', 'CondInstMaskHead']

# CenterNet's original heatmap head (on CTResNetNeck).
from .centernet_head import CenterNetHead  # noqa: E402

__all__ += ['CenterNetHead']

# PAA (probabilistic anchor assignment on ATSSHead's layers).
from .paa_head import PAAHead  # noqa: E402

__all__ += ['PAAHead']

# TOOD and VFNet heads (TOOD's TaskDecomposition lives in layers/task_decomposition.py).
from .tood_head import TOODHead  # noqa: E402
from .vfnet_head import VFNetHead  # noqa: E402

__all__ += ['TOODHead', 'VFNetHead']

# RetinaSepBNHead (EfficientNet RetinaNet: level-shared tower convs, per-level norms).
from .retina_sepbn_head import RetinaSepBNHead  # noqa: E402

__all__ += ['RetinaSepBNHead']
