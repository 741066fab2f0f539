"""Expected ``state_dict`` keys and shapes of mmdetection 3.3's SSD family, written from the
module definitions (not dumped from our modules):

- ``SSDVGG``: mmcv's VGG puts every layer in one ``features`` Sequential: per conv a
  Conv2d (with bias) + ReLU, per stage a max-pool, the last pool dropped
  (``with_last_pool=False``); SSD appends pool5, fc6 (3x3, 512 -> 1024, dilation 6), ReLU,
  fc7 (1x1, 1024 -> 1024), ReLU.
- ``MobileNetV2``: ``conv1`` (3x3 ConvModule), ``layer1``..``layer7`` of InvertedResidual
  blocks (``expand_conv`` only when the expand ratio is not 1, ``depthwise_conv``,
  ``linear_conv``; all ConvModules with BN), ``conv2`` (1x1 ConvModule).
- ``SSDNeck``: ``l2_norm.weight`` and per extra level ``extra_layers.i.0`` (1x1 ConvModule
  to out // 2) and ``extra_layers.i.1`` (3x3 ConvModule or DepthwiseSeparableConvModule).
- ``SSDHead``: per level ``cls_convs.i`` / ``reg_convs.i`` Sequentials ending in a plain
  Conv2d; SSDLite puts a depthwise 3x3 ConvModule before a 1x1 predictor.
"""
from typing import Optional, Sequence

from helpers_common_keys import conv2d
from helpers_state_dict import Shapes, conv_bn, dw_sep_bn

# mmcv VGG: convs per stage for each depth, and the stage widths.
VGG_STAGE_BLOCKS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
                    19: (2, 2, 4, 4, 4)}
VGG_WIDTHS = (64, 128, 256, 512, 512)

# MobileNetV2 rows: expand ratio, num blocks, stride of the first block.
MOBILENET_V2_ROWS = ((1, 1, 1), (6, 2, 2), (6, 3, 2), (6, 4, 2), (6, 3, 1), (6, 3, 2),
                     (6, 1, 1))
# Widths at widen_factor 1: stem, layer1..layer7, conv2.
MOBILENET_V2_WIDTHS = (32, (16, 24, 32, 64, 96, 160, 320), 1280)

# Anchors per position of SSD300's levels: 2 (ratio 1 at two scales) + 2 per extra ratio.
SSD300_PRIORS = (4, 6, 6, 6, 4, 4)
SSD300_CHANNELS = (512, 1024, 512, 256, 256, 256)


def ssd_vgg_conv_indices(depth: int = 16, with_last_pool: bool = False) -> dict:
    """``{features index: (in, out, kernel)}`` of the convolutions of SSDVGG."""
    convs, index, in_c = {}, 0, 3
    blocks = VGG_STAGE_BLOCKS[depth]
    for stage, (num_blocks, width) in enumerate(zip(blocks, VGG_WIDTHS)):
        for _ in range(num_blocks):
            convs[index] = (in_c, width, 3)
            index += 2  # conv, ReLU
            in_c = width
        if with_last_pool or stage < len(blocks) - 1:
            index += 1  # the stage's max-pool
    index += 1  # pool5 (3x3, stride 1)
    convs[index] = (512, 1024, 3)  # fc6
    convs[index + 2] = (1024, 1024, 1)  # fc7, after fc6's ReLU
    return convs


def ssd_vgg_keys(prefix: str = 'backbone', depth: int = 16) -> Shapes:
    keys = {}
    for index, (in_c, out_c, k) in ssd_vgg_conv_indices(depth).items():
        name = f'{prefix}.features.{index}' if prefix else f'features.{index}'
        keys.update(conv2d(name, in_c, out_c, k))
    return keys


def inverted_residual_keys(prefix: str, in_c: int, out_c: int, mid_c: int,
                           with_expand_conv: bool = True) -> Shapes:
    keys = conv_bn(f'{prefix}.expand_conv', in_c, mid_c, 1) if with_expand_conv else {}
    keys.update(conv_bn(f'{prefix}.depthwise_conv', mid_c, mid_c, 3, groups=mid_c))
    keys.update(conv_bn(f'{prefix}.linear_conv', mid_c, out_c, 1))
    return keys


def mobilenet_v2_keys(prefix: str = 'backbone', widths=MOBILENET_V2_WIDTHS) -> Shapes:
    """``widths``: (stem, seven layer widths, conv2 width), already width-multiplied."""
    stem, layer_widths, head = widths
    keys = conv_bn(f'{prefix}.conv1', 3, stem, 3)
    in_c = stem
    for i, ((expand, num_blocks, _), out_c) in enumerate(zip(MOBILENET_V2_ROWS, layer_widths)):
        for j in range(num_blocks):
            keys.update(inverted_residual_keys(f'{prefix}.layer{i + 1}.{j}', in_c, out_c,
                                               round(in_c * expand), expand != 1))
            in_c = out_c
    keys.update(conv_bn(f'{prefix}.conv2', in_c, head, 1))
    return keys


def ssd_neck_keys(prefix: str, in_channels: Sequence[int], out_channels: Sequence[int],
                  l2_norm: bool = True, depthwise_bn: bool = False,
                  last_kernel_size: int = 3) -> Shapes:
    """SSDNeck without norm (SSD) or with BN and depthwise separable convs (SSDLite)."""
    keys = {f'{prefix}.l2_norm.weight': (in_channels[0], )} if l2_norm else {}
    num_in = len(in_channels)
    extra = out_channels[num_in:]
    for i, out_c in enumerate(extra):
        in_c, level = out_channels[num_in - 1 + i], f'{prefix}.extra_layers.{i}'
        k = last_kernel_size if i == len(extra) - 1 else 3
        if depthwise_bn:
            keys.update(conv_bn(f'{level}.0', in_c, out_c // 2, 1))
            keys.update(dw_sep_bn(f'{level}.1', out_c // 2, out_c, k))
        else:
            keys.update(conv2d(f'{level}.0.conv', in_c, out_c // 2, 1))
            keys.update(conv2d(f'{level}.1.conv', out_c // 2, out_c, k))
    return keys


def ssd_head_keys(prefix: str, in_channels: Sequence[int], num_priors: Sequence[int],
                  num_classes: int = 80, depthwise_bn: bool = False,
                  stacked_convs: int = 0, feat_channels: Optional[int] = None) -> Shapes:
    """SSDHead; ``stacked_convs`` towers are plain ConvModules (no norm) without depthwise
    and DepthwiseSeparableConvModules with BN with it."""
    keys = {}
    for i, (in_c, priors) in enumerate(zip(in_channels, num_priors)):
        for tower, out_per_prior in (('cls_convs', num_classes + 1), ('reg_convs', 4)):
            c, n = in_c, 0
            for _ in range(stacked_convs):
                name = f'{prefix}.{tower}.{i}.{n}'
                keys.update(dw_sep_bn(name, c, feat_channels, 3) if depthwise_bn else
                            conv2d(f'{name}.conv', c, feat_channels, 3))
                c, n = feat_channels, n + 1
            if depthwise_bn:
                keys.update(conv_bn(f'{prefix}.{tower}.{i}.{n}', c, c, 3, groups=c))
                n += 1
            keys.update(conv2d(f'{prefix}.{tower}.{i}.{n}', c, priors * out_per_prior,
                              1 if depthwise_bn else 3))
    return keys


def ssd300_keys(num_classes: int = 80) -> Shapes:
    return {**ssd_vgg_keys('backbone'),
            **ssd_neck_keys('neck', (512, 1024), SSD300_CHANNELS),
            **ssd_head_keys('bbox_head', SSD300_CHANNELS, SSD300_PRIORS, num_classes)}


def ssd512_keys(num_classes: int = 80) -> Shapes:
    channels = SSD300_CHANNELS + (256, )
    return {**ssd_vgg_keys('backbone'),
            **ssd_neck_keys('neck', (512, 1024), channels, last_kernel_size=4),
            **ssd_head_keys('bbox_head', channels, (4, 6, 6, 6, 6, 4, 4), num_classes)}


def ssdlite_mobilenetv2_keys(num_classes: int = 80) -> Shapes:
    channels = (96, 1280, 512, 256, 256, 128)
    return {**mobilenet_v2_keys('backbone'),
            **ssd_neck_keys('neck', (96, 1280), channels, l2_norm=False, depthwise_bn=True),
            **ssd_head_keys('bbox_head', channels, (6, ) * 6, num_classes, depthwise_bn=True)}
