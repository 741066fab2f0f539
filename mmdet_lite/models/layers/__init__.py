from .dcn import DeformConv2dPack, ModulatedDeformConv2dPack
from .res_layer import BasicBlock, Bottleneck, ResLayer

__all__ = [
    'DeformConv2dPack', 'ModulatedDeformConv2dPack', 'BasicBlock', 'Bottleneck', 'ResLayer',
]

# RoI pooling and NMS used by the two-stage heads.
from .bbox_nms import multiclass_nms  # noqa: E402
from .roi_align import RoIAlign  # noqa: E402

__all__ += ['multiclass_nms', 'RoIAlign']

# DETR: positional encoding and transformer layers.
from .positional_encoding import SinePositionalEncoding  # noqa: E402
from .transformer import (DetrTransformerDecoder, DetrTransformerDecoderLayer,  # noqa: E402
                          DetrTransformerEncoder, DetrTransformerEncoderLayer)

__all__ += [
    'SinePositionalEncoding', 'DetrTransformerEncoder', 'DetrTransformerEncoderLayer',
    'DetrTransformerDecoder', 'DetrTransformerDecoderLayer'
]
