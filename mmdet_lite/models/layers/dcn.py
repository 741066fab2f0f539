"""Deformable convolutions (DCN v1 and the modulated DCNv2) built on ``torchvision.ops``.

They stand in for mmcv's compiled ``DeformConv2dPack`` (``type='DCN'``) and
``ModulatedDeformConv2dPack`` (``type='DCNv2'``): same constructor arguments, same parameter
names (``weight``, ``bias``, ``conv_offset.weight``, ``conv_offset.bias``) and the same offset
layout, so mmdetection DCN checkpoints load unchanged.

Each layer predicts its own sampling offsets (and, for DCNv2, modulation masks) from its input
with a plain conv, ``conv_offset``, that starts at zero: at initialisation DCN equals a plain
convolution and DCNv2 equals half of it (sigmoid(0) = 0.5).

``ModulatedDeformConv2d`` is the DCNv2 layer without its own offset conv (the caller passes
offsets and masks), as mmcv's class of that name.

Both Pack types are registered in mmdet_lite's ``MODELS`` and in mmengine's root ``MODELS``,
where ``mmcv.cnn.build_conv_layer`` looks when no default scope is set, so
``conv_cfg=dict(type='DCN')`` works anywhere a conv config is accepted.
"""
import math
from typing import Tuple, Union

import torch
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import Tensor, nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d

from mmdet_lite.registry import MODELS

IntOrPair = Union[int, Tuple[int, int]]


class DCNArgumentError(ValueError, AssertionError):
    """A deformable conv argument mmcv rejects (mmcv asserts, hence also AssertionError)."""


class _DeformConvWeights(nn.Module):
    """Main-conv parameters, checks and the sampling call shared by every deformable conv.

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        kernel_size (int | tuple[int, int]): Kernel size (kh, kw).
        stride (int | tuple[int, int]): Stride.
        padding (int | tuple[int, int]): Zero padding.
        dilation (int | tuple[int, int]): Kernel dilation.
        groups (int): Groups of the main convolution.
        deform_groups (int): Channel groups that each get their own offsets.
        bias (bool): Whether the main convolution has a bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair, padding: IntOrPair, dilation: IntOrPair, groups: int,
                 deform_groups: int, bias: bool) -> None:
        super().__init__()
        name = type(self).__name__
        if in_channels % groups or out_channels % groups:
            raise DCNArgumentError(
                f'{name}: in_channels ({in_channels}) and out_channels ({out_channels}) '
                f'must be divisible by groups ({groups}).')
        if in_channels % deform_groups:
            raise DCNArgumentError(f'{name}: in_channels ({in_channels}) must be divisible '
                                   f'by deform_groups ({deform_groups}).')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        # nn.Conv2d attributes some tools (e.g. FLOP counters) read from any conv layer.
        self.transposed = False
        self.output_padding = (0, 0)

        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter('bias', None)
        self._reset_main_weights()

    def _reset_main_weights(self) -> None:
        # mmcv's uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C_in * kh * kw.
        stdv = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _make_offset_conv(self, values_per_position: int) -> nn.Conv2d:
        """The offset predictor of the Pack variants.

        It has the main conv's geometry, so offsets come out at the output resolution, and
        ``values_per_position`` outputs per kernel tap and deform group: 2 for (dy, dx),
        3 for (dy, dx, mask).
        """
        num_positions = self.kernel_size[0] * self.kernel_size[1]
        return nn.Conv2d(
            self.in_channels, self.deform_groups * values_per_position * num_positions,
            kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
            dilation=self.dilation, bias=True)

    def _zero_offset_conv(self) -> None:
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def _deform(self, x: Tensor, offset: Tensor, mask: Union[Tensor, None]) -> Tensor:
        return deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride,
                             padding=self.padding, dilation=self.dilation, mask=mask)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, padding={self.padding}, dilation={self.dilation}, '
                f'groups={self.groups}, deform_groups={self.deform_groups}, '
                f'bias={self.bias is not None}')


class DeformConv2d(_DeformConvWeights):
    """Deformable convolution v1 whose sampling offsets are computed elsewhere.

    Stands in for mmcv's ``mmcv.ops.DeformConv2d`` (VFNet's star-shaped convs use it): the
    same constructor arguments and a single parameter ``weight`` [C_out, C_in / groups, kh,
    kw] (no bias, no offset conv); :class:`DeformConv2dPack` adds the offset predictor.

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        kernel_size (int | tuple[int, int]): Kernel size (kh, kw).
        stride (int | tuple[int, int]): Stride. Defaults to 1.
        padding (int | tuple[int, int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int, int]): Dilation. Defaults to 1.
        groups (int): Groups of the convolution. Defaults to 1.
        deform_groups (int): Channel groups with separate offsets. Defaults to 1.
        bias (bool): Must be False (mmcv's DCN v1 has no bias). Defaults to False.
        im2col_step (int): Accepted for mmcv config compatibility; unused.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
                 groups: int = 1, deform_groups: int = 1, bias: bool = False,
                 im2col_step: int = 32) -> None:
        if bias:
            raise DCNArgumentError(f'{type(self).__name__} (DCN v1) does not support '
                                   'bias=True, as in mmcv; use DCNv2 for a biased '
                                   'deformable conv.')
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, deform_groups, bias=False)
        self.im2col_step = im2col_step

    def _reset_main_weights(self) -> None:
        # mmcv's DeformConv2d (v1): Kaiming-uniform for a ReLU, bound sqrt(6 / fan_in); DCNv2
        # keeps the +-1/sqrt(fan_in) uniform of the base. No init_weights method, as mmcv's
        # layer, so a parent's init_weights leaves the main weights alone.
        nn.init.kaiming_uniform_(self.weight, nonlinearity='relu')

    def forward(self, x: Tensor, offset: Tensor) -> Tensor:
        """Sample ``x`` at the kernel grid plus ``offset`` and convolve.

        Args:
            x (Tensor): Input [B, C_in, H, W].
            offset (Tensor): [B, 2 * deform_groups * kh * kw, H_out, W_out]; for deform group
                g and kernel tap k (row-major), channels ``2 * (g * kh * kw + k)`` and ``+ 1``
                are (dy, dx) in input pixels.

        Returns:
            Tensor: [B, C_out, H_out, W_out] (H_out, W_out as nn.Conv2d).
        """
        return self._deform(x, offset, mask=None)

    def __repr__(self) -> str:
        # mmcv's format, one argument per line (the Pack subclass prints the same).
        return (f'{type(self).__name__}(in_channels={self.in_channels},\n'
                f'out_channels={self.out_channels},\n'
                f'kernel_size={self.kernel_size},\n'
                f'stride={self.stride},\n'
                f'padding={self.padding},\n'
                f'dilation={self.dilation},\n'
                f'groups={self.groups},\n'
                f'deform_groups={self.deform_groups},\n'
                'bias=False)')


@MODELS.register_module('DCN')
class DeformConv2dPack(DeformConv2d):
    """Deformable convolution v1 (`Dai et al. 2017 <https://arxiv.org/abs/1703.06211>`_).

    Every kernel tap samples the input at its grid position plus a learned (dy, dx), predicted
    per output location by ``conv_offset`` (2 * deform_groups * kh * kw channels).

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        kernel_size (int | tuple[int, int]): Kernel size.
        stride (int | tuple[int, int]): Stride. Defaults to 1.
        padding (int | tuple[int, int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int, int]): Dilation. Defaults to 1.
        groups (int): Groups of the main convolution. Defaults to 1.
        deform_groups (int): Channel groups with separate offsets. Defaults to 1.
        bias (bool): Must be False: mmcv's DCN v1 has no bias. Defaults to False.
        im2col_step (int): Accepted for mmcv config compatibility; unused.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
                 groups: int = 1, deform_groups: int = 1, bias: bool = False,
                 im2col_step: int = 32) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, deform_groups, bias, im2col_step)
        self.conv_offset = self._make_offset_conv(values_per_position=2)
        self.init_offset()

    def init_offset(self) -> None:
        """Zero the offset conv: sampling starts on the regular grid.

        Named as mmcv's, and deliberately not ``init_weights``: mmengine's
        ``BaseModule.init_weights`` does not call it, so a parent's ``init_cfg`` (ResNet's
        Kaiming init of every ``Conv2d``) is the offsets' final init, as with mmcv's DCN v1.
        """
        self._zero_offset_conv()

    def forward(self, x: Tensor) -> Tensor:
        """Apply the deformable convolution.

        Args:
            x (Tensor): Input of shape [B, C_in, H, W].

        Returns:
            Tensor: Output of shape [B, C_out, H_out, W_out] (H_out, W_out as nn.Conv2d).
        """
        offset = self.conv_offset(x)  # [B, 2 * dg * kh * kw, H_out, W_out], (dy, dx) pairs
        return self._deform(x, offset, mask=None)


class ModulatedDeformConv2d(_DeformConvWeights):
    """Modulated deformable convolution, DCNv2 (`Zhu et al. 2018
    <https://arxiv.org/abs/1811.11168>`_), with offsets and masks given by the caller.

    mmcv's ``ModulatedDeformConv2d``: parameters ``weight`` and ``bias`` only. Layers that
    predict the offsets elsewhere (DyHead predicts them from another pyramid level) use it;
    :class:`ModulatedDeformConv2dPack` predicts them from its own input.

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        kernel_size (int | tuple[int, int]): Kernel size.
        stride (int | tuple[int, int]): Stride. Defaults to 1.
        padding (int | tuple[int, int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int, int]): Dilation. Defaults to 1.
        groups (int): Groups of the main convolution. Defaults to 1.
        deform_groups (int): Channel groups with separate offsets and masks. Defaults to 1.
        bias (bool): Whether the main convolution has a bias. Defaults to True.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
                 groups: int = 1, deform_groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, deform_groups, bias=bool(bias))

    def init_weights(self) -> None:
        """mmcv's init: weight uniform in +-1/sqrt(C_in * kh * kw), bias zero.

        Having this method also keeps ``ConvModule`` from applying its Kaiming init, as with
        mmcv's layer.
        """
        self._reset_main_weights()

    def forward(self, x: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        """Sample ``x`` at the grid plus ``offset``, scale each sample by ``mask``, convolve.

        Args:
            x (Tensor): Input of shape [B, C_in, H, W].
            offset (Tensor): [B, 2 * dg * kh * kw, H_out, W_out]; for deform group g and tap
                k (row-major over the kernel), channels ``2 * (g * kh * kw + k)`` and ``+ 1``
                are (dy, dx) in input pixels.
            mask (Tensor): [B, dg * kh * kw, H_out, W_out], usually in [0, 1].

        Returns:
            Tensor: Output of shape [B, C_out, H_out, W_out] (H_out, W_out as nn.Conv2d).
        """
        return self._deform(x, offset, mask=mask)


@MODELS.register_module('DCNv2')
class ModulatedDeformConv2dPack(ModulatedDeformConv2d):
    """DCNv2 that predicts its own offsets and masks (mmcv's ``type='DCNv2'``).

    Besides an offset, every kernel tap gets a weight in (0, 1) (sigmoid of a predicted logit)
    that scales its sample. ``conv_offset`` predicts 3 * deform_groups * kh * kw channels:
    the first two thirds are the (dy, dx) offsets, the last third the mask logits.

    Args:
        in_channels (int): Input channels C_in.
        out_channels (int): Output channels C_out.
        kernel_size (int | tuple[int, int]): Kernel size.
        stride (int | tuple[int, int]): Stride. Defaults to 1.
        padding (int | tuple[int, int]): Zero padding. Defaults to 0.
        dilation (int | tuple[int, int]): Dilation. Defaults to 1.
        groups (int): Groups of the main convolution. Defaults to 1.
        deform_groups (int): Channel groups with separate offsets and masks. Defaults to 1.
        bias (bool): Whether the main convolution has a bias. Defaults to True.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntOrPair,
                 stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
                 groups: int = 1, deform_groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, deform_groups, bias=bias)
        self.conv_offset = self._make_offset_conv(values_per_position=3)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's init: the main weights as :class:`ModulatedDeformConv2d`, offsets zero.

        mmengine's ``BaseModule.init_weights`` calls this after a parent's ``init_cfg`` (e.g.
        ResNet's Kaiming init of every ``Conv2d``), so, as with mmcv's layer, a DCNv2 inside
        a ResNet ends with the uniform main weights and zero offsets, not Kaiming ones.
        """
        super().init_weights()
        self._zero_offset_conv()

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """Apply the modulated deformable convolution.

        Args:
            x (Tensor): Input of shape [B, C_in, H, W].

        Returns:
            Tensor: Output of shape [B, C_out, H_out, W_out] (H_out, W_out as nn.Conv2d).
        """
        out = self.conv_offset(x)  # [B, 3 * dg * kh * kw, H_out, W_out]
        offset_a, offset_b, mask_logits = torch.chunk(out, 3, dim=1)
        # mmcv's channel layout: the first two thirds together are the (dy, dx) pairs.
        offset = torch.cat((offset_a, offset_b), dim=1)  # [B, 2 * dg * kh * kw, H_out, W_out]
        return self._deform(x, offset, mask=mask_logits.sigmoid())


# mmcv.cnn.build_conv_layer resolves names in mmengine's root registry unless a default scope
# is set; register there too, unless a real mmcv build already provides these names.
for _name, _cls in (('DCN', DeformConv2dPack), ('DCNv2', ModulatedDeformConv2dPack)):
    if _name not in MMENGINE_MODELS.module_dict:
        MMENGINE_MODELS.register_module(_name, module=_cls)
