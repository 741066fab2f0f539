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
