"""DilatedEncoder: the YOLOF neck, one C5 map widened by dilated residual blocks."""
from typing import List, Sequence, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import caffe2_xavier_init, constant_init, normal_init
from mmengine.utils.dl_utils import is_norm
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType


class Bottleneck(nn.Module):
    """Residual block of the DilatedEncoder: 1x1 down, dilated 3x3, 1x1 up (conv-BN-ReLU each),
    plus the input.

    Args:
        in_channels (int): Input (and output) channels.
        mid_channels (int): Channels of the inner convs.
        dilation (int): Dilation (and padding) of the 3x3 conv.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN',
            requires_grad=True)``.
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 dilation: int,
                 norm_cfg: OptConfigType = dict(type='BN', requires_grad=True)) -> None:
        super().__init__()
        self.conv1 = ConvModule(in_channels, mid_channels, 1, norm_cfg=norm_cfg)
        self.conv2 = ConvModule(mid_channels, mid_channels, 3, padding=dilation,
                                dilation=dilation, norm_cfg=norm_cfg)
        self.conv3 = ConvModule(mid_channels, in_channels, 1, norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x (Tensor): [B, C, H, W].

        Returns:
            Tensor: [B, C, H, W].
        """
        return self.conv3(self.conv2(self.conv1(x))) + x


@MODELS.register_module()
class DilatedEncoder(nn.Module):
    """Dilated encoder of YOLOF (`Chen et al. 2021 <https://arxiv.org/abs/2103.09460>`_).

    Reads only the last input level: a 1x1 projection and a 3x3 conv (each followed by BN, no
    activation), then ``num_residual_blocks`` :class:`Bottleneck` blocks whose dilations
    widen the receptive field so one level covers objects of every size.

    Args:
        in_channels (int): Channels of the last input level.
        out_channels (int): Output channels.
        block_mid_channels (int): Inner channels of the residual blocks.
        num_residual_blocks (int): Number of residual blocks.
        block_dilations (list[int]): Dilation of each residual block (at least
            ``num_residual_blocks`` entries; YOLOF uses [2, 4, 6, 8]).
    """

    def __init__(self, in_channels: int, out_channels: int, block_mid_channels: int,
                 num_residual_blocks: int, block_dilations: List[int]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.block_mid_channels = block_mid_channels
        self.num_residual_blocks = num_residual_blocks
        self.block_dilations = block_dilations
        self.lateral_conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.lateral_norm = nn.BatchNorm2d(out_channels)
        self.fpn_conv = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.fpn_norm = nn.BatchNorm2d(out_channels)
        self.dilated_encoder_blocks = nn.Sequential(*[
            Bottleneck(out_channels, block_mid_channels, dilation=block_dilations[i])
            for i in range(num_residual_blocks)
        ])

    def init_weights(self) -> None:
        """mmdetection's init: caffe2 Xavier for the projection convs, N(0, 0.01) for the
        block convs, norms to weight 1 / bias 0."""
        caffe2_xavier_init(self.lateral_conv)
        caffe2_xavier_init(self.fpn_conv)
        for norm in (self.lateral_norm, self.fpn_norm):
            constant_init(norm, 1)
        for m in self.dilated_encoder_blocks.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, mean=0, std=0.01)
            if is_norm(m):
                constant_init(m, 1)

    def forward(self, feature: Sequence[Tensor]) -> Tuple[Tensor]:
        """Encode the last level.

        Args:
            feature (Sequence[Tensor]): Backbone levels; only ``feature[-1]``
                ``[B, in_channels, H, W]`` is read.

        Returns:
            tuple[Tensor]: One map ``[B, out_channels, H, W]``.
        """
        out = self.lateral_norm(self.lateral_conv(feature[-1]))
        out = self.fpn_norm(self.fpn_conv(out))
        return (self.dilated_encoder_blocks(out), )
