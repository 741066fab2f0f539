"""Res2Net backbone (`Gao et al. 2019 <https://arxiv.org/abs/1904.01169>`_).

A Res2Net Bottleneck (``Bottle2neck``) splits the output of its first 1x1 conv into
``scales`` groups of ``width`` channels and replaces the single 3x3 conv by a cascade: split
i (but the last) goes through its own 3x3 conv after adding the previous split's output, so
later splits see ever larger receptive fields. The first block of a stage ('stage' type)
processes the splits independently and average-pools the untouched last split when it
strides.

Argument names, defaults and state_dict keys are mmdetection 3.x's (``conv1``/``bn1``,
``convs.i``/``bns.i``, ``conv3``/``bn3``, ``downsample.1``/``.2`` after the AvgPool2d, and
the deep stem ``stem.0`` ... ``stem.7``), so mmdetection's ImageNet Res2Net checkpoints load
through ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
import math
from typing import List, Optional

import torch
from mmengine.model import Sequential
from torch import Tensor, nn

from mmdet_lite.models.layers.res_layer import Bottleneck as _ResNetBottleneck
from mmdet_lite.models.layers.res_layer import build_conv, build_norm
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

from .resnet import ResNet, ResNetArgumentError

__all__ = ['Res2Net', 'Bottle2neck', 'Res2Layer']


class Bottle2neck(_ResNetBottleneck):
    """Res2Net Bottleneck: 1x1 conv to ``scales * width`` channels, a cascade of
    ``scales - 1`` 3x3 convs over the splits, 1x1 conv to ``4 * planes``.

    Args:
        inplanes (int): Input channels.
        planes (int): Base channels; the block outputs ``planes * 4``.
        scales (int): Number of splits, > 1. Defaults to 4.
        base_width (int): Split width for ``base_channels`` planes:
            ``width = floor(planes * base_width / base_channels)``. Defaults to 26.
        base_channels (int): Planes of the first stage. Defaults to 64.
        stage_type (str): 'stage' (first block of a stage: independent splits, the last
            one average-pooled when the block strides) or 'normal' (cascaded splits).
            Defaults to 'normal'.
        **kwargs: Any other ResNet Bottleneck argument (stride, dilation, style, dcn, ...).
            With ``dcn`` every split conv is deformable; ``fallback_on_stride`` has no effect,
            as in mmdetection, where the base block has already popped it from the config.
    """
    expansion = 4

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 scales: int = 4,
                 base_width: int = 26,
                 base_channels: int = 64,
                 stage_type: str = 'normal',
                 **kwargs) -> None:
        if scales <= 1:
            raise ResNetArgumentError(f'Bottle2neck needs scales > 1 (scales=1 is a plain '
                                      f'ResNet Bottleneck), got {scales}.')
        width = int(math.floor(planes * (base_width / base_channels)))
        # conv1/bn1 and conv3/bn3 come from the ResNet Bottleneck at the widened
        # `width * scales`; its conv2/bn2 are then dropped for the per-split convs.
        super().__init__(inplanes, planes, width=width * scales, **kwargs)
        del self.conv2
        delattr(self, self.norm2_name)

        if stage_type == 'stage' and self.conv2_stride != 1:
            self.pool = nn.AvgPool2d(kernel_size=3, stride=self.conv2_stride, padding=1)
        conv_cfg = self.conv_cfg  # the base block has checked it is None with dcn
        if self.with_dcn:
            conv_cfg = {k: v for k, v in self.dcn.items() if k != 'fallback_on_stride'}
        self.convs = nn.ModuleList(
            build_conv(conv_cfg, width, width, kernel_size=3, stride=self.conv2_stride,
                       padding=self.dilation, dilation=self.dilation, bias=False)
            for _ in range(scales - 1))
        # Named bn1 ... bn{scales-1} by mmcv; the ModuleList indexes them 0 ... scales-2.
        self.bns = nn.ModuleList(
            build_norm(self.norm_cfg, width, postfix=i + 1)[1] for i in range(scales - 1))

        self.stage_type = stage_type
        self.scales = scales
        self.width = width

    def _make_conv2(self, width: int, groups: int) -> nn.Module:
        # The single 3x3 conv is not used (see __init__): skip building its weights.
        return nn.Identity()

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))  # [B, scales * width, H, W]
        out = self.forward_plugin(out, self.after_conv1_plugin_names)

        splits = torch.split(out, self.width, dim=1)  # scales x [B, width, H, W]
        outs = []
        for i in range(self.scales - 1):
            # A 'stage' block has no previous output of the same resolution to add.
            if i == 0 or self.stage_type == 'stage':
                sp = splits[i]
            else:
                sp = sp + splits[i]
            sp = self.relu(self.bns[i](self.convs[i](sp.contiguous())))  # [B, width, H/s, W/s]
            outs.append(sp)
        last = splits[-1]
        if self.stage_type == 'stage' and self.conv2_stride != 1:
            last = self.pool(last)  # match the strided convs' resolution
        out = torch.cat(outs + [last], dim=1)  # [B, scales * width, H/s, W/s]

        out = self.forward_plugin(out, self.after_conv2_plugin_names)
        out = self.norm3(self.conv3(out))  # [B, 4 * planes, H/s, W/s]
        out = self.forward_plugin(out, self.after_conv3_plugin_names)
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


class Res2Layer(Sequential):
    """One Res2Net stage: a 'stage' Bottle2neck, then ``num_blocks - 1`` 'normal' ones.

    The first block's shortcut, when the shape changes, is always AvgPool2d(stride) + a
    stride-1 1x1 conv + norm (``downsample.0/1/2``).

    Args:
        block (type): Block class, :class:`Bottle2neck`.
        inplanes (int): Input channels of the stage.
        planes (int): Base channels of the blocks; the stage outputs ``planes * 4``.
        num_blocks (int): Number of blocks.
        stride (int): Stride of the first block. Defaults to 1.
        avg_down (bool): Ignored, as in mmdetection: the shortcut always average-pools.
            Defaults to True.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        scales (int): Splits per block. Defaults to 4.
        base_width (int): Split width for ``base_channels`` planes. Defaults to 26.
        **kwargs: Passed to every block (dilation, style, with_cp, dcn, plugins,
            base_channels, init_cfg, ...).
    """

    def __init__(self,
                 block: type,
                 inplanes: int,
                 planes: int,
                 num_blocks: int,
                 stride: int = 1,
                 avg_down: bool = True,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 scales: int = 4,
                 base_width: int = 26,
                 **kwargs) -> None:
        self.block = block
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out_channels:
            downsample = nn.Sequential(
                nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True,
                             count_include_pad=False),
                build_conv(conv_cfg, inplanes, out_channels, kernel_size=1, stride=1,
                           bias=False),
                build_norm(norm_cfg, out_channels)[1])

        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, scales=scales,
                      base_width=base_width, **kwargs)
        layers: List[nn.Module] = [
            block(inplanes=inplanes, planes=planes, stride=stride, downsample=downsample,
                  stage_type='stage', **common)
        ]
        layers += [block(inplanes=out_channels, planes=planes, stride=1, **common)
                   for _ in range(1, num_blocks)]
        super().__init__(*layers)


@MODELS.register_module()
class Res2Net(ResNet):
    """Res2Net backbone: a ResNet-D (deep stem, average-pool shortcuts) of Bottle2necks.

    Res2Net-101 (26w x 4s) on [2, 3, 768, 768] gives [2, 256, 192, 192], [2, 512, 96, 96],
    [2, 1024, 48, 48], [2, 2048, 24, 24].

    Args:
        scales (int): Splits per block. Defaults to 4.
        base_width (int): Split width in the first stage (doubling each stage).
            Defaults to 26.
        style (str): Ignored: always 'pytorch', as in mmdetection.
        deep_stem (bool): Ignored: always True, as in mmdetection.
        avg_down (bool): Ignored: always True, as in mmdetection.
        pretrained (str, optional): Deprecated alias of a Pretrained ``init_cfg``.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None.
        **kwargs: Any other :class:`ResNet` argument (depth 50, 101 or 152, out_indices,
            frozen_stages, norm_cfg, norm_eval, dcn, plugins, ...).
    """

    arch_settings = {
        50: (Bottle2neck, (3, 4, 6, 3)),
        101: (Bottle2neck, (3, 4, 23, 3)),
        152: (Bottle2neck, (3, 8, 36, 3)),
    }

    def __init__(self,
                 scales: int = 4,
                 base_width: int = 26,
                 style: str = 'pytorch',
                 deep_stem: bool = True,
                 avg_down: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        # make_res_layer, called from ResNet.__init__, needs these.
        self.scales = scales
        self.base_width = base_width
        # mmdetection quirk, kept: the style/deep_stem/avg_down arguments are accepted but
        # overridden, so every Res2Net has ImageNet Res2Net-v1b's layout.
        super().__init__(style='pytorch', deep_stem=True, avg_down=True, pretrained=pretrained,
                         init_cfg=init_cfg, **kwargs)

    def make_res_layer(self, **kwargs) -> Res2Layer:
        """Pack all blocks of a stage into a ``Res2Layer``."""
        return Res2Layer(scales=self.scales, base_width=self.base_width,
                         base_channels=self.base_channels, **kwargs)
