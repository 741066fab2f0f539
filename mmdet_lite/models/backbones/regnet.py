"""RegNetX backbone (`Radosavovic et al. 2020 <https://arxiv.org/abs/2003.13678>`_).

A RegNet is a ResNeXt whose per-block widths follow a quantized linear rule instead of a
hand-picked table: block j gets the continuous width ``w0 + wa * j``, snapped to the nearest
``w0 * wm**k`` (integer k) and to a multiple of 8; runs of equal widths form the stages.
RegNetX-3.2GF comes out as 2 / 6 / 15 / 2 blocks of 96 / 192 / 432 / 1008 channels with
48-channel groups.

Argument names, defaults and state_dict keys are mmdetection 3.x's (``conv1``/``bn1`` stem,
``layer1..4`` of ResNeXt bottlenecks with ``conv{k}``/``bn{k}`` and ``downsample.0``/``.1``),
so mmdetection's ImageNet RegNet checkpoints load through
``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from itertools import groupby
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.models.layers.res_layer import build_conv, build_norm
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

from .resnet import ResNet, ResNetArgumentError
from .resnext import Bottleneck as _ResNeXtBottleneck

__all__ = ['RegNet', 'Bottleneck']


class Bottleneck(_ResNeXtBottleneck):
    """The ResNeXt Bottleneck with ``expansion`` 1: a RegNet block outputs ``planes``
    channels (the stage width) rather than ``4 * planes``.

    mmdetection builds RegNet from ResNeXt's Bottleneck while temporarily setting its class
    attribute ``expansion`` to 1; a subclass gives the same layers without touching the
    shared class. It keeps the name ``Bottleneck`` so that printed models read as
    mmdetection's.
    """
    expansion = 1


@MODELS.register_module()
class RegNet(ResNet):
    """RegNetX backbone returning the feature maps of the selected stages.

    The stem is a single stride-2 3x3 conv (no max-pool); each stage then halves the
    resolution, so with the default strides stage i has stride ``4 * 2**i``. RegNetX-3.2GF
    on [2, 3, 768, 768] gives [2, 96, 192, 192], [2, 192, 96, 96], [2, 432, 48, 48],
    [2, 1008, 24, 24].

    Args:
        arch (str | dict): A name in ``arch_settings`` ('regnetx_400mf' ... 'regnetx_12gf')
            or a dict with ``w0`` (initial width, a multiple of 8), ``wa`` (width slope,
            >= 0), ``wm`` (width multiplier between stages, > 1), ``group_w`` (channels per
            group of the 3x3 convs), ``depth`` (total number of blocks) and ``bot_mul``
            (bottleneck width ratio).
        in_channels (int): Input image channels. Defaults to 3.
        stem_channels (int): Stem conv output channels. Defaults to 32.
        base_channels (int): Kept for ResNet compatibility; widths come from ``arch``.
            Defaults to 32.
        strides (Sequence[int]): Stride of each stage's first block. Defaults to (2, 2, 2, 2).
        dilations (Sequence[int]): Dilation of each stage. Defaults to (1, 1, 1, 1).
        out_indices (Sequence[int]): Stages whose outputs are returned. Defaults to
            (0, 1, 2, 3).
        style (str): 'pytorch' (stride on the 3x3 conv) or 'caffe' (on the first 1x1).
            Defaults to 'pytorch'.
        deep_stem (bool): Stored only: mmdetection's RegNet stem ignores it (and
            ``frozen_stages >= 0`` then fails on the missing deep stem, as there).
            Defaults to False.
        avg_down (bool): Downsample shortcuts with AvgPool2d + stride-1 1x1 conv.
            Defaults to False.
        frozen_stages (int): Freeze the stem and stages 1..k; -1 freezes nothing.
            Defaults to -1.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN', requires_grad=True).
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Defaults to True.
        dcn (dict, optional): Deformable conv config for the 3x3 convs of the stages flagged
            in ``stage_with_dcn``. Defaults to None.
        stage_with_dcn (Sequence[bool]): Which stages use ``dcn``. Defaults to (False,) * 4.
        plugins (list[dict], optional): Extra block layers, as in :class:`ResNet`.
            Defaults to None.
        with_cp (bool): Activation checkpointing in every block. Defaults to False.
        zero_init_residual (bool): Start every block's last norm (``bn3``) at zero.
            Defaults to True.
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None:
            Kaiming convs, unit norms.
    """

    arch_settings = {
        'regnetx_400mf': dict(w0=24, wa=24.48, wm=2.54, group_w=16, depth=22, bot_mul=1.0),
        'regnetx_800mf': dict(w0=56, wa=35.73, wm=2.28, group_w=16, depth=16, bot_mul=1.0),
        'regnetx_1.6gf': dict(w0=80, wa=34.01, wm=2.25, group_w=24, depth=18, bot_mul=1.0),
        'regnetx_3.2gf': dict(w0=88, wa=26.31, wm=2.25, group_w=48, depth=25, bot_mul=1.0),
        'regnetx_4.0gf': dict(w0=96, wa=38.65, wm=2.43, group_w=40, depth=23, bot_mul=1.0),
        'regnetx_6.4gf': dict(w0=184, wa=60.83, wm=2.07, group_w=56, depth=17, bot_mul=1.0),
        'regnetx_8.0gf': dict(w0=80, wa=49.56, wm=2.88, group_w=120, depth=23, bot_mul=1.0),
        'regnetx_12gf': dict(w0=168, wa=73.36, wm=2.37, group_w=112, depth=19, bot_mul=1.0),
    }

    def __init__(self,
                 arch: Union[str, dict],
                 in_channels: int = 3,
                 stem_channels: int = 32,
                 base_channels: int = 32,
                 strides: Sequence[int] = (2, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = 'pytorch',
                 deep_stem: bool = False,
                 avg_down: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 dcn: OptConfigType = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[List[dict]] = None,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        # ResNet's constructor picks its stages from `depth`; RegNet derives them from `arch`
        # and shares the rest (checks, init config, plugins, freezing, train()).
        BaseModule.__init__(self, init_cfg)
        arch = self._resolve_arch(arch)
        widths, num_stages = self.generate_regnet(arch['w0'], arch['wa'], arch['wm'],
                                                  arch['depth'])
        stage_widths, stage_blocks = self.get_stages_from_blocks(widths)
        self.bottleneck_ratio = [arch['bot_mul']] * num_stages
        stage_widths, group_widths = self.adjust_width_group(
            stage_widths, self.bottleneck_ratio, [arch['group_w']] * num_stages)
        self._check_args(Bottleneck, num_stages, strides, dilations, out_indices, style,
                         frozen_stages, dcn, stage_with_dcn)

        self.stage_widths = stage_widths
        self.group_widths = group_widths
        self.depth = sum(stage_blocks)
        self.stem_channels = stem_channels
        self.base_channels = base_channels
        self.num_stages = num_stages
        self.strides = strides
        self.dilations = dilations
        self.out_indices = out_indices
        self.style = style
        self.deep_stem = deep_stem
        self.avg_down = avg_down
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.with_cp = with_cp
        self.norm_eval = norm_eval
        self.dcn = dcn
        self.stage_with_dcn = stage_with_dcn
        self.plugins = plugins
        self.zero_init_residual = zero_init_residual
        self.block = Bottleneck
        self.stage_blocks = stage_blocks[:num_stages]

        self._make_stem_layer(in_channels, stem_channels)
        block_init_cfg = self._resolve_init_cfg(pretrained, init_cfg)
        if pretrained is None and init_cfg is None and zero_init_residual:
            # Unlike ResNet's (which tests `block is Bottleneck`), RegNet's zero init
            # always reaches its blocks' last norm.
            block_init_cfg = dict(type='Constant', val=0, override=dict(name='norm3'))

        self.inplanes = stem_channels
        self.res_layers = []
        for i, num_blocks in enumerate(self.stage_blocks):
            bottleneck_width = int(round(stage_widths[i] * self.bottleneck_ratio[i]))
            # ResNeXt's width rule, floor(planes * base_width / base_channels) * groups,
            # gives group_width * groups with these arguments.
            res_layer = self.make_res_layer(
                block=self.block,
                inplanes=self.inplanes,
                planes=stage_widths[i],
                num_blocks=num_blocks,
                stride=strides[i],
                dilation=dilations[i],
                style=style,
                avg_down=avg_down,
                with_cp=with_cp,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                dcn=dcn if dcn is not None and stage_with_dcn[i] else None,
                plugins=self.make_stage_plugins(plugins, i) if plugins is not None else None,
                groups=bottleneck_width // group_widths[i],
                base_width=group_widths[i],
                base_channels=stage_widths[i],
                init_cfg=block_init_cfg)
            self.inplanes = stage_widths[i]
            layer_name = f'layer{i + 1}'
            self.add_module(layer_name, res_layer)
            self.res_layers.append(layer_name)

        self._freeze_stages()
        self.feat_dim = stage_widths[-1]

    def _resolve_arch(self, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch not in self.arch_settings:
                raise ResNetArgumentError(f'Unknown RegNet arch {arch!r}; expected one of '
                                          f'{sorted(self.arch_settings)} or a dict.')
            return self.arch_settings[arch]
        if not isinstance(arch, dict):
            raise ValueError(f'RegNet arch must be a str or a dict, got {type(arch)}.')
        return arch

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        self.conv1 = build_conv(self.conv_cfg, in_channels, stem_channels, kernel_size=3,
                                stride=2, padding=1, bias=False)
        self.norm1_name, norm1 = build_norm(self.norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)

    def generate_regnet(self,
                        initial_width: int,
                        width_slope: float,
                        width_parameter: float,
                        depth: int,
                        divisor: int = 8) -> Tuple[List[int], int]:
        """Per-block widths of a RegNet.

        Args:
            initial_width (int): ``w0``, width of the first block; a multiple of ``divisor``.
            width_slope (float): ``wa`` >= 0, growth of the continuous width per block.
            width_parameter (float): ``wm`` > 1, ratio between consecutive stage widths.
            depth (int): Number of blocks.
            divisor (int): Widths are rounded to multiples of it. Defaults to 8.

        Returns:
            tuple[list[int], int]: The ``depth`` block widths and the number of distinct
            widths (stages).
        """
        if width_slope < 0:
            raise ResNetArgumentError(f'RegNet wa must be >= 0, got {width_slope}.')
        if initial_width <= 0 or initial_width % divisor != 0:
            raise ResNetArgumentError(f'RegNet w0 must be a positive multiple of {divisor}, '
                                      f'got {initial_width}.')
        if width_parameter <= 1:
            raise ResNetArgumentError(f'RegNet wm must be > 1, got {width_parameter}.')
        continuous = np.arange(depth) * width_slope + initial_width
        # Nearest power of wm in log space, then the nearest multiple of the divisor; the
        # numpy float arithmetic is mmdetection's, so boundary cases round the same way.
        exponents = np.round(np.log(continuous / initial_width) / np.log(width_parameter))
        widths = initial_width * np.power(width_parameter, exponents)
        widths = np.round(np.divide(widths, divisor)) * divisor
        return widths.astype(int).tolist(), len(np.unique(widths))

    @staticmethod
    def quantize_float(number: float, divisor: int) -> int:
        """The multiple of ``divisor`` nearest to ``number``, as an int."""
        return int(round(number / divisor) * divisor)

    def adjust_width_group(self, widths: List[int], bottleneck_ratio: List[float],
                           groups: List[int]) -> Tuple[List[int], List[int]]:
        """Make each stage's bottleneck width a multiple of its group width.

        Args:
            widths (list[int]): Stage widths.
            bottleneck_ratio (list[float]): Bottleneck width / stage width, per stage.
            groups (list[int]): Group width (channels per group) per stage.

        Returns:
            tuple[list[int], list[int]]: Adjusted stage widths and group widths (a group
            width never exceeds its bottleneck width).
        """
        bottleneck_widths = [int(w * b) for w, b in zip(widths, bottleneck_ratio)]
        groups = [min(g, w_bot) for g, w_bot in zip(groups, bottleneck_widths)]
        bottleneck_widths = [self.quantize_float(w_bot, g)
                             for w_bot, g in zip(bottleneck_widths, groups)]
        widths = [int(w_bot / b) for w_bot, b in zip(bottleneck_widths, bottleneck_ratio)]
        return widths, groups

    def get_stages_from_blocks(self, widths: List[int]) -> Tuple[List[int], List[int]]:
        """Split per-block widths into stages of consecutive equal widths.

        Args:
            widths (list[int]): Width of each block.

        Returns:
            tuple[list[int], list[int]]: The width and the number of blocks of each stage.
        """
        runs = [(width, len(list(run))) for width, run in groupby(widths)]
        return [width for width, _ in runs], [count for _, count in runs]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Compute the feature maps of the stages in ``out_indices``.

        Args:
            x (Tensor): Images of shape [B, in_channels, H, W].

        Returns:
            tuple[Tensor]: For each i in ``out_indices``, [B, stage_widths[i], H / 2**(i+2),
            W / 2**(i+2)] with the default strides.
        """
        x = self.relu(self.norm1(self.conv1(x)))  # [B, stem_channels, H/2, W/2]
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)  # [B, stage_widths[i], H/2**(i+2), W/2**(i+2)]
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
