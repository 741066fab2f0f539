"""DyHead: scale-, spatial- and task-aware attention over FPN levels (`Dai et al. 2021
<https://arxiv.org/abs/2106.08322>`_), as mmdetection 3.3's neck.

The spatial attention is a modulated deformable conv (DCNv2) whose offsets and masks are
predicted once per level from that level and shared by the convs that read the neighbouring
levels, so it uses :class:`~mmdet_lite.models.layers.ModulatedDeformConv2d` (offsets passed in)
rather than the self-predicting ``DCNv2`` conv type.
"""
from typing import List, Sequence, Tuple

import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule, constant_init, normal_init
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from ..layers.dcn import ModulatedDeformConv2d
from ..layers.se_layer import DyReLU
from .neck_arg_checks import NeckArgumentError, NeckTypeError


class DyDCNv2(nn.Module):
    """3x3 modulated deformable conv (padding 1) followed by an optional norm layer.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int | tuple[int]): Stride of the conv. Defaults to 1.
        norm_cfg (dict, optional): Norm layer config; the conv has a bias only without one.
            Defaults to ``dict(type='GN', num_groups=16, requires_grad=True)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm_cfg: OptConfigType = dict(type='GN', num_groups=16, requires_grad=True)
    ) -> None:
        super().__init__()
        self.with_norm = norm_cfg is not None
        self.conv = ModulatedDeformConv2d(in_channels,
                                          out_channels,
                                          3,
                                          stride=stride,
                                          padding=1,
                                          bias=not self.with_norm)
        if self.with_norm:
            self.norm = build_norm_layer(norm_cfg, out_channels)[1]

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        """Deformable conv with the given sampling.

        Args:
            x (Tensor): [B, in_channels, H, W].
            offset (Tensor): [B, 18, H_out, W_out], (dy, dx) per kernel tap.
            mask (Tensor): [B, 9, H_out, W_out], in [0, 1].

        Returns:
            Tensor: [B, out_channels, H_out, W_out].
        """
        x = self.conv(x.contiguous(), offset, mask)
        return self.norm(x) if self.with_norm else x


class DyHeadBlock(nn.Module):
    """One DyHead block: every level becomes the average of the spatially attended (DCNv2)
    maps of itself and its two neighbours, each weighted by the scale attention, followed by
    DyReLU (the task attention).

    Level l's DCNv2 offsets and masks come from ``spatial_conv_offset(x[l])``. The finer
    neighbour l-1 is read by a stride-2 DCNv2 with the same sampling; the coarser neighbour
    l+1 by a stride-1 DCNv2 with the sampling cropped to its size, then upsampled bilinearly
    (align_corners=True) to level l's size.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        zero_init_offset (bool): Start ``spatial_conv_offset`` at zero (regular grid, mask
            0.5). Defaults to True.
        act_cfg (dict): Last activation of the scale attention. Defaults to
            ``dict(type='HSigmoid', bias=3.0, divisor=6.0)`` (the official code's).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        zero_init_offset: bool = True,
        act_cfg: ConfigType = dict(type='HSigmoid', bias=3.0, divisor=6.0)
    ) -> None:
        super().__init__()
        self.zero_init_offset = zero_init_offset
        # (dy, dx, mask) for each of the 3 x 3 taps; the first 18 channels are offsets.
        self.offset_and_mask_dim = 3 * 3 * 3
        self.offset_dim = 2 * 3 * 3

        self.spatial_conv_high = DyDCNv2(in_channels, out_channels)
        self.spatial_conv_mid = DyDCNv2(in_channels, out_channels)
        self.spatial_conv_low = DyDCNv2(in_channels, out_channels, stride=2)
        self.spatial_conv_offset = nn.Conv2d(in_channels, self.offset_and_mask_dim, 3, padding=1)
        self.scale_attn_module = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                               nn.Conv2d(out_channels, 1, 1), nn.ReLU(inplace=True),
                                               build_activation_layer(act_cfg))
        self.task_attn_module = DyReLU(out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        # Only plain Conv2d layers: the deformable convs keep their uniform init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, 0, 0.01)
        if self.zero_init_offset:
            constant_init(self.spatial_conv_offset, 0)

    def _offset_and_mask(self, offset_and_mask: Tensor, height: int,
                         width: int) -> Tuple[Tensor, Tensor]:
        crop = offset_and_mask[:, :, :height, :width]
        return crop[:, :self.offset_dim], crop[:, self.offset_dim:].sigmoid()

    def forward(self, x: Sequence[Tensor]) -> List[Tensor]:
        """Attend over the levels.

        Args:
            x (Sequence[Tensor]): L maps ``[B, in_channels, H_l, W_l]``, each level the size a
                stride-2 3x3 conv (padding 1) gives from the previous one.

        Returns:
            list[Tensor]: L maps ``[B, out_channels, H_l, W_l]``.
        """
        outs = []
        for level, feat in enumerate(x):
            offset_and_mask = self.spatial_conv_offset(feat)  # [B, 27, H_l, W_l]
            offset, mask = self._offset_and_mask(offset_and_mask, *feat.shape[-2:])

            mid_feat = self.spatial_conv_mid(feat, offset, mask)
            sum_feat = mid_feat * self.scale_attn_module(mid_feat)
            summed_levels = 1
            if level > 0:
                low_feat = self.spatial_conv_low(x[level - 1], offset, mask)
                sum_feat = sum_feat + low_feat * self.scale_attn_module(low_feat)
                summed_levels += 1
            if level < len(x) - 1:
                # The coarser level reuses this level's sampling, cropped to its size.
                high = x[level + 1]
                high_offset, high_mask = self._offset_and_mask(offset_and_mask, *high.shape[-2:])
                high_feat = F.interpolate(self.spatial_conv_high(high, high_offset, high_mask),
                                          size=feat.shape[-2:],
                                          mode='bilinear',
                                          align_corners=True)
                sum_feat = sum_feat + high_feat * self.scale_attn_module(high_feat)
                summed_levels += 1
            outs.append(self.task_attn_module(sum_feat / summed_levels))
        return outs


@MODELS.register_module()
class DyHead(BaseModule):
    """DyHead neck: ``num_blocks`` :class:`DyHeadBlock` in sequence.

    Args:
        in_channels (int): Input channels (every level).
        out_channels (int): Output channels.
        num_blocks (int): Number of blocks. Defaults to 6.
        zero_init_offset (bool): Zero-init each block's ``spatial_conv_offset``.
            Defaults to True.
        init_cfg (dict or list[dict], optional): Must be None: the blocks initialise
            themselves when built. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 num_blocks: int = 6,
                 zero_init_offset: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        if init_cfg is not None:
            raise NeckArgumentError('DyHead: init_cfg must be None (the blocks initialise '
                                    f'themselves, as in mmdetection), got {init_cfg!r}.')
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_blocks = num_blocks
        self.zero_init_offset = zero_init_offset
        self.dyhead_blocks = nn.Sequential(*[
            DyHeadBlock(in_channels if i == 0 else out_channels,
                        out_channels,
                        zero_init_offset=zero_init_offset) for i in range(num_blocks)
        ])

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Apply the blocks.

        Args:
            inputs (list[Tensor] | tuple[Tensor]): L maps ``[B, in_channels, H_l, W_l]``.

        Returns:
            tuple[Tensor]: L maps ``[B, out_channels, H_l, W_l]``.
        """
        if not isinstance(inputs, (tuple, list)):
            raise NeckTypeError('DyHead expects a list or tuple of feature maps, got '
                                f'{type(inputs).__name__}.')
        return tuple(self.dyhead_blocks(inputs))
