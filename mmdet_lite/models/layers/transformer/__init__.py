"""Transformer layers of the DETR family: one file per member, shared pieces once.

==============================  =============================================================
file                            what it holds
==============================  =============================================================
``bricks.py``                   mmcv's ``MultiheadAttention`` and ``FFN`` (mmcv's state_dict
                                keys); every layer below is built from them.
``utils.py``                    shared by all members: ``nchw_to_nlc`` / ``nlc_to_nchw``,
                                ``inverse_sigmoid``, ``coordinate_to_encoding``, ``MLP``.
``ms_deform_attn.py``           mmcv's ``MultiScaleDeformableAttention`` in plain torch
                                (``F.grid_sample``).
``detr_layers.py``              DETR: post-norm encoder/decoder layers and their stacks.
``patch_embed.py``              Swin's patch tokenizers: ``PatchEmbed``, ``PatchMerging``,
                                ``AdaptivePadding``.
``deformable_detr_layers.py``   Deformable DETR: multi-scale deformable encoder and
                                decoder (``reference_points``, ``valid_ratios``).
``dino_layers.py``              DINO: its decoder and the denoising query generator.
``conditional_detr_layers.py``  Conditional DETR: its decoder and
                                ``ConditionalAttention``.
``dab_detr_layers.py``          DAB-DETR: its encoder and anchor-box decoder.
==============================  =============================================================

Positional encodings of feature maps are in ``layers/positional_encoding.py``. A member's
layers file subclasses or composes the DETR layers and imports its helpers from ``utils``.
"""
from .bricks import FFN, MultiheadAttention
from .conditional_detr_layers import (ConditionalAttention, ConditionalDetrTransformerDecoder,
                                      ConditionalDetrTransformerDecoderLayer)
from .dab_detr_layers import (DABDetrTransformerDecoder, DABDetrTransformerDecoderLayer,
                              DABDetrTransformerEncoder)
from .deformable_detr_layers import (DeformableDetrTransformerDecoder,
                                     DeformableDetrTransformerDecoderLayer,
                                     DeformableDetrTransformerEncoder,
                                     DeformableDetrTransformerEncoderLayer)
from .detr_layers import (DetrTransformerDecoder, DetrTransformerDecoderLayer,
                          DetrTransformerEncoder, DetrTransformerEncoderLayer)
from .dino_layers import CdnQueryGenerator, DinoTransformerDecoder
from .ms_deform_attn import MultiScaleDeformableAttention, multi_scale_deformable_attn_pytorch
from .patch_embed import AdaptivePadding, PatchEmbed, PatchMerging
from .utils import MLP, coordinate_to_encoding, inverse_sigmoid, nchw_to_nlc, nlc_to_nchw

__all__ = [
    # shared pieces
    'FFN', 'MultiheadAttention', 'MultiScaleDeformableAttention',
    'multi_scale_deformable_attn_pytorch', 'MLP', 'coordinate_to_encoding', 'inverse_sigmoid',
    'nchw_to_nlc', 'nlc_to_nchw', 'AdaptivePadding', 'PatchEmbed', 'PatchMerging',
    # DETR
    'DetrTransformerEncoder', 'DetrTransformerEncoderLayer', 'DetrTransformerDecoder',
    'DetrTransformerDecoderLayer',
    # Deformable DETR
    'DeformableDetrTransformerEncoder', 'DeformableDetrTransformerEncoderLayer',
    'DeformableDetrTransformerDecoder', 'DeformableDetrTransformerDecoderLayer',
    # DINO
    'CdnQueryGenerator', 'DinoTransformerDecoder',
    # Conditional DETR and DAB-DETR
    'ConditionalAttention', 'ConditionalDetrTransformerDecoder',
    'ConditionalDetrTransformerDecoderLayer', 'DABDetrTransformerEncoder',
    'DABDetrTransformerDecoder', 'DABDetrTransformerDecoderLayer'
]
