"""ResNeSt backbone (`Zhang et al. 2020 <https://arxiv.org/abs/2004.08955>`_).

A ResNeSt is a ResNet-D (deep stem, average-pool shortcuts) whose Bottleneck 3x3 conv is a
split-attention conv: ``radix`` parallel grouped convs whose outputs are summed, pooled into
a channel descriptor, and re-weighted per channel by a softmax over the radix splits. A
strided block average-pools after that conv instead of striding it (``avg_down_stride``).

Argument names, defaults and state_dict keys are mmdetection 3.x's (``conv2.conv``,
``conv2.bn0``, ``conv2.fc1``, ``conv2.bn1``, ``conv2.fc2``; no ``bn2`` in the block), so
mmdetection's ImageNet ResNeSt checkpoints load through
``init_cfg=dict(type='Pretrained', checkpoint=...)``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.models.layers.res_layer import ResLayer, build_conv, build_norm
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

from .resnet import ResNetV1d
from .resnext import Bottleneck as _ResNeXtBottleneck

__all__ = ['ResNeSt', 'SplitAttentionConv2d', 'RSoftmax', 'Bottleneck']


class RSoftmax(nn.Module):
    """Attention weights over the radix splits: a softmax across splits (radix > 1) or a
    sigmoid (radix 1, a squeeze-excitation gate).

    Args:
        radix (int): Number of splits.
        groups (int): Groups (cardinality) of the attention logits.
    """

    def __init__(self, radix: int, groups: int) -> None:
        super().__init__()
        self.radix = radix
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, radix * C, 1, 1] logits, laid out group-major
        (group, split, channel) as the grouped fc2 conv produces them.

        Returns:
            Tensor: [B, radix * C] weights laid out split-major (split, group, channel),
            summing to 1 over the splits of each channel (radix > 1).
        """
        batch = x.size(0)
        if self.radix == 1:
            return torch.sigmoid(x)
        x = x.view(batch, self.groups, self.radix, -1).transpose(1, 2)  # [B, R, G, C/G]
        return F.softmax(x, dim=1).reshape(batch, -1)


class SplitAttentionConv2d(BaseModule):
    """Split-attention conv: ``radix`` grouped convs re-weighted by channel attention.

    Args:
        in_channels (int): Input channels.
        channels (int): Output channels.
        kernel_size (int | tuple[int]): Conv kernel size.
        stride (int | tuple[int]): Conv stride. Defaults to 1.
        padding (int | tuple[int]): Conv zero padding. Defaults to 0.
        dilation (int | tuple[int]): Conv dilation. Defaults to 1.
        groups (int): Groups (cardinality) of each split's conv. Defaults to 1.
        radix (int): Number of splits. Defaults to 2.
        reduction_factor (int): The attention's hidden width is
            ``max(in_channels * radix // reduction_factor, 32)``. Defaults to 4.
        conv_cfg (dict, optional): Config of the split conv. Defaults to None (nn.Conv2d).
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        dcn (dict, optional): Deformable conv config for the split conv; with
            ``fallback_on_stride=True`` a plain conv is kept. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 channels: int,
                 kernel_size,
                 stride=1,
                 padding=0,
                 dilation=1,
                 groups: int = 1,
                 radix: int = 2,
                 reduction_factor: int = 4,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 dcn: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        inter_channels = max(in_channels * radix // reduction_factor, 32)
        self.radix = radix
        self.groups = groups
        self.channels = channels
        self.with_dcn = dcn is not None
        self.dcn = dcn
        if self.with_dcn:
            dcn = dict(dcn)  # popping must not touch the config shared by every block
            # mmdetection falls back to the plain conv whatever the stride.
            if not dcn.pop('fallback_on_stride', False):
                if conv_cfg is not None:
                    raise ValueError('conv_cfg must be None when dcn is set: dcn replaces '
                                     'the split conv.')
                conv_cfg = dcn
        # All radix splits in one conv: groups * radix groups, split-major output channels.
        self.conv = build_conv(conv_cfg, in_channels, channels * radix, kernel_size,
                               stride=stride, padding=padding, dilation=dilation,
                               groups=groups * radix, bias=False)
        # Numbered from 0 (bn0) as in the original ResNeSt, so fc1's norm is bn1.
        self.norm0_name, norm0 = build_norm(norm_cfg, channels * radix, postfix=0)
        self.add_module(self.norm0_name, norm0)
        self.relu = nn.ReLU(inplace=True)
        # The attention MLP is two plain 1x1 convs with biases, whatever conv_cfg says.
        self.fc1 = nn.Conv2d(channels, inter_channels, 1, groups=groups)
        self.norm1_name, norm1 = build_norm(norm_cfg, inter_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.fc2 = nn.Conv2d(inter_channels, channels * radix, 1, groups=groups)
        self.rsoftmax = RSoftmax(radix, groups)

    @property
    def norm0(self) -> nn.Module:
        """nn.Module: the norm after the split conv."""
        return getattr(self, self.norm0_name)

    @property
    def norm1(self) -> nn.Module:
        """nn.Module: the norm inside the attention MLP."""
        return getattr(self, self.norm1_name)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, in_channels, H, W].

        Returns:
            Tensor: [B, channels, H', W'], the attention-weighted sum of the splits.
        """
        x = self.relu(self.norm0(self.conv(x)))  # [B, radix * channels, H', W']
        batch = x.size(0)
        if self.radix > 1:
            splits = x.view(batch, self.radix, -1, *x.shape[2:])  # [B, R, channels, H', W']
            gap = splits.sum(dim=1)  # [B, channels, H', W']
        else:
            gap = x
        gap = F.adaptive_avg_pool2d(gap, 1)  # [B, channels, 1, 1]
        gap = self.relu(self.norm1(self.fc1(gap)))  # [B, inter_channels, 1, 1]
        atten = self.rsoftmax(self.fc2(gap)).view(batch, -1, 1, 1)  # [B, R * channels, 1, 1]
        if self.radix > 1:
            attens = atten.view(batch, self.radix, -1, 1, 1)  # [B, R, channels, 1, 1]
            out = (attens * splits).sum(dim=1)
        else:
            out = atten * x
        return out.contiguous()  # [B, channels, H', W']


class Bottleneck(_ResNeXtBottleneck):
    """ResNeSt Bottleneck: a ResNeXt Bottleneck whose 3x3 conv (with its norm and ReLU) is
    a :class:`SplitAttentionConv2d`, followed by a 3x3 average pool in strided blocks.

    Args:
        inplanes (int): Input channels.
        planes (int): Base channels; the block outputs ``planes * 4``.
        groups (int): Groups (cardinality) of the split conv. Defaults to 1.
        base_width (int): Channels per group for ``base_channels`` planes. Defaults to 4.
        base_channels (int): Planes of the first stage. Defaults to 64.
        radix (int): Splits of the split-attention conv. Defaults to 2.
        reduction_factor (int): Reduction of the attention's hidden width. Defaults to 4.
        avg_down_stride (bool): In a strided block, run the split conv at stride 1 and
            downsample with AvgPool2d(3, stride) after it. Defaults to True.
        **kwargs: Any other ResNet Bottleneck argument (stride, dilation, style, dcn, ...).
            With ``dcn`` the split conv is deformable in every block; ``fallback_on_stride``
            has no effect, as in mmdetection, where the base block has already popped it.
    """
    expansion = 4

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 groups: int = 1,
                 base_width: int = 4,
                 base_channels: int = 64,
                 radix: int = 2,
                 reduction_factor: int = 4,
                 avg_down_stride: bool = True,
                 **kwargs) -> None:
        # Read by _make_conv2 while the base constructor builds the layers.
        self.radix = radix
        self.reduction_factor = reduction_factor
        self._avg_down_stride_arg = avg_down_stride
        super().__init__(inplanes, planes, groups=groups, base_width=base_width,
                         base_channels=base_channels, **kwargs)
        # The split-attention conv normalizes inside (conv2.bn0): the block has no bn2.
        delattr(self, self.norm2_name)
        self.avg_down_stride = self._pools_after_conv2()
        if self.avg_down_stride:
            self.avd_layer = nn.AvgPool2d(3, self.conv2_stride, padding=1)

    def _pools_after_conv2(self) -> bool:
        return self._avg_down_stride_arg and self.conv2_stride > 1

    def _make_conv2(self, width: int, groups: int) -> nn.Module:
        dcn: Optional[dict] = None
        if self.with_dcn:
            dcn = {k: v for k, v in self.dcn.items() if k != 'fallback_on_stride'}
        return SplitAttentionConv2d(
            width, width, kernel_size=3,
            stride=1 if self._pools_after_conv2() else self.conv2_stride,
            padding=self.dilation, dilation=self.dilation, groups=groups, radix=self.radix,
            reduction_factor=self.reduction_factor, conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg, dcn=dcn)

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))  # [B, width, H, W] ('caffe': H/s, W/s)
        out = self.forward_plugin(out, self.after_conv1_plugin_names)
        out = self.conv2(out)  # [B, width, H, W], or H/s, W/s without avg_down_stride
        if self.avg_down_stride:
            out = self.avd_layer(out)  # [B, width, H/s, W/s]
        out = self.forward_plugin(out, self.after_conv2_plugin_names)
        out = self.norm3(self.conv3(out))  # [B, 4 * planes, H/s, W/s]
        out = self.forward_plugin(out, self.after_conv3_plugin_names)
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


@MODELS.register_module()
class ResNeSt(ResNetV1d):
    """ResNeSt backbone; depth 50, 101, 152 or 200.

    ResNeSt-50 on [2, 3, 768, 768] gives [2, 256, 192, 192], [2, 512, 96, 96],
    [2, 1024, 48, 48], [2, 2048, 24, 24].

    Args:
        groups (int): Groups (cardinality) of every split conv. Defaults to 1.
        base_width (int): Channels per group in the first stage. Defaults to 4.
        radix (int): Splits of every split-attention conv. Defaults to 2.
        reduction_factor (int): Reduction of the attention's hidden width. Defaults to 4.
        avg_down_stride (bool): Average-pool instead of striding the split conv.
            Defaults to True.
        **kwargs: Any :class:`ResNet` argument but ``deep_stem``/``avg_down`` (both True).
    """

    arch_settings = {
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
        200: (Bottleneck, (3, 24, 36, 3)),
    }

    def __init__(self,
                 groups: int = 1,
                 base_width: int = 4,
                 radix: int = 2,
                 reduction_factor: int = 4,
                 avg_down_stride: bool = True,
                 **kwargs) -> None:
        # make_res_layer, called from ResNet.__init__, needs these.
        self.groups = groups
        self.base_width = base_width
        self.radix = radix
        self.reduction_factor = reduction_factor
        self.avg_down_stride = avg_down_stride
        super().__init__(**kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        """Pack all blocks of a stage into a ``ResLayer`` of ResNeSt Bottlenecks."""
        return ResLayer(groups=self.groups, base_width=self.base_width,
                        base_channels=self.base_channels, radix=self.radix,
                        reduction_factor=self.reduction_factor,
                        avg_down_stride=self.avg_down_stride, **kwargs)
