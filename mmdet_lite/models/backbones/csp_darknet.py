"""CSPDarknet, the YOLOX backbone (mmdetection 3.3's ``csp_darknet.py``), its ``Focus`` stem,
and the stage layout it shares with CSPNeXt (RTMDet).

Both backbones are a stem followed by ``stage1``..``stageN`` (``nn.Sequential``): a stride-2
3x3 conv, an SPP bottleneck in the last stage, then a :class:`CSPLayer`. They differ in the
stem, the block depths and the CSP block kind; :class:`CSPBackboneBase` holds what they
share. ``SPPBottleneck`` lives in ``models/layers`` and is re-exported here, under the module
path mmdetection defines it at.
"""
import math
from typing import List, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from ..layers.csp_layer import CSPLayer
from ..layers.spp_bottleneck import SPPBottleneck

__all__ = ['CSPBackboneArgumentError', 'CSPBackboneBase', 'CSPDarknet', 'Focus',
           'SPPBottleneck']

# torch's own default Conv2d init, spelled as an mmengine init_cfg: it replaces the
# kaiming-normal init ConvModule gives its conv at construction (and zeroes conv biases).
CSP_CONV_INIT = dict(type='Kaiming', layer='Conv2d', a=math.sqrt(5), distribution='uniform',
                     mode='fan_in', nonlinearity='leaky_relu')


class CSPBackboneArgumentError(ValueError, AssertionError):
    """A CSPDarknet / CSPNeXt argument mmdetection rejects (with an assert or ValueError)."""


class CSPBackboneBase(BaseModule):
    """Stem + CSP stages, frozen stages, ``norm_eval`` and the multi-level forward.

    Layer ``0`` is ``stem`` (stride 2) and layer ``i`` is ``stage{i}`` (stride ``2**(i+1)``);
    ``out_indices`` count in these layers. Subclasses define ``arch_settings``, rows of
    ``[in_channels, out_channels, num_blocks, add_identity, use_spp]``, and build ``stem``.
    """
    arch_settings: dict = {}

    def _setup(self, arch: str, arch_ovewrite: list, out_indices: Sequence[int],
               frozen_stages: int, use_depthwise: bool, norm_eval: bool) -> list:
        """Check the arguments, store them, and return the stage rows to build."""
        if arch not in self.arch_settings:
            raise KeyError(f'{type(self).__name__}: arch must be one of '
                           f'{sorted(self.arch_settings)}, got {arch!r}')
        arch_setting = arch_ovewrite if arch_ovewrite else self.arch_settings[arch]
        num_layers = len(arch_setting) + 1  # the stem, then one layer per stage
        if not set(out_indices).issubset(range(num_layers)):
            raise CSPBackboneArgumentError(
                f'{type(self).__name__}: out_indices must be in 0..{num_layers - 1} (0 is the '
                f'stem, i is stage i), got {tuple(out_indices)}')
        if frozen_stages not in range(-1, num_layers):
            raise CSPBackboneArgumentError(
                f'{type(self).__name__}: frozen_stages must be in range(-1, '
                f'{num_layers}) (-1 freezes nothing), got {frozen_stages!r}')
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.use_depthwise = use_depthwise
        self.norm_eval = norm_eval
        return arch_setting

    def _add_stages(self, arch_setting: list, deepen_factor: float, widen_factor: float,
                    spp_kernel_sizes: Sequence[int], csp_kwargs: dict, cfgs: dict) -> None:
        """Add ``stage1``..``stageN`` after the stem and list all layers in ``self.layers``."""
        conv = DepthwiseSeparableConvModule if self.use_depthwise else ConvModule
        self.layers: List[str] = ['stem']
        for i, (in_channels, out_channels, num_blocks, add_identity,
                use_spp) in enumerate(arch_setting):
            in_channels = int(in_channels * widen_factor)
            out_channels = int(out_channels * widen_factor)
            # Python's round (half to even), as mmdetection; at least one block per stage.
            num_blocks = max(round(num_blocks * deepen_factor), 1)
            stage = [conv(in_channels, out_channels, 3, stride=2, padding=1, **cfgs)]
            if use_spp:
                stage.append(SPPBottleneck(out_channels, out_channels,
                                           kernel_sizes=spp_kernel_sizes, **cfgs))
            stage.append(CSPLayer(out_channels, out_channels, num_blocks=num_blocks,
                                  add_identity=add_identity, use_depthwise=self.use_depthwise,
                                  **csp_kwargs, **cfgs))
            self.add_module(f'stage{i + 1}', nn.Sequential(*stage))
            self.layers.append(f'stage{i + 1}')

    def _freeze_stages(self) -> None:
        """Eval mode and no gradients for layers 0..frozen_stages (the stem is layer 0)."""
        for name in self.layers[:self.frozen_stages + 1]:
            layer = getattr(self, name)
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'CSPBackboneBase':
        """Switch train/eval mode, keeping frozen stages and (with norm_eval) BNs in eval.

        As in mmdetection, stages are frozen here, not at construction: a freshly built
        backbone has ``requires_grad=True`` everywhere until ``train()`` is first called.
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Compute the feature maps of the layers in ``out_indices``.

        Args:
            x (Tensor): Images, [B, 3, H, W] (H, W multiples of 2**num_layers).

        Returns:
            tuple[Tensor]: For each i in ``out_indices`` (ascending layer order), a map
            [B, C_i, H / 2**(i+1), W / 2**(i+1)]; the default (2, 3, 4) of a P5 arch gives
            strides 8, 16, 32 with C = 256, 512, 1024 times ``widen_factor``.
        """
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)  # [B, C_i, H / 2**(i+1), W / 2**(i+1)]
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


class Focus(nn.Module):
    """Space-to-depth stem: each 2x2 pixel block becomes 4 channel groups, then a conv.

    Args:
        in_channels (int): Input channels C.
        out_channels (int): Output channels.
        kernel_size (int): Conv kernel (padded by ``(k - 1) // 2``). Defaults to 1.
        stride (int): Conv stride. Defaults to 1.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 stride: int = 1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: ConfigType = dict(type='Swish')) -> None:
        super().__init__()
        self.conv = ConvModule(in_channels * 4, out_channels, kernel_size, stride,
                               padding=(kernel_size - 1) // 2, conv_cfg=conv_cfg,
                               norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """Fold 2x2 blocks into channels and convolve.

        Args:
            x (Tensor): [B, C, H, W], H and W even.

        Returns:
            Tensor: [B, out_channels, H/2, W/2] (for stride 1).
        """
        # Group order (row, col) offsets (0,0), (1,0), (0,1), (1,1): YOLOv5's, which the
        # first conv's pretrained weights depend on.
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]),
                      dim=1)  # [B, 4C, H/2, W/2]
        return self.conv(x)


@MODELS.register_module()
class CSPDarknet(CSPBackboneBase):
    """CSP-Darknet, the backbone of YOLOv5 and YOLOX: a Focus stem and four (P5) or five (P6)
    stages of CSP layers with Darknet bottlenecks.

    Args:
        arch (str): 'P5' or 'P6'. Defaults to 'P5'.
        deepen_factor (float): Blocks per CSP layer = ``max(round(n * deepen_factor), 1)``.
            Defaults to 1.0.
        widen_factor (float): Channels = ``int(c * widen_factor)``. Defaults to 1.0.
        out_indices (Sequence[int]): Layers to output (0 is the stem). Defaults to (2, 3, 4).
        frozen_stages (int): Freeze layers 0..frozen_stages; -1 freezes none. Defaults to -1.
        use_depthwise (bool): Depthwise separable stride-2 convs and bottleneck 3x3 convs
            (YOLOX-nano). Defaults to False.
        arch_ovewrite (list, optional): Stage rows replacing the arch's (mmdetection's
            spelling). Defaults to None.
        spp_kernal_sizes (Sequence[int]): SPP pool kernels (mmdetection's spelling; CSPNeXt
            spells it ``spp_kernel_sizes``). Defaults to (5, 9, 13).
        conv_cfg (dict, optional): Conv layer config; the Focus conv, stage convs and CSP
            layers get it. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish.
        norm_eval (bool): Keep BN layers in eval mode (frozen running stats) while training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Kaiming
            uniform (a=sqrt(5), fan_in, leaky_relu) on every Conv2d.

    Example:
        >>> model = CSPDarknet(deepen_factor=0.33, widen_factor=0.5)  # YOLOX-s
        >>> # [1, 3, 64, 64] -> [1, 128, 8, 8], [1, 256, 4, 4], [1, 512, 2, 2]
    """
    arch_settings = {
        'P5': [[64, 128, 3, True, False], [128, 256, 9, True, False],
               [256, 512, 9, True, False], [512, 1024, 3, False, True]],
        'P6': [[64, 128, 3, True, False], [128, 256, 9, True, False],
               [256, 512, 9, True, False], [512, 768, 3, True, False],
               [768, 1024, 3, False, True]]
    }

    def __init__(self,
                 arch: str = 'P5',
                 deepen_factor: float = 1.0,
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (2, 3, 4),
                 frozen_stages: int = -1,
                 use_depthwise: bool = False,
                 arch_ovewrite: list = None,
                 spp_kernal_sizes: Sequence[int] = (5, 9, 13),
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: ConfigType = dict(type='Swish'),
                 norm_eval: bool = False,
                 init_cfg: OptMultiConfig = CSP_CONV_INIT) -> None:
        super().__init__(init_cfg)
        arch_setting = self._setup(arch, arch_ovewrite, out_indices, frozen_stages,
                                   use_depthwise, norm_eval)
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.stem = Focus(3, int(arch_setting[0][0] * widen_factor), kernel_size=3, **cfgs)
        # Darknet bottlenecks with the CSP layer's default expand ratio (0.5).
        self._add_stages(arch_setting, deepen_factor, widen_factor, spp_kernal_sizes,
                         csp_kwargs={}, cfgs=cfgs)
