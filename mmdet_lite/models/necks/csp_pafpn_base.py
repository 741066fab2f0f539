"""The path aggregation network (PAFPN) built from CSP layers that YOLOX and RTMDet share.

:class:`~mmdet_lite.models.necks.YOLOXPAFPN` and
:class:`~mmdet_lite.models.necks.CSPNeXtPAFPN` differ only in the CSP block kind, the CSP
expansion ratio and the output conv kernel; this base builds both with mmdetection's module
names, so their ``state_dict`` keys are mmdetection's.
"""
from typing import Sequence, Tuple

import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from ..layers.csp_layer import CSPLayer
from .neck_arg_checks import NeckArgumentError


class CSPPAFPNBase(BaseModule):
    """Top-down then bottom-up fusion of L levels with CSP layers, then one conv per level.

    Top-down (from the coarsest level): the running map goes through ``reduce_layers`` (1x1
    conv to the next finer level's channels), is upsampled, concatenated with that finer
    input and fused by a ``top_down_blocks`` CSP layer. Bottom-up (from the finest result):
    ``downsamples`` (stride-2 3x3 conv) and a ``bottom_up_blocks`` CSP layer fuse it with the
    next coarser top-down result. ``out_convs`` map every level to ``out_channels``.

    Args:
        in_channels (Sequence[int]): Channels of each input level, finest first.
        out_channels (int): Channels of every output level.
        num_csp_blocks (int): Bottlenecks per CSP layer.
        use_depthwise (bool): Depthwise separable downsample convs and CSP bottlenecks.
        expand_ratio (float): CSP layers' branch width ratio.
        use_cspnext_block (bool): CSPNeXt blocks instead of Darknet bottlenecks.
        out_kernel_size (int): Kernel of the output convs (padded to keep the size).
        upsample_cfg (dict): ``nn.Upsample`` arguments.
        conv_cfg (dict, optional): Conv layer config.
        norm_cfg (dict): Norm layer config.
        act_cfg (dict): Activation config.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, num_csp_blocks: int,
                 use_depthwise: bool, expand_ratio: float, use_cspnext_block: bool,
                 out_kernel_size: int, upsample_cfg: ConfigType, conv_cfg: OptConfigType,
                 norm_cfg: ConfigType, act_cfg: ConfigType, init_cfg: OptMultiConfig,
                 depthwise_out_convs: bool = False) -> None:
        super().__init__(init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        csp_kwargs = dict(num_blocks=num_csp_blocks,
                          add_identity=False,
                          use_depthwise=use_depthwise,
                          use_cspnext_block=use_cspnext_block,
                          expand_ratio=expand_ratio,
                          **cfgs)
        conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule

        self.upsample = nn.Upsample(**upsample_cfg)
        # Index i of the top-down lists serves input level L-1-i (coarsest first).
        self.reduce_layers = nn.ModuleList()
        self.top_down_blocks = nn.ModuleList()
        for idx in range(len(in_channels) - 1, 0, -1):
            self.reduce_layers.append(ConvModule(in_channels[idx], in_channels[idx - 1], 1, **cfgs))
            self.top_down_blocks.append(
                CSPLayer(in_channels[idx - 1] * 2, in_channels[idx - 1], **csp_kwargs))

        self.downsamples = nn.ModuleList()
        self.bottom_up_blocks = nn.ModuleList()
        for idx in range(len(in_channels) - 1):
            self.downsamples.append(
                conv(in_channels[idx], in_channels[idx], 3, stride=2, padding=1, **cfgs))
            self.bottom_up_blocks.append(
                CSPLayer(in_channels[idx] * 2, in_channels[idx + 1], **csp_kwargs))

        # YOLOX's 1x1 output convs are always plain; RTMDet's 3x3 ones follow use_depthwise.
        out_conv = conv if depthwise_out_convs else ConvModule
        self.out_convs = nn.ModuleList(
            out_conv(c, out_channels, out_kernel_size, padding=out_kernel_size // 2, **cfgs)
            for c in in_channels)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Fuse the levels.

        Args:
            inputs (Sequence[Tensor]): L maps ``[B, in_channels[i], H_i, W_i]``, each level
                half the size of the previous (rounded up, as stride-2 convs give).

        Returns:
            tuple[Tensor]: L maps ``[B, out_channels, H_i, W_i]``.
        """
        num_levels = len(self.in_channels)
        if len(inputs) != num_levels:
            raise NeckArgumentError(f'{type(self).__name__} expects {num_levels} input levels '
                                    f'(in_channels={list(self.in_channels)}), got {len(inputs)}.')

        # Top-down: inner[0] is the running coarse map; finished levels follow it.
        inner = [inputs[-1]]
        for i, idx in enumerate(range(num_levels - 1, 0, -1)):
            # The reduced coarse map replaces the level's top-down result, as in mmdetection.
            coarse = self.reduce_layers[i](inner[0])  # [B, C_{idx-1}, H_idx, W_idx]
            inner[0] = coarse
            fused = self.top_down_blocks[i](torch.cat([self.upsample(coarse), inputs[idx - 1]],
                                                      dim=1))
            inner.insert(0, fused)  # [B, C_{idx-1}, H_{idx-1}, W_{idx-1}]

        # Bottom-up.
        outs = [inner[0]]
        for idx in range(num_levels - 1):
            down = self.downsamples[idx](outs[-1])  # [B, C_idx, H_{idx+1}, W_{idx+1}]
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner[idx + 1]], dim=1)))

        return tuple(conv(out) for conv, out in zip(self.out_convs, outs))
