"""Cross Stage Partial layer (CSPNet) and its two bottlenecks, used by the CSPDarknet /
CSPNeXt backbones and the YOLOX / RTMDet PAFPN necks (mmdetection 3.3's ``csp_layer.py``).

A CSP layer splits the input into two 1x1-conv branches of ``out_channels * expand_ratio``
channels: the main one runs through ``num_blocks`` bottlenecks, the short one does not; the two
are concatenated (main first), optionally reweighted by channel attention, and fused by a 1x1
conv.
"""
import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .se_layer import ChannelAttention

# YOLOX / RTMDet BatchNorm: a slow running-stat momentum and a larger eps than torch's.
_CSP_BN = dict(type='BN', momentum=0.03, eps=0.001)


class DarknetBottleneck(BaseModule):
    """Darknet residual block: 1x1 conv to ``out * expansion`` channels, then 3x3 conv.

    The input is added to the output when ``add_identity`` and the channels match.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expansion (float): Hidden channels = ``int(out_channels * expansion)``.
            Defaults to 0.5.
        add_identity (bool): Add the input to the output (only if in == out channels).
            Defaults to True.
        use_depthwise (bool): Make the 3x3 conv depthwise separable. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 expansion: float = 0.5,
                 add_identity: bool = True,
                 use_depthwise: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = _CSP_BN,
                 act_cfg: ConfigType = dict(type='Swish'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        hidden_channels = int(out_channels * expansion)
        conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(in_channels, hidden_channels, 1, **cfgs)
        self.conv2 = conv(hidden_channels, out_channels, 3, stride=1, padding=1, **cfgs)
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            Tensor: [B, out_channels, H, W].
        """
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPNeXtBlock(BaseModule):
    """CSPNeXt (RTMDet) residual block: 3x3 conv, then a large-kernel depthwise separable conv.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expansion (float): Hidden channels = ``int(out_channels * expansion)``.
            Defaults to 0.5.
        add_identity (bool): Add the input to the output (only if in == out channels).
            Defaults to True.
        use_depthwise (bool): Make the first 3x3 conv depthwise separable. Defaults to False.
        kernel_size (int): Kernel of the depthwise conv (padded to keep the size).
            Defaults to 5.
        conv_cfg (dict, optional): Conv layer config of the second conv; the first always
            uses the default conv, as in mmdetection. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to SiLU.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 expansion: float = 0.5,
                 add_identity: bool = True,
                 use_depthwise: bool = False,
                 kernel_size: int = 5,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = _CSP_BN,
                 act_cfg: ConfigType = dict(type='SiLU'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        hidden_channels = int(out_channels * expansion)
        conv = DepthwiseSeparableConvModule if use_depthwise else ConvModule
        self.conv1 = conv(in_channels, hidden_channels, 3, stride=1, padding=1,
                          norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv2 = DepthwiseSeparableConvModule(
            hidden_channels, out_channels, kernel_size, stride=1, padding=kernel_size // 2,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            Tensor: [B, out_channels, H, W].
        """
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(BaseModule):
    """Cross Stage Partial layer.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        expand_ratio (float): Each branch has ``int(out_channels * expand_ratio)`` channels.
            Defaults to 0.5.
        num_blocks (int): Bottlenecks in the main branch. Defaults to 1.
        add_identity (bool): Residual connections inside the bottlenecks. Defaults to True.
        use_depthwise (bool): Depthwise separable convs in the bottlenecks.
            Defaults to False.
        use_cspnext_block (bool): Use :class:`CSPNeXtBlock` instead of
            :class:`DarknetBottleneck`. Defaults to False.
        channel_attention (bool): Reweight the concatenated branches with
            :class:`ChannelAttention` before the final conv. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 expand_ratio: float = 0.5,
                 num_blocks: int = 1,
                 add_identity: bool = True,
                 use_depthwise: bool = False,
                 use_cspnext_block: bool = False,
                 channel_attention: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = _CSP_BN,
                 act_cfg: ConfigType = dict(type='Swish'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        block = CSPNeXtBlock if use_cspnext_block else DarknetBottleneck
        mid_channels = int(out_channels * expand_ratio)
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.channel_attention = channel_attention
        self.main_conv = ConvModule(in_channels, mid_channels, 1, **cfgs)
        self.short_conv = ConvModule(in_channels, mid_channels, 1, **cfgs)
        self.final_conv = ConvModule(2 * mid_channels, out_channels, 1, **cfgs)
        # Blocks keep the width (expansion 1.0); CSPNeXtBlock keeps its 5x5 default kernel.
        self.blocks = nn.Sequential(*[
            block(mid_channels, mid_channels, 1.0, add_identity, use_depthwise, **cfgs)
            for _ in range(num_blocks)
        ])
        if channel_attention:
            self.attention = ChannelAttention(2 * mid_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            Tensor: [B, out_channels, H, W].
        """
        x_short = self.short_conv(x)  # [B, mid, H, W]
        x_main = self.blocks(self.main_conv(x))  # [B, mid, H, W]
        x_final = torch.cat((x_main, x_short), dim=1)  # [B, 2 * mid, H, W]
        if self.channel_attention:
            x_final = self.attention(x_final)
        return self.final_conv(x_final)
