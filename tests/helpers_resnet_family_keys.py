"""Expected ``state_dict`` entries of mmdetection 3.3's ResNet-family backbones (ResNetV1d,
RegNetX, Res2Net, ResNeSt) and of the detectors built on them, written from mmdetection's
module definitions, not dumped from our own modules.

- ResNet stem: ``conv1`` 7x7 + ``bn1``; the deep stem (``deep_stem=True``) is a Sequential
  ``stem`` of conv-BN-ReLU x 3 (``stem.0/1``, ``stem.3/4``, ``stem.6/7``), 3x3 convs of
  ``stem_channels // 2``, ``stem_channels // 2`` and ``stem_channels`` outputs.
- ``ResLayer`` shortcut in a stage's first block: ``downsample.0`` conv + ``.1`` norm, or with
  ``avg_down`` ``downsample.0`` AvgPool2d (no weights), ``.1`` conv, ``.2`` norm.
- RegNet: a 3x3 ``conv1``/``bn1`` stem and ResNeXt Bottlenecks built with ``expansion`` 1
  (``conv2`` grouped, ``conv3`` back to the stage width).
- Res2Net ``Bottle2neck``: ``conv1`` to ``width * scales``, ``convs.i``/``bns.i`` (i < scales
  - 1) of ``width``, ``conv3``; no ``conv2``/``bn2``.
- ResNeSt Bottleneck: ``conv2`` is a ``SplitAttentionConv2d`` (``conv`` with
  ``groups * radix`` groups, ``bn0``, ``fc1``/``fc2`` 1x1 convs with biases and
  ``groups`` groups, ``bn1``); no ``bn2``.

Every function returns ``{key: shape}``.
"""
import math
from typing import Optional, Sequence

from helpers_common_keys import conv_module, fpn
from helpers_detr_keys import linear
from helpers_state_dict import Shapes, bn
from helpers_two_stage_extra_keys import fcn_mask_head, rpn_head, shared2fc_bbox_head

RESNET_STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
                       200: (3, 24, 36, 3)}


def conv(prefix: str, out_c: int, in_c: int, k: int, groups: int = 1,
         bias: bool = False) -> Shapes:
    keys = {f'{prefix}.weight': (out_c, in_c // groups, k, k)}
    if bias:
        keys[f'{prefix}.bias'] = (out_c, )
    return keys


def join(prefix: str, name: str) -> str:
    """``prefix.name``, or ``name`` for the module itself (empty prefix)."""
    return f'{prefix}.{name}' if prefix else name


def conv_norm(prefix: str, conv_name: str, norm_name: str, out_c: int, in_c: int, k: int,
              groups: int = 1) -> Shapes:
    return {**conv(join(prefix, conv_name), out_c, in_c, k, groups),
            **bn(join(prefix, norm_name), out_c)}


def stem(prefix: str, stem_channels: int, deep: bool, kernel: int = 7) -> Shapes:
    """ResNet stem (``conv1``/``bn1``, ``kernel`` x ``kernel``) or the deep 3x3 stem."""
    if not deep:
        return conv_norm(prefix, 'conv1', 'bn1', stem_channels, 3, kernel)
    half = stem_channels // 2
    return {**conv_norm(prefix, 'stem.0', 'stem.1', half, 3, 3),
            **conv_norm(prefix, 'stem.3', 'stem.4', half, half, 3),
            **conv_norm(prefix, 'stem.6', 'stem.7', stem_channels, half, 3)}


def shortcut(prefix: str, in_c: int, out_c: int, avg_down: bool) -> Shapes:
    """The projection shortcut of a stage's first block."""
    first = 1 if avg_down else 0  # downsample.0 is the (weightless) AvgPool2d
    return conv_norm(prefix, f'downsample.{first}', f'downsample.{first + 1}', out_c, in_c, 1)


def bottleneck(prefix: str, in_c: int, width: int, out_c: int, groups: int = 1,
               downsample: Optional[str] = None) -> Shapes:
    """ResNet / ResNeXt / RegNet Bottleneck; ``downsample`` None, 'conv' or 'avg'."""
    keys = {**conv_norm(prefix, 'conv1', 'bn1', width, in_c, 1),
            **conv_norm(prefix, 'conv2', 'bn2', width, width, 3, groups),
            **conv_norm(prefix, 'conv3', 'bn3', out_c, width, 1)}
    if downsample:
        keys.update(shortcut(prefix, in_c, out_c, downsample == 'avg'))
    return keys


def resnet_v1d(prefix: str = 'backbone', depth: int = 50, base_channels: int = 64) -> Shapes:
    """ResNetV1d: deep stem, max-pool, Bottleneck stages with average-pool shortcuts."""
    keys = stem(prefix, base_channels, deep=True)
    in_c = base_channels
    for i, num_blocks in enumerate(RESNET_STAGE_BLOCKS[depth]):
        planes = base_channels * 2**i
        for b in range(num_blocks):
            keys.update(bottleneck(join(prefix, f'layer{i + 1}.{b}'), in_c, planes, planes * 4,
                                   downsample='avg' if b == 0 else None))
            in_c = planes * 4
    return keys


def regnet(prefix: str, stage_widths: Sequence[int], stage_blocks: Sequence[int],
           stage_groups: Sequence[int], stem_channels: int = 32) -> Shapes:
    """RegNetX with bottleneck ratio 1: stage i has ``stage_blocks[i]`` blocks of
    ``stage_widths[i]`` channels whose 3x3 conv has ``stage_groups[i]`` groups."""
    keys = stem(prefix, stem_channels, deep=False, kernel=3)
    in_c = stem_channels
    for i, (width, num_blocks, groups) in enumerate(zip(stage_widths, stage_blocks,
                                                        stage_groups)):
        for b in range(num_blocks):
            keys.update(bottleneck(join(prefix, f'layer{i + 1}.{b}'), in_c, width, width, groups,
                                   downsample='conv' if b == 0 else None))
            in_c = width
    return keys


def bottle2neck(prefix: str, in_c: int, planes: int, scales: int, base_width: int,
                base_channels: int = 64, downsample: bool = False) -> Shapes:
    width = math.floor(planes * base_width / base_channels)
    keys = {**conv_norm(prefix, 'conv1', 'bn1', width * scales, in_c, 1),
            **conv_norm(prefix, 'conv3', 'bn3', planes * 4, width * scales, 1)}
    if downsample:  # Res2Layer always average-pools the shortcut
        keys.update(shortcut(prefix, in_c, planes * 4, avg_down=True))
    # Registered after the shortcut, all ``convs`` (a ModuleList) before all ``bns``.
    for i in range(scales - 1):
        keys.update(conv(join(prefix, f'convs.{i}'), width, width, 3))
    for i in range(scales - 1):
        keys.update(bn(join(prefix, f'bns.{i}'), width))
    return keys


def res2net(prefix: str = 'backbone', depth: int = 101, scales: int = 4,
            base_width: int = 26, base_channels: int = 64) -> Shapes:
    """Res2Net: deep stem and Bottle2neck stages."""
    keys = stem(prefix, base_channels, deep=True)
    in_c = base_channels
    for i, num_blocks in enumerate(RESNET_STAGE_BLOCKS[depth]):
        planes = base_channels * 2**i
        for b in range(num_blocks):
            keys.update(bottle2neck(join(prefix, f'layer{i + 1}.{b}'), in_c, planes, scales,
                                    base_width, base_channels, downsample=b == 0))
            in_c = planes * 4
    return keys


def split_attention_conv(prefix: str, in_c: int, channels: int, groups: int = 1,
                         radix: int = 2, reduction_factor: int = 4, k: int = 3) -> Shapes:
    inter = max(in_c * radix // reduction_factor, 32)
    return {**conv_norm(prefix, 'conv', 'bn0', channels * radix, in_c, k, groups * radix),
            **conv(join(prefix, 'fc1'), inter, channels, 1, groups, bias=True),
            **bn(join(prefix, 'bn1'), inter),
            **conv(join(prefix, 'fc2'), channels * radix, inter, 1, groups, bias=True)}


def resnest_bottleneck(prefix: str, in_c: int, planes: int, groups: int = 1,
                       base_width: int = 4, base_channels: int = 64, radix: int = 2,
                       reduction_factor: int = 4, downsample: bool = False) -> Shapes:
    width = planes if groups == 1 else math.floor(planes * base_width / base_channels) * groups
    keys = {**conv_norm(prefix, 'conv1', 'bn1', width, in_c, 1),
            **split_attention_conv(join(prefix, 'conv2'), width, width, groups, radix,
                                   reduction_factor),
            **conv_norm(prefix, 'conv3', 'bn3', planes * 4, width, 1)}
    if downsample:  # ResNeSt is a ResNetV1d: average-pool shortcuts
        keys.update(shortcut(prefix, in_c, planes * 4, avg_down=True))
    return keys


def resnest(prefix: str = 'backbone', depth: int = 50, stem_channels: int = 64,
            base_channels: int = 64, **block_args) -> Shapes:
    """ResNeSt: deep stem, max-pool, ResNeSt Bottleneck stages."""
    keys = stem(prefix, stem_channels, deep=True)
    in_c = stem_channels
    for i, num_blocks in enumerate(RESNET_STAGE_BLOCKS[depth]):
        planes = base_channels * 2**i
        for b in range(num_blocks):
            keys.update(resnest_bottleneck(join(prefix, f'layer{i + 1}.{b}'), in_c, planes,
                                           base_channels=base_channels, downsample=b == 0,
                                           **block_args))
            in_c = planes * 4
    return keys


# ----------------------------------------------------------------- necks and heads


def retina_head(prefix: str, num_classes: int = 80, channels: int = 256,
                num_anchors: int = 9, stacked_convs: int = 4) -> Shapes:
    keys = {}
    for branch in ('cls_convs', 'reg_convs'):
        for i in range(stacked_convs):
            keys.update(conv(join(prefix, f'{branch}.{i}.conv'), channels, channels, 3, bias=True))
    keys.update(conv(join(prefix, 'retina_cls'), num_anchors * num_classes, channels, 3,
                     bias=True))
    keys.update(conv(join(prefix, 'retina_reg'), num_anchors * 4, channels, 3, bias=True))
    return keys


def shared4conv1fc_bbox_head(prefix: str, in_c: int = 256, conv_out: int = 256,
                             fc: int = 1024, num_classes: int = 80,
                             norm_kind: str = 'bn') -> Shapes:
    """Shared4Conv1FCBBoxHead with a norm: four 3x3 ConvModules (``conv`` without bias,
    ``bn`` / ``gn``), one fc on the flattened 7x7 map, then ``fc_cls`` / ``fc_reg``."""
    keys = {}
    for i in range(4):
        keys.update(conv_module(join(prefix, f'shared_convs.{i}'),
                                in_c if i == 0 else conv_out, conv_out, 3, norm_kind))
    keys.update(linear(join(prefix, 'shared_fcs.0'), fc, conv_out * 7 * 7))
    keys.update(linear(join(prefix, 'fc_cls'), num_classes + 1, fc))
    keys.update(linear(join(prefix, 'fc_reg'), num_classes * 4, fc))
    return keys


def faster_rcnn_heads(neck_in_channels: Sequence[int]) -> Shapes:
    """FPN (5 levels, the last a max-pool), RPNHead and Shared2FCBBoxHead of Faster R-CNN."""
    return {**fpn('neck', neck_in_channels), **rpn_head('rpn_head'),
            **shared2fc_bbox_head('roi_head.bbox_head')}


def mask_rcnn_heads(neck_in_channels: Sequence[int]) -> Shapes:
    return {**faster_rcnn_heads(neck_in_channels), **fcn_mask_head('roi_head.mask_head')}


def retinanet_heads(neck_in_channels: Sequence[int]) -> Shapes:
    """RetinaNet's FPN on C3-C5 with P6/P7 convs on C5, and its RetinaHead."""
    return {**fpn('neck', neck_in_channels, start_level=1, extra_source='on_input'),
            **retina_head('bbox_head')}
