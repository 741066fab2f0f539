"""Expected ``state_dict`` ``{key: shape}`` of mmdetection 3.3's YOLOX / RTMDet backbones and
necks, written from their definitions (``mmdet/models/backbones/{cspnext,csp_darknet}.py``,
``mmdet/models/necks/{cspnext_pafpn,yolox_pafpn}.py``), for tests of single modules and of
whole detectors.

Every function takes a ``prefix`` ('' for the module itself, 'backbone' / 'neck' inside a
detector) and returns ``{key: shape}`` to compare with
``{k: tuple(v.shape) for k, v in module.state_dict().items()}`` (``helpers_state_dict.
shapes_of``). BN entries include ``num_batches_tracked``. Layouts, from the definitions:

* ConvModule + BN: ``.conv.weight`` (no bias) and ``.bn.{weight, bias, running_mean,
  running_var, num_batches_tracked}``; DepthwiseSeparableConvModule: ``.depthwise_conv.*``
  (groups = in channels) and ``.pointwise_conv.*`` (1x1), each a ConvModule + BN.
* Backbone: ``stem`` then ``stage1``..``stageN``; stage ``i`` is ``.0`` stride-2 3x3 conv
  (depthwise separable with ``use_depthwise``), ``.1`` SPPBottleneck in the last stage
  (``conv1`` C -> C/2 1x1, ``conv2`` C/2 * (pools + 1) -> C 1x1), then the CSPLayer
  (``main_conv``, ``short_conv``, ``final_conv``, ``blocks.j.conv1/conv2``, and
  ``attention.fc.{weight, bias}`` with channel attention).
* Rounding: channels ``int(c * widen_factor)``, CSPNeXt stem halves
  ``int(c * widen_factor // 2)``, blocks ``max(round(n * deepen_factor), 1)``.

COCO configs (backbone deepen / widen, neck in_channels / out_channels / num_csp_blocks):
RTMDet tiny 0.167/0.375, [96, 192, 384]/96/1; s 0.33/0.5, [128, 256, 512]/128/1;
m 0.67/0.75, [192, 384, 768]/192/2; l 1/1, [256, 512, 1024]/256/3;
x 1.33/1.25, [320, 640, 1280]/320/4 (all channel_attention=True, expand_ratio=0.5).
YOLOX nano 0.33/0.25 depthwise, [64, 128, 256]/64/1; tiny 0.33/0.375, [96, 192, 384]/96/1;
s 0.33/0.5, [128, 256, 512]/128/1; m 0.67/0.75, [192, 384, 768]/192/2;
l 1/1, [256, 512, 1024]/256/3; x 1.33/1.25, [320, 640, 1280]/320/4.
"""
from typing import Optional, Sequence

from helpers_state_dict import Shapes, conv_bn, csp_layer, dw_sep_bn

# in_channels, out_channels, num_blocks, add_identity, use_spp (mmdetection's tables)
CSPNEXT_ARCH = {
    'P5': [[64, 128, 3, True, False], [128, 256, 6, True, False],
           [256, 512, 6, True, False], [512, 1024, 3, False, True]],
    'P6': [[64, 128, 3, True, False], [128, 256, 6, True, False],
           [256, 512, 6, True, False], [512, 768, 3, True, False],
           [768, 1024, 3, False, True]],
}
CSP_DARKNET_ARCH = {
    'P5': [[64, 128, 3, True, False], [128, 256, 9, True, False],
           [256, 512, 9, True, False], [512, 1024, 3, False, True]],
    'P6': [[64, 128, 3, True, False], [128, 256, 9, True, False],
           [256, 512, 9, True, False], [512, 768, 3, True, False],
           [768, 1024, 3, False, True]],
}


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def _stages(prefix: str, rows: list, deepen_factor: float, widen_factor: float,
            use_depthwise: bool, num_pools: int, **csp) -> Shapes:
    """``stage1``..``stageN`` of either backbone; ``csp`` goes to ``csp_layer``."""
    keys = {}
    down = dw_sep_bn if use_depthwise else conv_bn
    for i, (in_c, out_c, num_blocks, _, use_spp) in enumerate(rows):
        in_c, out_c = int(in_c * widen_factor), int(out_c * widen_factor)
        num_blocks = max(round(num_blocks * deepen_factor), 1)
        stage = _join(prefix, f'stage{i + 1}')
        keys.update(down(f'{stage}.0', in_c, out_c, 3))
        if use_spp:
            keys.update(conv_bn(f'{stage}.1.conv1', out_c, out_c // 2, 1))
            keys.update(conv_bn(f'{stage}.1.conv2', out_c // 2 * (num_pools + 1), out_c, 1))
        csp_index = 2 if use_spp else 1
        keys.update(csp_layer(f'{stage}.{csp_index}', out_c, out_c, num_blocks,
                              depthwise=use_depthwise, **csp))
    return keys


def cspnext(prefix: str = '', arch: str = 'P5', deepen_factor: float = 1.0,
            widen_factor: float = 1.0, expand_ratio: float = 0.5,
            channel_attention: bool = True, use_depthwise: bool = False,
            spp_kernel_sizes: Sequence[int] = (5, 9, 13),
            arch_ovewrite: Optional[list] = None) -> Shapes:
    """CSPNeXt: stem of three 3x3 ConvModules (3 -> c/2 -> c/2 -> c, always plain convs),
    stages with CSPNeXt blocks."""
    rows = arch_ovewrite or CSPNEXT_ARCH[arch]
    half, full = int(rows[0][0] * widen_factor // 2), int(rows[0][0] * widen_factor)
    keys = {
        **conv_bn(_join(prefix, 'stem.0'), 3, half, 3),
        **conv_bn(_join(prefix, 'stem.1'), half, half, 3),
        **conv_bn(_join(prefix, 'stem.2'), half, full, 3),
    }
    keys.update(_stages(prefix, rows, deepen_factor, widen_factor, use_depthwise,
                        len(spp_kernel_sizes), expand_ratio=expand_ratio, cspnext=True,
                        attention=channel_attention))
    return keys


def csp_darknet(prefix: str = '', deepen_factor: float = 1.0, widen_factor: float = 1.0,
                use_depthwise: bool = False, arch: str = 'P5',
                spp_kernal_sizes: Sequence[int] = (5, 9, 13),
                arch_ovewrite: Optional[list] = None) -> Shapes:
    """CSPDarknet: Focus stem (one 3x3 ConvModule on 4 * 3 space-to-depth channels, never
    depthwise), stages with Darknet bottlenecks (expand ratio 0.5, no attention)."""
    rows = arch_ovewrite or CSP_DARKNET_ARCH[arch]
    keys = conv_bn(_join(prefix, 'stem.conv'), 12, int(rows[0][0] * widen_factor), 3)
    keys.update(_stages(prefix, rows, deepen_factor, widen_factor, use_depthwise,
                        len(spp_kernal_sizes), cspnext=False))
    return keys


def _pafpn(prefix: str, in_channels: Sequence[int], out_channels: int, num_csp_blocks: int,
           expand_ratio: float, use_depthwise: bool, cspnext: bool, out_kernel: int,
           out_depthwise: bool) -> Shapes:
    csp = dict(num_blocks=num_csp_blocks, expand_ratio=expand_ratio, cspnext=cspnext,
               depthwise=use_depthwise)
    keys = {}
    # top-down, coarsest level first: 1x1 reduce C_idx -> C_idx-1, CSP(2 C_idx-1 -> C_idx-1)
    for i, idx in enumerate(range(len(in_channels) - 1, 0, -1)):
        keys.update(conv_bn(_join(prefix, f'reduce_layers.{i}'), in_channels[idx],
                            in_channels[idx - 1], 1))
        keys.update(csp_layer(_join(prefix, f'top_down_blocks.{i}'), in_channels[idx - 1] * 2,
                              in_channels[idx - 1], **csp))
    # bottom-up: stride-2 3x3 C_idx -> C_idx, CSP(2 C_idx -> C_idx+1)
    down = dw_sep_bn if use_depthwise else conv_bn
    for idx in range(len(in_channels) - 1):
        keys.update(down(_join(prefix, f'downsamples.{idx}'), in_channels[idx],
                         in_channels[idx], 3))
        keys.update(csp_layer(_join(prefix, f'bottom_up_blocks.{idx}'), in_channels[idx] * 2,
                              in_channels[idx + 1], **csp))
    out = dw_sep_bn if out_depthwise else conv_bn
    for i, c in enumerate(in_channels):
        keys.update(out(_join(prefix, f'out_convs.{i}'), c, out_channels, out_kernel))
    return keys


def cspnext_pafpn(prefix: str, in_channels: Sequence[int], out_channels: int,
                  num_csp_blocks: int = 3, expand_ratio: float = 0.5,
                  use_depthwise: bool = False) -> Shapes:
    """CSPNeXtPAFPN: CSPNeXt blocks without attention, 3x3 output convs. mmdetection builds
    the output convs with the same ``conv`` as the downsamples, so with ``use_depthwise``
    they are depthwise separable too (no RTMDet COCO config sets it)."""
    return _pafpn(prefix, in_channels, out_channels, num_csp_blocks, expand_ratio,
                  use_depthwise, cspnext=True, out_kernel=3, out_depthwise=use_depthwise)


def yolox_pafpn(prefix: str, in_channels: Sequence[int], out_channels: int,
                num_csp_blocks: int = 3, use_depthwise: bool = False) -> Shapes:
    """YOLOXPAFPN: Darknet bottlenecks (expand ratio 0.5), 1x1 output ConvModules (plain
    even with ``use_depthwise``)."""
    return _pafpn(prefix, in_channels, out_channels, num_csp_blocks, 0.5, use_depthwise,
                  cspnext=False, out_kernel=1, out_depthwise=False)
