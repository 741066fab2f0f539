from .dcn import (DeformConv2d, DeformConv2dPack, ModulatedDeformConv2d,
                  ModulatedDeformConv2dPack)
from .res_layer import BasicBlock, Bottleneck, ResLayer

__all__ = [
    'DeformConv2d', 'DeformConv2dPack', 'ModulatedDeformConv2d', 'ModulatedDeformConv2dPack',
    'BasicBlock', 'Bottleneck', 'ResLayer',
]

# RoI pooling and NMS used by the two-stage heads.
from .bbox_nms import multiclass_nms  # noqa: E402
from .roi_align import RoIAlign  # noqa: E402

__all__ += ['multiclass_nms', 'RoIAlign']

# DETR family: positional encoding, transformer layers and their shared helpers (all of
# layers/transformer is re-exported here, as mmdetection's mmdet.models.layers does).
from .positional_encoding import SinePositionalEncoding  # noqa: E402
from .transformer import *  # noqa: E402,F401,F403
from .transformer import __all__ as _transformer_all  # noqa: E402

__all__ += ['SinePositionalEncoding'] + _transformer_all

# YOLOX / RTMDet / DyHead family: CSP layers, SPP, channel attentions and the EMA model.
from .csp_layer import CSPLayer, CSPNeXtBlock, DarknetBottleneck  # noqa: E402
from .ema import ExpMomentumEMA  # noqa: E402
from .se_layer import ChannelAttention, DyReLU, SELayer  # noqa: E402
from .spp_bottleneck import SPPBottleneck  # noqa: E402

__all__ += [
    'CSPLayer', 'CSPNeXtBlock', 'DarknetBottleneck', 'ExpMomentumEMA', 'ChannelAttention',
    'DyReLU', 'SELayer', 'SPPBottleneck'
]

# CARAFE content-aware upsampling (FPN_CARAFE, CARAFE mask heads).
from .carafe import CARAFE, CARAFEPack, carafe  # noqa: E402

__all__ += ['CARAFE', 'CARAFEPack', 'carafe']

# Cosine-similarity predictors (seesaw-loss box heads); also registers 'Linear'.
from .normed_predictor import NormedConv2d, NormedLinear  # noqa: E402

__all__ += ['NormedLinear', 'NormedConv2d']

# MobileNetV2 block (SSDLite backbone).
from .inverted_residual import InvertedResidual  # noqa: E402

__all__ += ['InvertedResidual']

# Matrix NMS (SOLOv2 / SOLO post-processing).
from .matrix_nms import mask_matrix_nms  # noqa: E402

__all__ += ['mask_matrix_nms']

# TOOD's layer attention.
from .task_decomposition import TaskDecomposition  # noqa: E402

__all__ += ['TaskDecomposition']

# Score voting (PAA's post-NMS box refinement).
from .score_voting import score_voting  # noqa: E402

__all__ += ['score_voting']
