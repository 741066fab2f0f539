"""Merge cells of NAS-FPN and NAS-FCOS: fuse two feature maps at a target resolution.

They stand in for ``mmcv.ops.merge_cells`` (pure Python in mmcv, but importing ``mmcv.ops``
needs its compiled extension). Same constructor arguments and submodule names
(``input1_conv``, ``input2_conv``, ``out_conv``, ``global_pool``), so checkpoints load.

A cell optionally convolves each input, resizes both to the output size (upsampling, or
max-pooling by an integer factor after zero-padding to a multiple of it), fuses them
(sum / concat / global-attention sum) and optionally applies an output conv.
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor, nn

from .neck_arg_checks import NeckArgumentError


class BaseMergeCell(nn.Module):
    """Two-input cell: input convs, resize to a common size, binary op, output conv.

    Args:
        fused_channels (int, optional): Channels after the binary op (out_conv input).
        out_channels (int, optional): Output channels of out_conv; also the channels of
            the optional input convs.
        with_out_conv (bool): Apply ``out_conv`` after fusing. Defaults to True.
        out_conv_cfg (dict): ConvModule arguments of out_conv (``groups``,
            ``kernel_size``, ``padding``, ``bias``). Defaults to a 3x3 conv with bias.
        out_norm_cfg (dict, optional): Norm layer of out_conv. Defaults to None.
        out_conv_order (tuple[str]): Layer order of out_conv.
            Defaults to ``('act', 'conv', 'norm')``.
        with_input1_conv (bool): 3x3 ConvModule on the first input. Defaults to False.
        with_input2_conv (bool): 3x3 ConvModule on the second input. Defaults to False.
        input_conv_cfg (dict, optional): Conv layer config of the input convs.
        input_norm_cfg (dict, optional): Norm layer config of the input convs.
        upsample_mode (str): ``'nearest'`` or ``'bilinear'``. Defaults to ``'nearest'``.
    """

    def __init__(self,
                 fused_channels: Optional[int] = 256,
                 out_channels: Optional[int] = 256,
                 with_out_conv: bool = True,
                 out_conv_cfg: dict = dict(groups=1, kernel_size=3, padding=1, bias=True),
                 out_norm_cfg: Optional[dict] = None,
                 out_conv_order: tuple = ('act', 'conv', 'norm'),
                 with_input1_conv: bool = False,
                 with_input2_conv: bool = False,
                 input_conv_cfg: Optional[dict] = None,
                 input_norm_cfg: Optional[dict] = None,
                 upsample_mode: str = 'nearest') -> None:
        super().__init__()
        if upsample_mode not in ('nearest', 'bilinear'):
            raise NeckArgumentError(f"{type(self).__name__} upsample_mode must be 'nearest' "
                                    f"or 'bilinear', got {upsample_mode!r}.")
        self.with_out_conv = with_out_conv
        self.with_input1_conv = with_input1_conv
        self.with_input2_conv = with_input2_conv
        self.upsample_mode = upsample_mode
        if with_out_conv:
            self.out_conv = ConvModule(fused_channels, out_channels, **out_conv_cfg,
                                       norm_cfg=out_norm_cfg, order=out_conv_order)
        # An empty Sequential is the identity and adds no state_dict keys, as in mmcv.
        self.input1_conv = (self._input_conv(out_channels, input_conv_cfg, input_norm_cfg)
                            if with_input1_conv else nn.Sequential())
        self.input2_conv = (self._input_conv(out_channels, input_conv_cfg, input_norm_cfg)
                            if with_input2_conv else nn.Sequential())

    @staticmethod
    def _input_conv(channels: int, conv_cfg: Optional[dict],
                    norm_cfg: Optional[dict]) -> ConvModule:
        return ConvModule(channels, channels, 3, padding=1, conv_cfg=conv_cfg,
                          norm_cfg=norm_cfg, bias=True)

    def _binary_op(self, x1: Tensor, x2: Tensor) -> Tensor:
        raise NotImplementedError

    def _resize(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        """Resize [N, C, H, W] to ``size``.

        Sizes compare as tuples (height first, then width), as mmcv does: a "smaller"
        map is interpolated, a "larger" one is zero-padded (centred) to a multiple of
        ``size`` and max-pooled by the integer ratio.
        """
        cur = tuple(x.shape[-2:])
        size = tuple(size)
        if cur == size:
            return x
        if cur < size:
            return F.interpolate(x, size=size, mode=self.upsample_mode)
        h, w = cur
        th, tw = size
        if h % th or w % tw:
            pad_h = math.ceil(h / th) * th - h
            pad_w = math.ceil(w / tw) * tw - w
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        kernel = (x.shape[-2] // th, x.shape[-1] // tw)
        return F.max_pool2d(x, kernel_size=kernel, stride=kernel)

    def forward(self, x1: Tensor, x2: Tensor,
                out_size: Optional[Sequence[int]] = None) -> Tensor:
        """Fuse two maps.

        Args:
            x1 (Tensor): First input, [N, C, H1, W1].
            x2 (Tensor): Second input, [N, C, H2, W2].
            out_size (Sequence[int], optional): Output (H, W); None means the larger of
                the two input sizes (compared as tuples).

        Returns:
            Tensor: [N, C_out, H, W].
        """
        if x1.shape[:2] != x2.shape[:2]:
            raise NeckArgumentError(f'{type(self).__name__} inputs must share batch size '
                                    f'and channels, got {tuple(x1.shape)} and '
                                    f'{tuple(x2.shape)}.')
        if out_size is not None and len(out_size) != 2:
            raise NeckArgumentError(f'{type(self).__name__} out_size must be (H, W), got '
                                    f'{out_size!r}.')
        if out_size is None:
            out_size = max(tuple(x1.shape[2:]), tuple(x2.shape[2:]))
        x1 = self._resize(self.input1_conv(x1), out_size)
        x2 = self._resize(self.input2_conv(x2), out_size)
        x = self._binary_op(x1, x2)
        return self.out_conv(x) if self.with_out_conv else x


class SumCell(BaseMergeCell):
    """Fuse by element-wise sum (``fused_channels == in_channels``)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)

    def _binary_op(self, x1: Tensor, x2: Tensor) -> Tensor:
        return x1 + x2


class ConcatCell(BaseMergeCell):
    """Fuse by channel concatenation (``fused_channels == 2 * in_channels``)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__(in_channels * 2, out_channels, **kwargs)

    def _binary_op(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.cat([x1, x2], dim=1)


class GlobalPoolingCell(BaseMergeCell):
    """Fuse as ``x2 + sigmoid(global_avg_pool(x2)) * x1``: x2's channel attention on x1."""

    def __init__(self, in_channels: Optional[int] = None, out_channels: Optional[int] = None,
                 **kwargs) -> None:
        super().__init__(in_channels, out_channels, **kwargs)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))

    def _binary_op(self, x1: Tensor, x2: Tensor) -> Tensor:
        return x2 + self.global_pool(x2).sigmoid() * x1
