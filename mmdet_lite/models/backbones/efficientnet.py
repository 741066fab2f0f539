"""EfficientNet backbone (`Tan & Le 2019 <https://arxiv.org/abs/1905.11946>`_) and its
EdgeTPU variant, as in mmdetection 3.3 (``mmdet.models.backbones.efficientnet``).

A stride-2 3x3 stem, then stages of MBConv blocks (:class:`InvertedResidual` with a
squeeze-and-excitation layer; the EdgeTPU models use :class:`EdgeResidual`, a fused
kxk + 1x1 block, in their first stages) and a final 1x1 conv. ``arch`` picks a width and a
depth multiplier that :func:`model_scaling` applies to the b0 (or EdgeTPU) table. All convs
pad like TensorFlow's 'SAME' (``Conv2dAdaptivePadding``) so that the ImageNet weights ported
from TensorFlow give the same numbers.

``layers.0`` is the stem, ``layers.1`` .. ``layers.N`` the block stages (``layers.i.j`` block j),
``layers.{N+1}`` the final conv; stages past ``max(out_indices)`` are not built. EfficientNet-b3
has 2, 3, 3, 10 and 8 blocks in stages 1-5 with 24, 32, 48, 136 and 384 output channels at
strides 2, 4, 8, 16 and 32.
"""
import copy
import math
from functools import partial
from typing import List, Sequence, Tuple

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, Sequential
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from ..layers.inverted_residual import InvertedResidual
from ..layers.se_layer import SELayer
from ..utils.make_divisible import make_divisible

__all__ = ['EfficientNet', 'EdgeResidual', 'model_scaling', 'EfficientNetArgumentError']


class EfficientNetArgumentError(ValueError, AssertionError):
    """An EfficientNet / EdgeResidual argument that mmdetection rejects with an assert."""


class EdgeResidual(BaseModule):
    """Fused MBConv of EfficientNet-EdgeTPU: a kxk conv widens the input, a 1x1 conv projects.

    Layers (state_dict prefixes): ``conv1`` (kxk ConvModule, stride 1, with activation),
    ``se`` (optional SELayer), ``conv2`` (1x1 ConvModule, no activation). As in mmdetection
    (and mmpretrain), the block's stride is applied by ``conv2``, not by the kxk conv.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        mid_channels (int): Output channels of ``conv1``.
        kernel_size (int): Kernel of ``conv1``. Defaults to 3.
        stride (int): Stride of ``conv2``, 1 or 2. Defaults to 1.
        se_cfg (dict, optional): SELayer arguments; None for no SE. Defaults to None.
        with_residual (bool): Add the input when the shape is kept. Defaults to True.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        act_cfg (dict): Activation of ``conv1``. Defaults to ``dict(type='ReLU')``.
        drop_path_rate (float): Stochastic depth of the residual branch. Defaults to 0.
        with_cp (bool): Recompute the block in backward to save memory. Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
        **kwargs: Ignored (EfficientNet passes ``with_expand_conv`` to every block type).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 mid_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 se_cfg: OptConfigType = None,
                 with_residual: bool = True,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 act_cfg: ConfigType = dict(type='ReLU'),
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        if stride not in (1, 2):
            raise EfficientNetArgumentError(f'EdgeResidual stride must be 1 or 2, got {stride}.')
        if se_cfg is not None and not isinstance(se_cfg, dict):
            raise EfficientNetArgumentError(
                f'EdgeResidual se_cfg must be a dict of SELayer arguments or None, got '
                f'{type(se_cfg).__name__}.')
        self.with_cp = with_cp
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.with_se = se_cfg is not None
        self.with_residual = stride == 1 and in_channels == out_channels and with_residual

        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.conv1 = ConvModule(in_channels, mid_channels, kernel_size, stride=1,
                                padding=kernel_size // 2, act_cfg=act_cfg, **cfgs)
        if self.with_se:
            self.se = SELayer(**se_cfg)
        self.conv2 = ConvModule(mid_channels, out_channels, 1, stride=stride, padding=0,
                                act_cfg=None, **cfgs)

    def _block(self, x: Tensor) -> Tensor:
        out = self.conv1(x)  # [B, C_mid, H, W]
        if self.with_se:
            out = self.se(out)
        out = self.conv2(out)  # [B, C_out, H / s, W / s]
        return x + self.drop_path(out) if self.with_residual else out

    def forward(self, x: Tensor) -> Tensor:
        """[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]."""
        if self.with_cp and x.requires_grad and torch.is_grad_enabled():
            return cp.checkpoint(self._block, x, use_reentrant=False)
        return self._block(x)


def model_scaling(layer_setting: List[List[list]], arch_setting: Sequence[float]) -> list:
    """Scale the width and depth of an EfficientNet block table.

    Width: every block's channels become ``make_divisible(channels * width, 8)``. Depth: the
    inner stages are split into runs of blocks with equal channels; a run of ``n`` blocks
    becomes ``ceil(depth * n)`` (cut, or extended by repeating its last block); runs are
    then merged back, a run starting with a stride-1 block (after the first run)
    joining the previous stage. The stem and the final conv are kept.

    Args:
        layer_setting (list): Per stage, blocks ``[kernel, channels, se_ratio, stride,
            expand_ratio, block_type]``; first and last stage are the stem and the final conv.
        arch_setting (Sequence[float]): (width factor, depth factor, resolution).

    Returns:
        list: The scaled table, same layout (the input is not modified).

    Example:
        >>> b = EfficientNet.layer_settings['b']
        >>> [len(stage) for stage in model_scaling(b, (1.2, 1.4, 300))]  # b3
        [1, 2, 3, 3, 10, 8, 1]
    """
    width, depth = arch_setting[0], arch_setting[1]
    scaled = copy.deepcopy(layer_setting)
    for stage in scaled:
        for block in stage:
            block[1] = make_divisible(block[1] * width, 8)

    runs = []
    for stage in scaled[1:-1]:
        start = 0
        for i in range(1, len(stage) + 1):
            if i == len(stage) or stage[i][1] != stage[i - 1][1]:
                runs.append(stage[start:i])
                start = i

    merged = [scaled[0]]
    for i, run in enumerate(runs):
        num = int(math.ceil(depth * len(run)))
        if num <= len(run):
            run = run[:num]
        else:
            run = copy.deepcopy(run) + [run[-1]] * (num - len(run))
        if run[0][3] == 1 and i != 0:
            merged[-1] += run.copy()
        else:
            merged.append(run.copy())
    merged.append(scaled[-1])
    return merged


@MODELS.register_module()
class EfficientNet(BaseModule):
    """EfficientNet backbone.

    Args:
        arch (str): 'b0' .. 'b8' or the EdgeTPU 'es', 'em', 'el'. Defaults to 'b0'.
        drop_path_rate (float): Stochastic depth of the last block, growing linearly from 0
            over all blocks. Defaults to 0.
        out_indices (Sequence[int]): Layers to output (0 stem, 1-5 block stages, 6 final
            conv). Defaults to (6, ).
        frozen_stages (int): Freeze (eval mode, no gradient) ``layers.0`` ..
            ``layers.{frozen_stages - 1}``; 0 freezes nothing. Defaults to 0.
        conv_cfg (dict): Conv layer config. Defaults to
            ``dict(type='Conv2dAdaptivePadding')``.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN', eps=1e-3)``.
        act_cfg (dict): Activation config. Defaults to ``dict(type='Swish')``.
        norm_eval (bool): Keep ``nn.BatchNorm2d`` layers in eval mode while training.
            Defaults to False.
        with_cp (bool): Gradient checkpointing in the blocks. Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Kaiming
            on Conv2d, constant 1 on BN / GN.
    """

    # Per stage, blocks [kernel, channels, se_ratio, stride, expand_ratio, block_type];
    # block_type -1: plain ConvModule (stem / final conv), 0: InvertedResidual,
    # 1: EdgeResidual. 'b' is EfficientNet-b0, 'e' EfficientNet-EdgeTPU-S.
    layer_settings = {
        'b': [[[3, 32, 0, 2, 0, -1]],
              [[3, 16, 4, 1, 1, 0]],
              [[3, 24, 4, 2, 6, 0], [3, 24, 4, 1, 6, 0]],
              [[5, 40, 4, 2, 6, 0], [5, 40, 4, 1, 6, 0]],
              [[3, 80, 4, 2, 6, 0], [3, 80, 4, 1, 6, 0], [3, 80, 4, 1, 6, 0],
               [5, 112, 4, 1, 6, 0], [5, 112, 4, 1, 6, 0], [5, 112, 4, 1, 6, 0]],
              [[5, 192, 4, 2, 6, 0], [5, 192, 4, 1, 6, 0], [5, 192, 4, 1, 6, 0],
               [5, 192, 4, 1, 6, 0], [3, 320, 4, 1, 6, 0]],
              [[1, 1280, 0, 1, 0, -1]]],
        'e': [[[3, 32, 0, 2, 0, -1]],
              [[3, 24, 0, 1, 3, 1]],
              [[3, 32, 0, 2, 8, 1], [3, 32, 0, 1, 8, 1]],
              [[3, 48, 0, 2, 8, 1], [3, 48, 0, 1, 8, 1], [3, 48, 0, 1, 8, 1],
               [3, 48, 0, 1, 8, 1]],
              [[5, 96, 0, 2, 8, 0], [5, 96, 0, 1, 8, 0], [5, 96, 0, 1, 8, 0],
               [5, 96, 0, 1, 8, 0], [5, 96, 0, 1, 8, 0], [5, 144, 0, 1, 8, 0],
               [5, 144, 0, 1, 8, 0], [5, 144, 0, 1, 8, 0], [5, 144, 0, 1, 8, 0]],
              [[5, 192, 0, 2, 8, 0], [5, 192, 0, 1, 8, 0]],
              [[1, 1280, 0, 1, 0, -1]]],
    }  # yapf: disable

    # (width factor, depth factor, resolution)
    arch_settings = {
        'b0': (1.0, 1.0, 224),
        'b1': (1.0, 1.1, 240),
        'b2': (1.1, 1.2, 260),
        'b3': (1.2, 1.4, 300),
        'b4': (1.4, 1.8, 380),
        'b5': (1.6, 2.2, 456),
        'b6': (1.8, 2.6, 528),
        'b7': (2.0, 3.1, 600),
        'b8': (2.2, 3.6, 672),
        'es': (1.0, 1.0, 224),
        'em': (1.0, 1.1, 240),
        'el': (1.2, 1.4, 300)
    }

    def __init__(self,
                 arch: str = 'b0',
                 drop_path_rate: float = 0.,
                 out_indices: Sequence[int] = (6, ),
                 frozen_stages: int = 0,
                 conv_cfg: ConfigType = dict(type='Conv2dAdaptivePadding'),
                 norm_cfg: ConfigType = dict(type='BN', eps=1e-3),
                 act_cfg: ConfigType = dict(type='Swish'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: OptMultiConfig = [
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)
                 ]) -> None:
        super().__init__(init_cfg)
        if arch not in self.arch_settings:
            raise EfficientNetArgumentError(
                f'"{arch}" is not one of the arch_settings '
                f'({", ".join(self.arch_settings.keys())})')
        self.arch_setting = self.arch_settings[arch]
        self.layer_setting = self.layer_settings[arch[:1]]
        num_layers = len(self.layer_setting)
        # mmdetection raises ValueError (not an assert) for these two.
        for index in out_indices:
            if index not in range(num_layers):
                raise ValueError(f'the item in out_indices must in range(0, {num_layers}). '
                                 f'But received {index}')
        if frozen_stages not in range(num_layers + 1):
            raise ValueError(f'frozen_stages must be in range(0, {num_layers + 1}). '
                             f'But received {frozen_stages}')
        self.drop_path_rate = drop_path_rate
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        self.layer_setting = model_scaling(self.layer_setting, self.arch_setting)
        stem, final = self.layer_setting[0][0], self.layer_setting[-1][0]
        # Running input width of the next block, advanced by make_layer (as mmdetection's).
        self.in_channels = make_divisible(stem[1], 8)
        self.out_channels = final[1]
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.layers = nn.ModuleList()
        self.layers.append(
            ConvModule(3, self.in_channels, stem[0], stride=stem[3], padding=stem[0] // 2,
                       **cfgs))
        self.make_layer()
        # Stages past the last output are not built; the final conv only when it is output.
        if len(self.layers) < max(self.out_indices) + 1:
            self.layers.append(
                ConvModule(self.in_channels, self.out_channels, final[0], stride=final[3],
                           padding=final[0] // 2, **cfgs))

    def make_layer(self) -> None:
        """Append the block stages up to ``max(out_indices)`` to ``self.layers``."""
        stages = self.layer_setting[1:-1]
        # Stochastic depth spans every block of the architecture, built or not.
        block_drop_path = torch.linspace(0, self.drop_path_rate, sum(len(s) for s in stages),
                                         device='cpu').tolist()
        block_idx = 0
        for stage_idx, stage in enumerate(stages):
            if stage_idx > max(self.out_indices) - 1:
                break
            blocks = []
            for i, (kernel_size, out_channels, se_ratio, stride, expand_ratio,
                    block_type) in enumerate(stage):
                out_channels = make_divisible(out_channels, 8)
                block = InvertedResidual
                if block_type == 1:
                    # EdgeTPU quirk kept from mmdetection: a repeated expand-3 block (only
                    # 'em'/'el', whose depth scaling repeats stage 1's block) expands by 4
                    # and has no residual.
                    with_residual = not (i > 0 and expand_ratio == 3)
                    if not with_residual:
                        expand_ratio = 4
                    block = partial(EdgeResidual, with_residual=with_residual)
                mid_channels = int(self.in_channels * expand_ratio)
                se_cfg = None
                if se_ratio > 0:
                    # ratio relative to the expanded width: the SE hidden width is
                    # in_channels / se_ratio (mmpretrain's rule, no divisor rounding).
                    se_cfg = dict(channels=mid_channels, ratio=expand_ratio * se_ratio,
                                  act_cfg=(self.act_cfg, dict(type='Sigmoid')))
                blocks.append(
                    block(
                        in_channels=self.in_channels,
                        out_channels=out_channels,
                        mid_channels=mid_channels,
                        kernel_size=kernel_size,
                        stride=stride,
                        se_cfg=se_cfg,
                        conv_cfg=self.conv_cfg,
                        norm_cfg=self.norm_cfg,
                        act_cfg=self.act_cfg,
                        drop_path_rate=block_drop_path[block_idx],
                        with_cp=self.with_cp,
                        with_expand_conv=mid_channels != self.in_channels))
                self.in_channels = out_channels
                block_idx += 1
            self.layers.append(Sequential(*blocks))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Compute the feature maps of the layers in ``out_indices``.

        Args:
            x (Tensor): Images [B, 3, H, W].

        Returns:
            tuple[Tensor]: One map per index, in layer order; layer ``i`` has stride
            2, 2, 4, 8, 16, 32, 32 for i = 0..6 ('SAME' padding: ``ceil(H / stride)`` rows).
        """
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            layer = self.layers[i]
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'EfficientNet':
        """Switch train/eval mode, re-applying the frozen stages and ``norm_eval``.

        As in mmdetection, ``norm_eval`` only affects ``nn.BatchNorm2d`` (not SyncBatchNorm,
        which is not a subclass of it).
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self
