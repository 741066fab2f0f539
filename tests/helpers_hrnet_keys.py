"""Expected ``state_dict`` entries of mmdetection 3.3's HRNet / HRFPN and of the ResNet-50
variants of the classic zoo (DCN / DCNv2 convs, ContextBlock and GeneralizedAttention
plugins, GroupNorm), plus the R-CNN necks and heads they sit under.

Written from mmdetection's and mmcv's module definitions:

* HRNet: stem ``conv1``/``bn1``/``conv2``/``bn2`` (3x3, stride 2, 64 channels), ``layer1``
  (stage-1 Bottlenecks, ``downsample`` Sequential in block 0), ``transition{k}`` (ModuleList,
  None for unchanged branches, ``Sequential(Sequential(conv, norm, ReLU), ...)`` for new
  ones), ``stage{k}`` (Sequential of HRModules: ``branches.{i}.{block}`` and
  ``fuse_layers.{i}.{j}`` = 1x1 conv + norm (+ Upsample) from a lower resolution, or a chain
  of ``{k}.0`` stride-2 3x3 conv + ``{k}.1`` norm from a higher one).
* mmcv ``DeformConv2dPack``: ``weight`` (no bias) and ``conv_offset`` (2 * dg * 9 outputs);
  ``ModulatedDeformConv2dPack``: ``conv_offset`` with 3 * dg * 9 outputs, no bias when built
  with ``bias=False`` as ResNet's Bottleneck does.
* mmcv ``ContextBlock`` (plugin name ``context_block``), ``GeneralizedAttention``
  (``gen_attention_block``).

Each function returns ``{key: shape}``.
"""
from typing import Dict, Optional, Sequence, Tuple

from helpers_common_keys import conv_module
# ``fpn`` is re-exported: test_resnet_variant_configs.py imports it from here.
from helpers_common_keys import fpn  # noqa: F401
from helpers_resnet_family_keys import conv, shared4conv1fc_bbox_head
from helpers_state_dict import bn
from helpers_two_stage_extra_keys import fcn_mask_head, rpn_head, shared2fc_bbox_head

Shapes = Dict[str, Tuple[int, ...]]

# mmdetection's HRNetV2p extra for width 32 (the w18 / w40 configs change num_channels).
HRNET_W32_EXTRA = dict(
    stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(4, ),
                num_channels=(64, )),
    stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(4, 4),
                num_channels=(32, 64)),
    stage3=dict(num_modules=4, num_branches=3, block='BASIC', num_blocks=(4, 4, 4),
                num_channels=(32, 64, 128)),
    stage4=dict(num_modules=3, num_branches=4, block='BASIC', num_blocks=(4, 4, 4, 4),
                num_channels=(32, 64, 128, 256)))


def hrnet_extra(width: int) -> dict:
    """HRNetV2p extra of a given width: branch k of a stage has ``width * 2**k`` channels."""
    extra = {k: dict(v) for k, v in HRNET_W32_EXTRA.items()}
    for stage in (2, 3, 4):
        extra[f'stage{stage}']['num_channels'] = tuple(width * 2**k for k in range(stage))
    return extra


def norm(prefix: str, channels: int, kind: str = 'bn') -> Shapes:
    """BatchNorm (5 entries) or GroupNorm (weight, bias)."""
    if kind == 'bn':
        return bn(prefix, channels)
    return {f'{prefix}.weight': (channels, ), f'{prefix}.bias': (channels, )}


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


# ----------------------------------------------------------------------------- blocks
def basic_block(prefix: str, in_c: int, planes: int) -> Shapes:
    """mmdetection BasicBlock, BN, optional 1x1 ``downsample`` when the width changes."""
    keys = {**conv(f'{prefix}.conv1', planes, in_c, 3), **bn(f'{prefix}.bn1', planes),
            **conv(f'{prefix}.conv2', planes, planes, 3), **bn(f'{prefix}.bn2', planes)}
    if in_c != planes:
        keys.update(conv(f'{prefix}.downsample.0', planes, in_c, 1))
        keys.update(bn(f'{prefix}.downsample.1', planes))
    return keys


def bottleneck(prefix: str, in_c: int, planes: int, norm_kind: str = 'bn',
               dcn: Optional[str] = None, deform_groups: int = 1,
               plugins: Sequence[Tuple[str, Shapes]] = ()) -> Shapes:
    """mmdetection Bottleneck: conv1 1x1, conv2 3x3 (deformable if ``dcn``), conv3 1x1 to
    ``4 * planes``; ``downsample`` when the width changes; ``plugins`` as (name, keys)."""
    n = norm_kind
    keys = {**conv(f'{prefix}.conv1', planes, in_c, 1), **norm(f'{prefix}.{n}1', planes, n),
            **conv(f'{prefix}.conv2', planes, planes, 3), **norm(f'{prefix}.{n}2', planes, n),
            **conv(f'{prefix}.conv3', 4 * planes, planes, 1),
            **norm(f'{prefix}.{n}3', 4 * planes, n)}
    if dcn is not None:
        offsets = deform_groups * (2 if dcn == 'DCN' else 3) * 9
        keys.update(conv(f'{prefix}.conv2.conv_offset', offsets, planes, 3, bias=True))
    if in_c != 4 * planes:
        keys.update(conv(f'{prefix}.downsample.0', 4 * planes, in_c, 1))
        keys.update(norm(f'{prefix}.downsample.1', 4 * planes, n))
    for name, plugin_keys in plugins:
        keys.update({f'{prefix}.{name}.{k}': v for k, v in plugin_keys.items()})
    return keys


def context_block(channels: int, ratio: float) -> Shapes:
    """mmcv ContextBlock, attention pooling + channel_add (conv, LayerNorm, ReLU, conv)."""
    planes = int(channels * ratio)
    return {'conv_mask.weight': (1, channels, 1, 1), 'conv_mask.bias': (1, ),
            'channel_add_conv.0.weight': (planes, channels, 1, 1),
            'channel_add_conv.0.bias': (planes, ),
            'channel_add_conv.1.weight': (planes, 1, 1),
            'channel_add_conv.1.bias': (planes, 1, 1),
            'channel_add_conv.3.weight': (channels, planes, 1, 1),
            'channel_add_conv.3.bias': (channels, )}


def generalized_attention(channels: int, attention_type: str, num_heads: int = 8) -> Shapes:
    """mmcv GeneralizedAttention (spatial_range=-1, position_embedding_dim = channels).

    The four ``attention_type`` flags switch on query-key content, query-position,
    key-content-only and position-only terms.
    """
    qk, pos, key_only, pos_only = (c == '1' for c in attention_type)
    out_c = channels // num_heads * num_heads
    keys = {}
    if qk or pos:
        keys['query_conv.weight'] = (out_c, channels, 1, 1)
    if qk or key_only:
        keys['key_conv.weight'] = (out_c, channels, 1, 1)
    keys['value_conv.weight'] = (out_c, channels, 1, 1)
    if pos or pos_only:
        keys['appr_geom_fc_x.weight'] = (out_c, channels // 2)
        keys['appr_geom_fc_y.weight'] = (out_c, channels // 2)
    if key_only:
        keys['appr_bias'] = (out_c, )
    if pos_only:
        keys['geom_bias'] = (out_c, )
    keys.update({'proj_conv.weight': (channels, out_c, 1, 1), 'proj_conv.bias': (channels, ),
                 'gamma': (1, )})
    return keys


# ----------------------------------------------------------------------------- backbones
def resnet50(prefix: str = 'backbone', norm_kind: str = 'bn', dcn: Optional[str] = None,
             deform_groups: int = 1, stage_with_dcn: Sequence[bool] = (False, ) * 4,
             gcb_ratio: Optional[float] = None, gcb_stages: Sequence[bool] = (False, ) * 4,
             attention_type: Optional[str] = None,
             attention_stages: Sequence[bool] = (False, ) * 4) -> Shapes:
    """ResNet-50 (stages of 3, 4, 6, 3 Bottlenecks) with the zoo's variants.

    ContextBlocks sit after conv3 (``4 * planes`` channels), GeneralizedAttention after
    conv2 (``planes`` channels).
    """
    keys = {**conv(_join(prefix, 'conv1'), 64, 3, 7),
            **norm(_join(prefix, f'{norm_kind}1'), 64, norm_kind)}
    in_c = 64
    for stage, num_blocks in enumerate((3, 4, 6, 3)):
        planes = 64 * 2**stage
        plugins = []
        if attention_type is not None and attention_stages[stage]:
            plugins.append(('gen_attention_block',
                            generalized_attention(planes, attention_type)))
        if gcb_ratio is not None and gcb_stages[stage]:
            plugins.append(('context_block', context_block(4 * planes, gcb_ratio)))
        for block in range(num_blocks):
            keys.update(bottleneck(_join(prefix, f'layer{stage + 1}.{block}'), in_c, planes,
                                   norm_kind, dcn if stage_with_dcn[stage] else None,
                                   deform_groups, plugins))
            in_c = 4 * planes
    return keys


def _hr_module(prefix: str, channels: Sequence[int], num_blocks: int,
               multiscale_output: bool = True) -> Shapes:
    """An HRModule of BasicBlock branches whose width does not change."""
    keys = {}
    for i, c in enumerate(channels):
        for b in range(num_blocks):
            keys.update(basic_block(f'{prefix}.branches.{i}.{b}', c, c))
    if len(channels) == 1:
        return keys
    for i in range(len(channels) if multiscale_output else 1):
        for j in range(len(channels)):
            p = f'{prefix}.fuse_layers.{i}.{j}'
            if j > i:  # 1x1 conv to branch i's width (then nearest upsampling, no weights)
                keys.update({**conv(f'{p}.0', channels[i], channels[j], 1),
                             **bn(f'{p}.1', channels[i])})
            elif j < i:  # i - j stride-2 3x3 convs; only the last one changes the width
                for k in range(i - j):
                    out_c = channels[i] if k == i - j - 1 else channels[j]
                    keys.update({**conv(f'{p}.{k}.0', out_c, channels[j], 3),
                                 **bn(f'{p}.{k}.1', out_c)})
    return keys


def hrnet(prefix: str = 'backbone', width: int = 18, multiscale_output: bool = True) -> Shapes:
    """HRNetV2p-W``width`` (mmdetection's w18 / w32 / w40 extra), BN."""
    keys = {**conv(_join(prefix, 'conv1'), 64, 3, 3), **bn(_join(prefix, 'bn1'), 64),
            **conv(_join(prefix, 'conv2'), 64, 64, 3), **bn(_join(prefix, 'bn2'), 64)}
    in_c = 64
    for b in range(4):  # stage 1: four Bottlenecks of 64 planes -> 256 channels
        keys.update(bottleneck(_join(prefix, f'layer1.{b}'), in_c, 64))
        in_c = 256
    previous = [256]
    for stage, num_modules in ((2, 1), (3, 4), (4, 3)):
        channels = [width * 2**k for k in range(stage)]
        t = _join(prefix, f'transition{stage - 1}')
        for i, c in enumerate(channels):
            if i < len(previous):
                if previous[i] != c:  # only stage 2's first branch: 256 -> width
                    keys.update({**conv(f'{t}.{i}.0', c, previous[i], 3),
                                 **bn(f'{t}.{i}.1', c)})
            else:  # the new branch: one stride-2 3x3 conv from the lowest resolution
                keys.update({**conv(f'{t}.{i}.0.0', c, previous[-1], 3),
                             **bn(f'{t}.{i}.0.1', c)})
        for m in range(num_modules):
            last = stage == 4 and m == num_modules - 1
            keys.update(_hr_module(_join(prefix, f'stage{stage}.{m}'), channels, 4,
                                   multiscale_output or not last))
        previous = channels
    return keys


# ----------------------------------------------------------------------------- necks, heads
def hrfpn(prefix: str = 'neck', in_channels: Sequence[int] = (18, 36, 72, 144),
          out_channels: int = 256, num_outs: int = 5) -> Shapes:
    """HRFPN: 1x1 ``reduction_conv`` on the concatenated branches, a 3x3 conv per level."""
    keys = conv_module(f'{prefix}.reduction_conv', sum(in_channels), out_channels, 1)
    for i in range(num_outs):
        keys.update(conv_module(f'{prefix}.fpn_convs.{i}', out_channels, out_channels, 3))
    return keys


def rcnn_heads(with_mask: bool, norm_kind: Optional[str] = None,
               shared_convs: int = 0) -> Shapes:
    """RPNHead, Shared2FCBBoxHead (``shared_convs=0``) or Shared4Conv1FCBBoxHead (``4``, its
    convs normed with ``norm_kind``), and with a mask the FCNMaskHead, normed like the box
    head (the deconv and logits are plain layers whatever the conv_cfg; RPNHead's convs are
    plain ``nn.Conv2d``, never ConvWS)."""
    if shared_convs not in (0, 4):
        raise ValueError(f'shared_convs must be 0 or 4, got {shared_convs}')
    if shared_convs == 0:
        bbox_head = shared2fc_bbox_head('roi_head.bbox_head')
    else:
        bbox_head = shared4conv1fc_bbox_head('roi_head.bbox_head', norm_kind=norm_kind)
    keys = {**rpn_head('rpn_head'), **bbox_head}
    if with_mask:
        keys.update(fcn_mask_head('roi_head.mask_head', norm_kind=norm_kind))
    return keys
