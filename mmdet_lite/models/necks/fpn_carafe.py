"""FPN_CARAFE: an FPN whose top-down upsampling is a configurable layer (CARAFE by default).

From the CARAFE paper (Wang et al., https://arxiv.org/abs/1905.02188).
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import ConvModule, build_upsample_layer
from mmengine.model import BaseModule, ModuleList, xavier_init
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

from ..layers.carafe import CARAFEPack
from .neck_arg_checks import NeckArgumentError, check_list, resolve_backbone_end_level

UPSAMPLE_TYPES = ('nearest', 'bilinear', 'deconv', 'pixel_shuffle', 'carafe', None)
CONV_ORDERS = (('conv', 'norm', 'act'), ('act', 'conv', 'norm'))


@MODELS.register_module()
class FPN_CARAFE(BaseModule):
    """FPN with a learned (or chosen) 2x upsampler in the top-down path.

    Unlike :class:`FPN`, the extra levels are part of the pyramid: each extra level has a
    stride-2 3x3 "lateral" conv (on the last used input, then on the previous extra
    lateral), takes part in the top-down path, and gets its own 3x3 output conv. Every
    coarser lateral is upsampled by ``upsample_modules[i]`` and added (cropped to size)
    into the next finer one.

    Args:
        in_channels (list[int]): Channels of each input level.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels.
        start_level (int): First used input level. Defaults to 0.
        end_level (int): Last used input level (inclusive), -1 for the last.
            Defaults to -1.
        norm_cfg (dict, optional): Norm layer config; without one the convs have a bias.
        act_cfg (dict, optional): Activation config. Defaults to None.
        order (tuple[str]): ConvModule layer order, ``('conv', 'norm', 'act')`` or
            ``('act', 'conv', 'norm')``. Defaults to ``('conv', 'norm', 'act')``.
        upsample_cfg (dict): Upsampler config; ``type`` is one of ``'nearest'``,
            ``'bilinear'``, ``'deconv'``, ``'pixel_shuffle'`` (these two also need
            ``upsample_kernel``), ``'carafe'`` or None (no upsampling). The other keys go
            to the layer. Defaults to CARAFE with ``up_kernel=5, up_group=1,
            encoder_kernel=3, encoder_dilation=1``.
        init_cfg (None): Must be None; weights are set by :meth:`init_weights`.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 norm_cfg: OptConfigType = None,
                 act_cfg: OptConfigType = None,
                 order: tuple = ('conv', 'norm', 'act'),
                 upsample_cfg: ConfigType = dict(type='carafe', up_kernel=5, up_group=1,
                                                 encoder_kernel=3, encoder_dilation=1),
                 init_cfg: OptMultiConfig = None) -> None:
        if init_cfg is not None:
            raise NeckArgumentError('FPN_CARAFE init_cfg must be None (its init_weights '
                                    f'sets the weights), got {init_cfg!r}.')
        super().__init__(init_cfg)
        check_list(in_channels, 'in_channels', 'FPN_CARAFE')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.with_bias = norm_cfg is None
        self.upsample_cfg = dict(upsample_cfg)
        self.upsample = self.upsample_cfg.get('type')
        self.relu = nn.ReLU(inplace=False)  # unused; kept for mmdet's module tree

        self.order = tuple(order)
        if self.order not in CONV_ORDERS:
            raise NeckArgumentError(f'FPN_CARAFE order must be one of {CONV_ORDERS}, got '
                                    f'{order!r}.')
        if self.upsample not in UPSAMPLE_TYPES:
            raise NeckArgumentError(f'FPN_CARAFE upsample_cfg type must be one of '
                                    f'{UPSAMPLE_TYPES}, got {self.upsample!r}.')
        if self.upsample in ('deconv', 'pixel_shuffle'):
            kernel = self.upsample_cfg.pop('upsample_kernel', None)
            if not (isinstance(kernel, int) and kernel > 0):
                raise NeckArgumentError(
                    f"FPN_CARAFE upsample_cfg of type '{self.upsample}' needs a positive "
                    f'int upsample_kernel, got {kernel!r}.')
            self.upsample_kernel = kernel

        self.backbone_end_level = resolve_backbone_end_level(
            self.num_ins, start_level, end_level, num_outs, 'FPN_CARAFE')
        self.start_level = start_level
        self.end_level = end_level

        self.lateral_convs = ModuleList()
        self.fpn_convs = ModuleList()
        self.upsample_modules = ModuleList()
        for i in range(start_level, self.backbone_end_level):
            self.lateral_convs.append(self._conv(self.in_channels[i], 1))
            self.fpn_convs.append(self._conv(out_channels, 3, padding=1))
            if i != self.backbone_end_level - 1:  # the coarsest used level is never upsampled
                self.upsample_modules.append(self._build_upsampler(extra=False))

        num_extra = num_outs - (self.backbone_end_level - start_level)
        for i in range(num_extra):
            extra_in = self.in_channels[self.backbone_end_level - 1] if i == 0 else out_channels
            self.upsample_modules.append(self._build_upsampler(extra=True))
            self.fpn_convs.append(self._conv(out_channels, 3, padding=1))
            self.lateral_convs.append(self._conv(extra_in, 3, stride=2, padding=1))

    def _conv(self, in_channels: int, kernel_size: int, **kwargs) -> ConvModule:
        return ConvModule(in_channels, self.out_channels, kernel_size, norm_cfg=self.norm_cfg,
                          bias=self.with_bias, act_cfg=self.act_cfg, inplace=False,
                          order=self.order, **kwargs)

    def _build_upsampler(self, extra: bool) -> Optional[nn.Module]:
        """The 2x upsampler of one level (``None`` type: no module, as in mmdet)."""
        channels = self.out_channels
        if self.upsample == 'deconv':
            pad = (self.upsample_kernel - 1) // 2
            layer_args = dict(in_channels=channels, out_channels=channels,
                              kernel_size=self.upsample_kernel, stride=2, padding=pad,
                              output_padding=pad)
        elif self.upsample == 'pixel_shuffle':
            layer_args = dict(in_channels=channels, out_channels=channels, scale_factor=2,
                              upsample_kernel=self.upsample_kernel)
        elif self.upsample == 'carafe':
            layer_args = dict(channels=channels, scale_factor=2)
        else:
            # align_corners only means something (and only silences a warning) for bilinear.
            layer_args = dict(scale_factor=2, mode=self.upsample,
                              align_corners=None if self.upsample == 'nearest' else False)
        cfg = dict(self.upsample_cfg)
        if extra and self.upsample not in ('carafe',):
            # mmdet builds the extra levels' upsamplers from the layer arguments alone.
            cfg = dict(type=self.upsample)
        cfg.update(layer_args)
        if cfg['type'] == 'carafe':
            # Our CARAFEPack directly: mmcv.ops, where 'carafe' is registered, is compiled.
            cfg['type'] = CARAFEPack
        if cfg['type'] is None:
            return nn.Identity()
        return build_upsample_layer(cfg)

    def init_weights(self) -> None:
        """Xavier-uniform on every (transposed) conv, then CARAFE's own encoder init."""
        super().init_weights()
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                xavier_init(m, distribution='uniform')
        for m in self.modules():
            if isinstance(m, CARAFEPack):
                m.init_weights()

    @staticmethod
    def slice_as(src: Tensor, dst: Tensor) -> Tensor:
        """Crop ``src`` [N, C, H', W'] to the size of ``dst`` [N, C, H, W] (H' >= H, W' >= W)."""
        if not (src.size(2) >= dst.size(2) and src.size(3) >= dst.size(3)):
            raise NeckArgumentError(f'FPN_CARAFE cannot crop {tuple(src.shape)} to the '
                                    f'larger {tuple(dst.shape)}.')
        if src.shape[2:] == dst.shape[2:]:
            return src
        return src[:, :, :dst.size(2), :dst.size(3)]

    def tensor_add(self, a: Tensor, b: Tensor) -> Tensor:
        """``a + b`` with ``b`` cropped to ``a``'s size (a 2x upsampled odd map is 1 px larger)."""
        return a + b if a.size() == b.size() else a + self.slice_as(b, a)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build the pyramid.

        Args:
            inputs (Sequence[Tensor]): One map per input level, fine to coarse,
                ``[B, in_channels[i], H_i, W_i]``.

        Returns:
            tuple[Tensor]: ``num_outs`` maps ``[B, out_channels, H_j, W_j]``, fine to coarse.
        """
        if len(inputs) != self.num_ins:
            raise NeckArgumentError(f'FPN_CARAFE expects {self.num_ins} input maps (one per '
                                    f'in_channels entry), got {len(inputs)}.')
        num_used = self.backbone_end_level - self.start_level
        laterals = []
        for i, conv in enumerate(self.lateral_convs):
            # Used levels read their input, the first extra level the last used input
            # (the index is clamped), later extra levels the previous extra lateral.
            if i <= num_used:
                source = inputs[min(i + self.start_level, len(inputs) - 1)]
            else:
                source = laterals[-1]
            laterals.append(conv(source))

        for i in range(len(laterals) - 1, 0, -1):
            upsampled = (self.upsample_modules[i - 1](laterals[i])
                         if self.upsample is not None else laterals[i])
            laterals[i - 1] = self.tensor_add(laterals[i - 1], upsampled)

        return tuple(conv(lateral) for conv, lateral in zip(self.fpn_convs, laterals))
