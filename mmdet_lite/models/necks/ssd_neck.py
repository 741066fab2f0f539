"""SSDNeck: the extra feature layers of SSD (Liu et al., https://arxiv.org/abs/1512.02325)."""
import copy
from typing import Sequence, Tuple

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

from .neck_arg_checks import NeckArgumentError


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (SSD's conv4_3 norm).

    Args:
        n_dims (int): Number of channels C.
        scale (float): Initial value of every scale. Defaults to 20.
        eps (float): Added to the norm against division by zero. Defaults to 1e-10.
    """

    def __init__(self, n_dims: int, scale: float = 20., eps: float = 1e-10) -> None:
        super().__init__()
        self.n_dims = n_dims
        self.weight = nn.Parameter(torch.full((n_dims,), float(scale)))
        self.eps = eps
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        """Normalise [N, C, H, W] over C and scale per channel; same shape and dtype."""
        # Computed in float32: the squared sum overflows fp16 on real activations.
        x_float = x.float()
        norm = x_float.pow(2).sum(1, keepdim=True).sqrt() + self.eps
        return (self.weight.float()[None, :, None, None] * x_float / norm).type_as(x)


@MODELS.register_module()
class SSDNeck(BaseModule):
    """Pass the backbone maps through (the first one L2-normalised) and add extra levels.

    Extra level i is a 1x1 ConvModule to ``out_channels[j] // 2`` followed by a 3x3 (the
    last one ``last_kernel_size``) ConvModule, or depthwise-separable conv, with the
    level's stride and padding, applied to the previous level.

    Args:
        in_channels (Sequence[int]): Channels of the backbone maps.
        out_channels (Sequence[int]): Channels of every output level; starts with
            ``in_channels``, the rest are the extra levels.
        level_strides (Sequence[int]): Stride of each extra level's 3x3 conv.
        level_paddings (Sequence[int]): Padding of each extra level's 3x3 conv.
        l2_norm_scale (float, optional): Initial L2Norm scale of the first map; None or 0
            skips the normalisation. Defaults to 20.
        last_kernel_size (int): Kernel size of the last extra level. Defaults to 3.
        use_depthwise (bool): Depthwise-separable second convs. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict, optional): Norm layer config. Defaults to None.
        act_cfg (dict): Activation config. Defaults to ``dict(type='ReLU')``.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Xavier
            uniform on Conv2d and constant 1 on BatchNorm2d; with L2Norm a constant
            ``l2_norm_scale`` init of ``l2_norm`` is appended.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: Sequence[int],
                 level_strides: Sequence[int],
                 level_paddings: Sequence[int],
                 l2_norm_scale: float = 20.,
                 last_kernel_size: int = 3,
                 use_depthwise: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 act_cfg: ConfigType = dict(type='ReLU'),
                 init_cfg: OptMultiConfig = [
                     dict(type='Xavier', distribution='uniform', layer='Conv2d'),
                     dict(type='Constant', val=1, layer='BatchNorm2d'),
                 ]) -> None:
        super().__init__(init_cfg)
        num_in, num_out = len(in_channels), len(out_channels)
        if not num_out > num_in:
            raise NeckArgumentError(f'SSDNeck out_channels ({num_out} levels) must be longer '
                                    f'than in_channels ({num_in} levels).')
        if num_out - num_in != len(level_strides):
            raise NeckArgumentError(f'SSDNeck level_strides needs one entry per extra level '
                                    f'({num_out - num_in}), got {len(level_strides)}.')
        if len(level_strides) != len(level_paddings):
            raise NeckArgumentError(f'SSDNeck level_paddings ({len(level_paddings)}) must be '
                                    f'as long as level_strides ({len(level_strides)}).')
        if list(in_channels) != list(out_channels[:num_in]):
            raise NeckArgumentError(f'SSDNeck out_channels must start with in_channels '
                                    f'{list(in_channels)}, got {list(out_channels)}.')

        if l2_norm_scale:
            self.l2_norm = L2Norm(in_channels[0], l2_norm_scale)
            # A list whatever form the config gave, so the L2Norm init can be appended.
            if self.init_cfg is None:
                self.init_cfg = []
            elif isinstance(self.init_cfg, dict):
                self.init_cfg = [self.init_cfg]
            else:
                self.init_cfg = copy.deepcopy(list(self.init_cfg))
            self.init_cfg.append(
                dict(type='Constant', val=self.l2_norm.scale, override=dict(name='l2_norm')))

        second_conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule
        extra_channels = out_channels[num_in:]
        self.extra_layers = nn.ModuleList()
        for i, (channels, stride, padding) in enumerate(
                zip(extra_channels, level_strides, level_paddings)):
            kernel_size = last_kernel_size if i == len(extra_channels) - 1 else 3
            self.extra_layers.append(nn.Sequential(
                ConvModule(out_channels[num_in - 1 + i], channels // 2, 1, conv_cfg=conv_cfg,
                           norm_cfg=norm_cfg, act_cfg=act_cfg),
                second_conv(channels // 2, channels, kernel_size, stride=stride,
                            padding=padding, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                            act_cfg=act_cfg)))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Add the extra levels.

        Args:
            inputs (Sequence[Tensor]): Backbone maps ``[B, in_channels[i], H_i, W_i]``.

        Returns:
            tuple[Tensor]: ``len(out_channels)`` maps; the inputs (first one normalised),
            then each extra level ``[B, out_channels[j], H_j, W_j]``.
        """
        outs = list(inputs)
        if hasattr(self, 'l2_norm'):
            outs[0] = self.l2_norm(outs[0])
        feat = outs[-1]
        for layer in self.extra_layers:
            feat = layer(feat)
            outs.append(feat)
        return tuple(outs)
