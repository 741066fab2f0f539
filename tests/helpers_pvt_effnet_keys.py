"""Expected ``state_dict`` keys and shapes of mmdetection 3.3's PVT / PVTv2 and EfficientNet
backbones and of the RetinaNets built on them, written from the module definitions in
``mmdet/models/backbones/{pvt,efficientnet}.py`` (not dumped from our modules):

- PVT stage ``i`` is ``layers.i`` = ModuleList([PatchEmbed, ModuleList(blocks), norm]):
  ``layers.i.0.projection`` (conv with bias, kernel ``patch_sizes[i]``) + ``.norm`` (LN);
  v1 puts an ``AbsolutePositionEmbedding`` first in the blocks (``layers.i.1.0.pos_embed``,
  [1, (224 // prod(patch_sizes[:i + 1]))**2, C]); each ``PVTEncoderLayer`` holds ``norm1``,
  ``attn`` (mmcv's MultiheadAttention: ``attn.attn.in_proj_weight`` [3C, C] + bias,
  ``attn.attn.out_proj``; with ``sr_ratio > 1`` also ``attn.sr`` conv sr x sr and
  ``attn.norm``), ``norm2`` and ``ffn.layers`` (MixFFN: 1x1 conv 0, v2's depthwise 3x3 conv
  1, 1x1 conv 3 (v1) or 4 (v2)); v2 ends each stage with ``layers.i.2`` (LN).
- EfficientNet: ``layers.0`` stem ConvModule (3x3 s2), ``layers.1..5`` Sequentials of
  InvertedResidual (``expand_conv`` only when the expanded width differs from the input,
  ``depthwise_conv`` kxk, ``se.conv1/conv2`` 1x1 convs with biases, ``linear_conv``), all
  ConvModules with BN (no conv bias); ``layers.6`` (1x1 to 1280 * width) only when output.

Every function returns ``{key: shape}``.
"""
from typing import Sequence

from helpers_common_keys import fpn
from helpers_state_dict import Shapes, bn, conv_bn

# ---------------------------------------------------------------------------- PVT


def _ln(prefix: str, channels: int) -> Shapes:
    return {f'{prefix}.weight': (channels, ), f'{prefix}.bias': (channels, )}


def _conv(prefix: str, out_c: int, in_c: int, k: int, groups: int = 1) -> Shapes:
    return {f'{prefix}.weight': (out_c, in_c // groups, k, k), f'{prefix}.bias': (out_c, )}


def pvt_encoder_layer(prefix: str, dims: int, hidden: int, sr_ratio: int, v2: bool) -> Shapes:
    """One PVTEncoderLayer of ``dims`` channels and ``hidden`` FFN channels."""
    keys = {**_ln(f'{prefix}.norm1', dims),
            f'{prefix}.attn.attn.in_proj_weight': (3 * dims, dims),
            f'{prefix}.attn.attn.in_proj_bias': (3 * dims, ),
            f'{prefix}.attn.attn.out_proj.weight': (dims, dims),
            f'{prefix}.attn.attn.out_proj.bias': (dims, )}
    if sr_ratio > 1:
        keys.update(_conv(f'{prefix}.attn.sr', dims, dims, sr_ratio))
        keys.update(_ln(f'{prefix}.attn.norm', dims))
    keys.update(_ln(f'{prefix}.norm2', dims))
    keys.update(_conv(f'{prefix}.ffn.layers.0', hidden, dims, 1))
    if v2:
        keys.update(_conv(f'{prefix}.ffn.layers.1', hidden, hidden, 3, groups=hidden))
    keys.update(_conv(f'{prefix}.ffn.layers.{4 if v2 else 3}', dims, hidden, 1))
    return keys


def pvt(prefix: str = 'backbone', embed_dims: int = 64, num_layers=(3, 4, 6, 3),
        v2: bool = False, num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4),
        sr_ratios=(8, 4, 2, 1), pretrain_img_size: int = 224, in_channels: int = 3) -> Shapes:
    """PyramidVisionTransformer (``v2``: PyramidVisionTransformerV2) with default strides."""
    patch_sizes = (7, 3, 3, 3) if v2 else (4, 2, 2, 2)
    keys = {}
    in_c = in_channels
    for i, depth in enumerate(num_layers):
        dims = embed_dims * num_heads[i]
        stage = f'{prefix}.layers.{i}' if prefix else f'layers.{i}'
        keys.update(_conv(f'{stage}.0.projection', dims, in_c, patch_sizes[i]))
        keys.update(_ln(f'{stage}.0.norm', dims))
        first = 0
        if not v2:
            side = pretrain_img_size
            for p in patch_sizes[:i + 1]:
                side //= p
            keys[f'{stage}.1.0.pos_embed'] = (1, side * side, dims)
            first = 1
        for j in range(depth):
            keys.update(pvt_encoder_layer(f'{stage}.1.{first + j}', dims, mlp_ratios[i] * dims,
                                          sr_ratios[i], v2))
        if v2:
            keys.update(_ln(f'{stage}.2', dims))
        in_c = dims
    return keys


# ---------------------------------------------------------------------------- EfficientNet

# EfficientNet-b3, worked out by hand from mmdetection's b0 table with width 1.2 and depth
# 1.4 (make_divisible(c * 1.2, 8); each run of equal-width blocks repeated ceil(1.4 * n)
# times; a run starting at stride 1 joins the previous stage). Per stage, runs of
# (kernel, out_channels, stride of the run's first block, expand_ratio, num_blocks).
B3_STEM = 40
B3_STAGES = (
    ((3, 24, 1, 1, 2), ),
    ((3, 32, 2, 6, 3), ),
    ((5, 48, 2, 6, 3), ),
    ((3, 96, 2, 6, 5), (5, 136, 1, 6, 5)),
    ((5, 232, 2, 6, 6), (3, 384, 1, 6, 2)),
)
B3_FINAL = 1536
# EfficientNet-b0: the table itself.
B0_STEM = 32
B0_STAGES = (
    ((3, 16, 1, 1, 1), ),
    ((3, 24, 2, 6, 2), ),
    ((5, 40, 2, 6, 2), ),
    ((3, 80, 2, 6, 3), (5, 112, 1, 6, 3)),
    ((5, 192, 2, 6, 4), (3, 320, 1, 6, 1)),
)
B0_FINAL = 1280
SE_RATIO = 4


def mbconv(prefix: str, in_c: int, out_c: int, k: int, expand: int) -> Shapes:
    """InvertedResidual with SE as EfficientNet builds it: mid = in_c * expand, SE ratio
    expand * 4 on the mid width (hidden = int(mid / (expand * 4)))."""
    mid = int(in_c * expand)
    keys = conv_bn(f'{prefix}.expand_conv', in_c, mid, 1) if mid != in_c else {}
    keys.update(conv_bn(f'{prefix}.depthwise_conv', mid, mid, k, groups=mid))
    hidden = int(mid / (expand * SE_RATIO))
    keys.update({f'{prefix}.se.conv1.conv.weight': (hidden, mid, 1, 1),
                 f'{prefix}.se.conv1.conv.bias': (hidden, ),
                 f'{prefix}.se.conv2.conv.weight': (mid, hidden, 1, 1),
                 f'{prefix}.se.conv2.conv.bias': (mid, )})
    keys.update(conv_bn(f'{prefix}.linear_conv', mid, out_c, 1))
    return keys


def efficientnet(prefix: str = 'backbone', stem: int = B3_STEM, stages=B3_STAGES,
                 final: int = B3_FINAL, out_indices: Sequence[int] = (3, 4, 5)) -> Shapes:
    """An EfficientNet 'b' backbone built up to ``max(out_indices)``."""
    last = max(out_indices)
    layers = f'{prefix}.layers' if prefix else 'layers'
    keys = conv_bn(f'{layers}.0', 3, stem, 3)
    in_c = stem
    for i, runs in enumerate(stages[:last], 1):
        j = 0
        for k, out_c, _, expand, num in runs:
            for _ in range(num):
                keys.update(mbconv(f'{layers}.{i}.{j}', in_c, out_c, k, expand))
                in_c = out_c
                j += 1
    if last == len(stages) + 1:
        keys.update(conv_bn(f'{layers}.{last}', in_c, final, 1))
    return keys


# ---------------------------------------------------------------------------- necks, heads


def fpn_bn(prefix: str, in_channels: Sequence[int], out_c: int = 256, num_outs: int = 5) -> Shapes:
    """FPN(start_level=0, add_extra_convs='on_input', no_norm_on_lateral=True, norm_cfg=BN):
    laterals are convs with bias, every fpn conv (extra ones too) conv + BN."""
    return fpn(prefix, in_channels, out_c, num_outs=num_outs, extra_source='on_input',
               norm_kind='bn', no_norm_on_lateral=True)


def retina_sep_bn_head(prefix: str = 'bbox_head', num_ins: int = 5, num_classes: int = 80,
                       channels: int = 256, stacked_convs: int = 4,
                       num_anchors: int = 9) -> Shapes:
    """RetinaSepBNHead with BN: per level ``cls_convs.i.j`` / ``reg_convs.i.j`` ConvModules
    whose convs are level 0's (shared modules appear under every level in the state_dict),
    their own BNs; shared ``retina_cls`` / ``retina_reg``."""
    keys = {}
    for i in range(num_ins):
        for branch in ('cls_convs', 'reg_convs'):
            for j in range(stacked_convs):
                keys[f'{prefix}.{branch}.{i}.{j}.conv.weight'] = (channels, channels, 3, 3)
                keys.update(bn(f'{prefix}.{branch}.{i}.{j}.bn', channels))
    keys.update(_conv(f'{prefix}.retina_cls', num_anchors * num_classes, channels, 3))
    keys.update(_conv(f'{prefix}.retina_reg', num_anchors * 4, channels, 3))
    return keys
