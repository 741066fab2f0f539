"""InvertedResidual: the MobileNetV2 block (expand 1x1 -> depthwise kxk -> linear 1x1).

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
https://arxiv.org/abs/1801.04381. The block widens a thin input, filters it per channel,
and projects back without an activation (a "linear bottleneck"); the identity shortcut joins
when shape is kept.
"""
import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .se_layer import SELayer


class InvertedResidualArgumentError(ValueError, AssertionError):
    """An InvertedResidual argument that mmdetection rejects with an assert."""


class InvertedResidual(BaseModule):
    """Inverted residual block.

    Layers (state_dict prefixes): ``expand_conv`` (1x1 ConvModule, only with
    ``with_expand_conv``), ``depthwise_conv`` (kxk, ``groups=mid_channels``), ``se``
    (optional SELayer) and ``linear_conv`` (1x1, norm but no activation).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        mid_channels (int): Channels of the depthwise conv (the expanded width).
        kernel_size (int): Depthwise kernel size (padding ``k // 2``). Defaults to 3.
        stride (int): Depthwise stride, 1 or 2. Defaults to 1.
        se_cfg (dict, optional): SELayer arguments; None for no SE. Defaults to None.
        with_expand_conv (bool): Whether there is an expansion conv; without it
            ``mid_channels`` must equal ``in_channels``. Defaults to True.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation of the expand and depthwise convs. Defaults to ReLU.
        drop_path_rate (float): Stochastic-depth rate on the residual branch. Defaults to 0.
        with_cp (bool): Recompute the block in backward to save memory. Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 mid_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 se_cfg: OptConfigType = None,
                 with_expand_conv: bool = True,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='ReLU'),
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if stride not in (1, 2):
            raise InvertedResidualArgumentError(
                f'InvertedResidual stride must be 1 or 2, got {stride}.')
        if se_cfg is not None and not isinstance(se_cfg, dict):
            raise InvertedResidualArgumentError(
                f'InvertedResidual se_cfg must be a dict of SELayer arguments or None, got '
                f'{type(se_cfg).__name__}.')
        if not with_expand_conv and mid_channels != in_channels:
            raise InvertedResidualArgumentError(
                f'InvertedResidual without an expand conv needs mid_channels == in_channels, '
                f'got {mid_channels} and {in_channels}.')
        self.with_res_shortcut = stride == 1 and in_channels == out_channels
        self.with_cp = with_cp
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.with_se = se_cfg is not None
        self.with_expand_conv = with_expand_conv

        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        if with_expand_conv:
            self.expand_conv = ConvModule(in_channels, mid_channels, 1, stride=1, padding=0,
                                          act_cfg=act_cfg, **cfgs)
        self.depthwise_conv = ConvModule(mid_channels, mid_channels, kernel_size,
                                         stride=stride, padding=kernel_size // 2,
                                         groups=mid_channels, act_cfg=act_cfg, **cfgs)
        if self.with_se:
            self.se = SELayer(**se_cfg)
        # No activation after the projection: a ReLU in the thin space would destroy
        # information (the paper's "linear bottleneck").
        self.linear_conv = ConvModule(mid_channels, out_channels, 1, stride=1, padding=0,
                                      act_cfg=None, **cfgs)

    def _residual(self, x: Tensor) -> Tensor:
        """The block's branch: [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]."""
        out = self.expand_conv(x) if self.with_expand_conv else x  # [B, C_mid, H, W]
        out = self.depthwise_conv(out)  # [B, C_mid, H / s, W / s]
        if self.with_se:
            out = self.se(out)
        return self.linear_conv(out)  # [B, C_out, H / s, W / s]

    def _block(self, x: Tensor) -> Tensor:
        out = self._residual(x)
        return x + self.drop_path(out) if self.with_res_shortcut else out

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            Tensor: [B, out_channels, ceil(H / stride), ceil(W / stride)].
        """
        if self.with_cp and x.requires_grad and torch.is_grad_enabled():
            return cp.checkpoint(self._block, x, use_reentrant=False)
        return self._block(x)
