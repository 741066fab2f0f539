"""Transformer layers of the DETR family: one file per member, shared pieces once.

==============================  =============================================================
file                            what it holds
==============================  =============================================================
``bricks.py``                   mmcv's ``MultiheadAttention`` and ``FFN`` (mmcv's state_dict
                                keys); every layer below is built from them.
``utils.py``                    shared by all members: ``nchw_to_nlc`` / ``nlc_to_nchw``,
                                ``inverse_sigmoid``, ``coordinate_to_encoding``, ``MLP``.
``detr_layers.py``              DETR: post-norm encoder/decoder layers and their stacks.
``deformable_detr_layers.py``   (next) Deformable DETR: multi-scale deformable encoder and
                                decoder (``reference_points``, ``valid_ratios``).
``dino_layers.py``              (next) DINO: its decoder and the denoising query generator.
``conditional_detr_layers.py``  (next) Conditional DETR: its decoder and
                                ``ConditionalAttention``.
``dab_detr_layers.py``          (next) DAB-DETR: its encoder and anchor-box decoder.
==============================  =============================================================

Positional encodings of feature maps are in ``layers/positional_encoding.py``. A member's
layers file subclasses or composes the DETR layers and imports its helpers from ``utils``.
"""
from .bricks import FFN, MultiheadAttention
from .detr_layers import (DetrTransformerDecoder, DetrTransformerDecoderLayer,
                          DetrTransformerEncoder, DetrTransformerEncoderLayer)
from .utils import MLP, coordinate_to_encoding, inverse_sigmoid, nchw_to_nlc, nlc_to_nchw

__all__ = [
    'DetrTransformerEncoder', 'DetrTransformerEncoderLayer', 'DetrTransformerDecoder',
    'DetrTransformerDecoderLayer', 'FFN', 'MultiheadAttention', 'MLP',
    'coordinate_to_encoding', 'inverse_sigmoid', 'nchw_to_nlc', 'nlc_to_nchw'
]
