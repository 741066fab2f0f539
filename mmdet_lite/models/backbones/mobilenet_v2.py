"""MobileNetV2 backbone (Sandler et al., https://arxiv.org/abs/1801.04381), as in mmdetection 3.3.

Layout: ``conv1`` (3x3 stride-2 stem), ``layer1``..``layer7`` (stacks of
:class:`InvertedResidual`), ``conv2`` (1x1 to 1280 channels). ``out_indices`` count the
eight layers after the stem: 0..6 are ``layer1``..``layer7`` and 7 is ``conv2``.
"""
import warnings
from typing import List, Optional, Sequence, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from ..layers.inverted_residual import InvertedResidual
from ..utils.make_divisible import make_divisible


class MobileNetV2ArgumentError(ValueError, AssertionError):
    """A MobileNetV2 argument that mmdetection rejects with an assert."""


@MODELS.register_module()
class MobileNetV2(BaseModule):
    """MobileNetV2 backbone.

    Channels (widen_factor 1) and strides of the outputs, indexed as ``out_indices``:
    0: 16 @ 2, 1: 24 @ 4, 2: 32 @ 8, 3: 64 @ 16, 4: 96 @ 16, 5: 160 @ 32, 6: 320 @ 32,
    7: 1280 @ 32. Every width is ``make_divisible(c * widen_factor, 8)`` except ``conv2``:
    1280, or ``int(1280 * widen_factor)`` when ``widen_factor > 1``.

    Args:
        widen_factor (float): Width multiplier of every layer. Defaults to 1.0.
        out_indices (Sequence[int]): Layers to output, from range(8). Defaults to
            (1, 2, 4, 7).
        frozen_stages (int): Freeze ``conv1`` and ``layer1``..``layer{frozen_stages}``
            (applied by ``train()``); -1 freezes nothing. Defaults to -1.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation config. Defaults to ``dict(type='ReLU6')``.
        norm_eval (bool): Keep BN layers in eval mode (frozen running stats) while training.
            Defaults to False.
        with_cp (bool): Gradient checkpointing in the blocks. Defaults to False.
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None:
            Kaiming on Conv2d, constant 1 on BN / GN.
    """

    # One row per layer: expand_ratio, channels, num_blocks, stride of the first block.
    arch_settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
                     [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]

    def __init__(self,
                 widen_factor: float = 1.,
                 out_indices: Sequence[int] = (1, 2, 4, 7),
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='ReLU6'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.pretrained = pretrained
        if init_cfg and pretrained:
            raise MobileNetV2ArgumentError(
                'MobileNetV2: init_cfg and pretrained cannot be set at the same time; use '
                "init_cfg=dict(type='Pretrained', checkpoint=...) only.")
        if isinstance(pretrained, str):
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...) instead.")
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif pretrained is not None:
            raise TypeError(f'pretrained must be a str or None, got {type(pretrained).__name__}')
        elif init_cfg is None:
            self.init_cfg = [dict(type='Kaiming', layer='Conv2d'),
                             dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]

        # mmdetection raises ValueError (not an assert) for these two.
        if not set(out_indices).issubset(range(8)):
            raise ValueError(f'out_indices must be a subset of range(0, 8), got {out_indices}')
        if frozen_stages not in range(-1, 8):
            raise ValueError(f'frozen_stages must be in range(-1, 8), got {frozen_stages}')
        self.widen_factor = widen_factor
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        # Running input width of the next layer, updated by make_layer (as mmdetection's).
        self.in_channels = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvModule(3, self.in_channels, 3, stride=2, padding=1, **cfgs)

        self.layers: List[str] = []
        for i, (expand_ratio, channels, num_blocks, stride) in enumerate(self.arch_settings):
            layer = self.make_layer(make_divisible(channels * widen_factor, 8), num_blocks,
                                    stride, expand_ratio)
            self.add_module(f'layer{i + 1}', layer)
            self.layers.append(f'layer{i + 1}')

        # The head conv is never narrowed below 1280.
        self.out_channel = int(1280 * widen_factor) if widen_factor > 1.0 else 1280
        self.conv2 = ConvModule(self.in_channels, self.out_channel, 1, stride=1, padding=0,
                                **cfgs)
        self.layers.append('conv2')

    def make_layer(self, out_channels: int, num_blocks: int, stride: int,
                   expand_ratio: int) -> nn.Sequential:
        """Stack ``num_blocks`` InvertedResidual blocks; only the first one strides.

        Args:
            out_channels (int): Output channels of every block.
            num_blocks (int): Number of blocks.
            stride (int): Stride of the first block.
            expand_ratio (int): Expanded width = ``round(in_channels * expand_ratio)``; 1
                means no expansion conv.

        Returns:
            nn.Sequential: The blocks (keys ``0``, ``1``, ...).
        """
        blocks = []
        for i in range(num_blocks):
            blocks.append(InvertedResidual(
                self.in_channels, out_channels,
                mid_channels=int(round(self.in_channels * expand_ratio)),
                stride=stride if i == 0 else 1,
                with_expand_conv=expand_ratio != 1,
                conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg,
                with_cp=self.with_cp))
            self.in_channels = out_channels
        return nn.Sequential(*blocks)

    def _freeze_stages(self) -> None:
        """Stop gradients of ``conv1`` and ``layer1``..``layer{frozen_stages}``.

        As in mmdetection, the frozen layers are put in eval mode but ``conv1`` is not: its
        BN keeps updating running statistics in training unless ``norm_eval`` is set.
        """
        if self.frozen_stages >= 0:
            for param in self.conv1.parameters():
                param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f'layer{i}')
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Compute the feature maps of the layers in ``out_indices``.

        Args:
            x (Tensor): Images [B, 3, H, W].

        Returns:
            tuple[Tensor]: One map per index, in layer order; with the defaults
            [B, 24, H/4, W/4], [B, 32, H/8, W/8], [B, 96, H/16, W/16], [B, 1280, H/32, W/32].
        """
        x = self.conv1(x)  # [B, 32, H/2, W/2]
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'MobileNetV2':
        """Switch train/eval mode, re-applying the frozen stages and ``norm_eval``.

        Stages are frozen here, not at construction (as in mmdetection): a freshly built
        backbone has ``requires_grad=True`` everywhere until ``train()`` is first called.
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
