"""YOLOV3Neck: YOLOv3's top-down neck over Darknet-53 (https://arxiv.org/abs/1804.02767)."""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

from .neck_arg_checks import NeckArgumentError


class DetectionBlock(BaseModule):
    """Five ConvModules alternating 1x1 to n and 3x3 to 2n channels (n = out_channels).

    Args:
        in_channels (int): Input channels.
        out_channels (int): n, the output channels.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        act_cfg (dict): Activation config. Defaults to LeakyReLU(0.1).
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='LeakyReLU', negative_slope=0.1),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        double = out_channels * 2
        cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(in_channels, out_channels, 1, **cfg)
        self.conv2 = ConvModule(out_channels, double, 3, padding=1, **cfg)
        self.conv3 = ConvModule(double, out_channels, 1, **cfg)
        self.conv4 = ConvModule(out_channels, double, 3, padding=1, **cfg)
        self.conv5 = ConvModule(double, out_channels, 1, **cfg)

    def forward(self, x: Tensor) -> Tensor:
        """[B, in_channels, H, W] -> [B, out_channels, H, W]."""
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = conv(x)
        return x


@MODELS.register_module()
class YOLOV3Neck(BaseModule):
    """YOLOv3 neck: detection blocks from the coarsest map down, with upsampled skips.

    Inputs come fine to coarse (as the backbone gives them) but are processed coarse to
    fine: ``detect1`` runs on the last map; for scale i >= 1, ``conv{i}`` (1x1) reduces the
    previous block's output, which is 2x nearest-upsampled, concatenated with the next
    finer input and fed to ``detect{i+1}``.

    Args:
        num_scales (int): Number of scales.
        in_channels (list[int]): Input channels per scale, coarse to fine.
        out_channels (list[int]): Output channels per scale, coarse to fine.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        act_cfg (dict): Activation config. Defaults to LeakyReLU(0.1).
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 num_scales: int,
                 in_channels: List[int],
                 out_channels: List[int],
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='LeakyReLU', negative_slope=0.1),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if not num_scales == len(in_channels) == len(out_channels):
            raise NeckArgumentError(f'YOLOV3Neck needs num_scales ({num_scales}) == '
                                    f'len(in_channels) ({len(in_channels)}) == '
                                    f'len(out_channels) ({len(out_channels)}).')
        self.num_scales = num_scales
        self.in_channels = in_channels
        self.out_channels = out_channels
        cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.detect1 = DetectionBlock(in_channels[0], out_channels[0], **cfg)
        # Registered in this order (conv1, detect2, conv2, detect3, ...) as in mmdet.
        for i in range(1, num_scales):
            in_c, out_c = in_channels[i], out_channels[i]
            self.add_module(f'conv{i}', ConvModule(out_channels[i - 1], out_c, 1, **cfg))
            self.add_module(f'detect{i + 1}', DetectionBlock(in_c + out_c, out_c, **cfg))

    def forward(self, feats: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Run the detection blocks.

        Args:
            feats (Sequence[Tensor]): ``num_scales`` maps, fine to coarse; map j of scale
                i = num_scales - 1 - j has ``in_channels[i]`` channels.

        Returns:
            tuple[Tensor]: ``num_scales`` maps, coarse to fine, ``[B, out_channels[i], ...]``.
        """
        if len(feats) != self.num_scales:
            raise NeckArgumentError(f'YOLOV3Neck expects num_scales={self.num_scales} input '
                                    f'maps, got {len(feats)}.')
        out = self.detect1(feats[-1])
        outs = [out]
        for i, x in enumerate(reversed(feats[:-1]), start=1):
            skip = F.interpolate(getattr(self, f'conv{i}')(out), scale_factor=2)
            out = getattr(self, f'detect{i + 1}')(torch.cat((skip, x), 1))
            outs.append(out)
        return tuple(outs)
