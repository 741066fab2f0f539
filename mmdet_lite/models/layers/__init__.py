from .dcn import DeformConv2dPack, ModulatedDeformConv2dPack
from .res_layer import BasicBlock, Bottleneck, ResLayer

__all__ = [
    'DeformConv2dPack', 'ModulatedDeformConv2dPack', 'BasicBlock', 'Bottleneck', 'ResLayer',
]

# RoI pooling and NMS used by the two-stage heads.
from .bbox_nms import multiclass_nms  # noqa: E402
from .roi_align import RoIAlign  # noqa: E402

__all__ += ['multiclass_nms', 'RoIAlign']

# DETR family: positional encoding, transformer layers and their shared helpers.
from .positional_encoding import SinePositionalEncoding  # noqa: E402
from .transformer import (MLP, DetrTransformerDecoder,  # noqa: E402
                          DetrTransformerDecoderLayer, DetrTransformerEncoder,
                          DetrTransformerEncoderLayer, coordinate_to_encoding, inverse_sigmoid,
                          nchw_to_nlc, nlc_to_nchw)

__all__ += [
    'SinePositionalEncoding', 'DetrTransformerEncoder', 'DetrTransformerEncoderLayer',
    'DetrTransformerDecoder', 'DetrTransformerDecoderLayer', 'MLP', 'coordinate_to_encoding',
    'inverse_sigmoid', 'nchw_to_nlc', 'nlc_to_nchw'
]
