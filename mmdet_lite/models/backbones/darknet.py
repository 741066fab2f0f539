"""Darknet-53, the YOLOv3 backbone (Redmon & Farhadi, 2018), as mmdetection 3.3 lays it out.

A 3x3 stem conv (``conv1``, 32 channels) then five stages ``conv_res_block1..5``, each a
stride-2 3x3 conv (``conv``) followed by ``res0..res{n-1}`` residual blocks (1x1 to half the
channels, 3x3 back, plus the input). Every conv is conv + BN + LeakyReLU(0.1).

Layer ``i`` of ``out_indices`` counts the stem as 0, so the default (3, 4, 5) gives strides
8, 16 and 32 with 256, 512 and 1024 channels.
"""
import warnings
from typing import Optional, Sequence, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

__all__ = ['Darknet', 'DarknetArgumentError', 'ResBlock']


class DarknetArgumentError(ValueError, AssertionError):
    """A Darknet / ResBlock argument mmdetection rejects with an assert."""


class ResBlock(BaseModule):
    """Darknet residual block: 1x1 conv to ``in_channels // 2``, 3x3 conv back, plus input.

    Args:
        in_channels (int): Input (and output) channels; must be even.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        act_cfg (dict): Activation config. Defaults to LeakyReLU(0.1).
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='LeakyReLU', negative_slope=0.1),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if in_channels % 2 != 0:
            raise DarknetArgumentError(f'ResBlock: in_channels must be even (the 1x1 conv '
                                       f'halves it), got {in_channels}')
        cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(in_channels, in_channels // 2, 1, **cfg)
        self.conv2 = ConvModule(in_channels // 2, in_channels, 3, padding=1, **cfg)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C, H, W] -> [B, C, H, W]."""
        return self.conv2(self.conv1(x)) + x


@MODELS.register_module()
class Darknet(BaseModule):
    """Darknet backbone (only depth 53 exists).

    Args:
        depth (int): Depth; only 53. Defaults to 53.
        out_indices (Sequence[int]): Layers to output, 0 being the stem ``conv1`` and ``i``
            being ``conv_res_block{i}``. Defaults to (3, 4, 5).
        frozen_stages (int): Number of leading layers (stem first) put in eval mode with no
            gradients; -1 (or 0) freezes none. Defaults to -1.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN.
        act_cfg (dict): Activation config. Defaults to LeakyReLU(0.1).
        norm_eval (bool): Keep BN layers in eval mode (frozen running stats) while training.
            Defaults to True.
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None,
            which becomes Kaiming on every Conv2d and 1 on every norm weight.

    Example:
        >>> feats = Darknet().eval()(torch.rand(1, 3, 416, 416))
        >>> [tuple(f.shape) for f in feats]
        [(1, 256, 52, 52), (1, 512, 26, 26), (1, 1024, 13, 13)]
    """

    # depth: (residual blocks per stage, (in, out) channels per stage)
    arch_settings = {
        53: ((1, 2, 8, 8, 4), ((32, 64), (64, 128), (128, 256), (256, 512), (512, 1024)))
    }

    def __init__(self,
                 depth: int = 53,
                 out_indices: Sequence[int] = (3, 4, 5),
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='LeakyReLU', negative_slope=0.1),
                 norm_eval: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for darknet (supported: '
                           f'{sorted(self.arch_settings)})')
        self.depth = depth
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.layers, self.channels = self.arch_settings[depth]

        cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(3, 32, 3, padding=1, **cfg)
        self.cr_blocks = ['conv1']  # layer names in forward order
        for i, num_res in enumerate(self.layers):
            name = f'conv_res_block{i + 1}'
            in_c, out_c = self.channels[i]
            self.add_module(name, self.make_conv_res_block(in_c, out_c, num_res, **cfg))
            self.cr_blocks.append(name)
        self.norm_eval = norm_eval

        if init_cfg and pretrained:
            raise DarknetArgumentError('init_cfg and pretrained cannot be specified at the '
                                       'same time; use init_cfg only')
        if isinstance(pretrained, str):
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          '"init_cfg" instead')
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif pretrained is None:
            if init_cfg is None:
                self.init_cfg = [
                    dict(type='Kaiming', layer='Conv2d'),
                    dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
                ]
        else:
            raise TypeError(f'pretrained must be a str or None, got {type(pretrained).__name__}')

    @staticmethod
    def make_conv_res_block(in_channels: int,
                            out_channels: int,
                            res_repeat: int,
                            conv_cfg: OptConfigType = None,
                            norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                            act_cfg: ConfigType = dict(type='LeakyReLU', negative_slope=0.1)
                            ) -> nn.Sequential:
        """One stage: a stride-2 3x3 ``conv`` to ``out_channels``, then ``res_repeat``
        :class:`ResBlock` s named ``res0``, ``res1`` ...

        Args:
            in_channels (int): Input channels.
            out_channels (int): Output channels (of the conv and the residual blocks).
            res_repeat (int): Number of residual blocks.
            conv_cfg (dict, optional): Conv layer config. Defaults to None.
            norm_cfg (dict): Norm layer config. Defaults to BN.
            act_cfg (dict): Activation config. Defaults to LeakyReLU(0.1).

        Returns:
            nn.Sequential: [B, in_channels, H, W] -> [B, out_channels, H/2, W/2].
        """
        cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        stage = nn.Sequential()
        stage.add_module('conv', ConvModule(in_channels, out_channels, 3, stride=2, padding=1,
                                            **cfg))
        for idx in range(res_repeat):
            stage.add_module(f'res{idx}', ResBlock(out_channels, **cfg))
        return stage

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Feature maps of the layers in ``out_indices``.

        Args:
            x (Tensor): Images [B, 3, H, W].

        Returns:
            tuple[Tensor]: In layer order; layer i > 0 is [B, C_i, H / 2**i, W / 2**i] with
            C_i = 64, 128, 256, 512, 1024 (the stem keeps [B, 32, H, W]).
        """
        outs = []
        for i, name in enumerate(self.cr_blocks):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        # Freezes layers 0..frozen_stages-1 (frozen_stages=1: the stem only), as mmdetection;
        # note CSPDarknet freezes 0..frozen_stages instead.
        for name in self.cr_blocks[:max(self.frozen_stages, 0)]:
            layer = getattr(self, name)
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'Darknet':
        """Switch train/eval mode, keeping frozen stages and (with norm_eval) BNs in eval.

        As in mmdetection, stages are frozen here, not at construction.
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
