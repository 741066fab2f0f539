"""Patch tokenizers of hierarchical vision transformers (Swin): embedding and merging.

``PatchEmbed`` turns an image into a sequence of patch tokens with one strided conv;
``PatchMerging`` halves the token grid of a stage by concatenating each 2x2 group of
neighbours (with ``nn.Unfold``) and projecting them with a Linear. Both pad the bottom/right
(or all sides) through ``AdaptivePadding`` so that inputs of any size are fully covered.

Names, arguments, defaults and state_dict keys (``projection``, ``norm``, ``reduction``) are
mmdetection 3.3's (``mmdet.models.layers.transformer.utils``).

``PatchMerging`` concatenates the 2x2 neighbours in ``nn.Unfold``'s order: channel-major,
then (row, col) of the kernel, i.e. feature ``c * 4 + (i * 2 + j)``. The official Swin code
concatenates ``[(0, 0), (1, 0), (0, 1), (1, 1)]`` blocks of all channels instead;
``swin_converter`` (``models/backbones/swin_converter.py``) reorders official weights.
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmengine.utils import to_2tuple
from torch import Tensor, nn

from mmdet_lite.utils import OptConfigType

__all__ = ['AdaptivePadding', 'PatchEmbed', 'PatchMerging', 'PatchArgumentError']

IntOrPair = Union[int, Tuple[int, int]]


class PatchArgumentError(ValueError, AssertionError):
    """A patch-layer argument or input that mmdetection rejects with an assert (hence also an
    AssertionError)."""


def _conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a conv / unfold along one axis (PyTorch's Conv2d formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class AdaptivePadding(nn.Module):
    """Zero-pad an input so that a sliding window covers all of it.

    With ``out = ceil(size / stride)`` windows along an axis, the padded length must reach
    ``(out - 1) * stride + (kernel - 1) * dilation + 1``; the difference is padded. 'corner'
    pads only bottom/right, 'same' splits it (the smaller half top/left), like TensorFlow's
    SAME padding. E.g. kernel 16, stride 16 on a [1, 1, 15, 17] input gives [1, 1, 16, 32].

    Args:
        kernel_size (int | tuple[int]): Window size. Defaults to 1.
        stride (int | tuple[int]): Window stride. Defaults to 1.
        dilation (int | tuple[int]): Window dilation. Defaults to 1.
        padding (str): 'corner' or 'same'. Defaults to 'corner'.
    """

    def __init__(self,
                 kernel_size: IntOrPair = 1,
                 stride: IntOrPair = 1,
                 dilation: IntOrPair = 1,
                 padding: str = 'corner') -> None:
        super().__init__()
        if padding not in ('same', 'corner'):
            raise PatchArgumentError(
                f"AdaptivePadding: padding must be 'same' or 'corner', got {padding!r}.")
        self.padding = padding
        self.kernel_size = to_2tuple(kernel_size)
        self.stride = to_2tuple(stride)
        self.dilation = to_2tuple(dilation)

    def get_pad_shape(self, input_shape: Sequence[int]) -> Tuple[int, int]:
        """Padding needed along each axis.

        Args:
            input_shape (Sequence[int]): (H, W) of the input.

        Returns:
            tuple[int, int]: (pad_h, pad_w), each >= 0.
        """
        pads = []
        for size, kernel, stride, dilation in zip(input_shape, self.kernel_size, self.stride,
                                                  self.dilation):
            num_windows = math.ceil(size / stride)
            needed = (num_windows - 1) * stride + (kernel - 1) * dilation + 1
            pads.append(max(needed - size, 0))
        return pads[0], pads[1]

    def forward(self, x: Tensor) -> Tensor:
        """Pad ``x`` of shape [B, C, H, W] to [B, C, H + pad_h, W + pad_w]."""
        pad_h, pad_w = self.get_pad_shape(x.shape[-2:])
        if pad_h == 0 and pad_w == 0:
            return x
        if self.padding == 'corner':
            return F.pad(x, [0, pad_w, 0, pad_h])
        return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


class PatchEmbed(BaseModule):
    """Image to patch tokens: a conv ``projection`` (kernel = stride = patch size), an
    optional ``norm`` over channels.

    Args:
        in_channels (int): Input channels. Defaults to 3.
        embed_dims (int): Token channels. Defaults to 768.
        conv_type (str): Conv layer type of ``projection``. Defaults to 'Conv2d'.
        kernel_size (int | tuple[int]): Conv kernel. Defaults to 16.
        stride (int | tuple[int], optional): Conv stride; ``kernel_size`` when None.
            Defaults to 16.
        padding (int | tuple[int] | str): Conv padding, or an ``AdaptivePadding`` mode
            ('corner' / 'same'), which then replaces the conv's own padding.
            Defaults to 'corner'.
        dilation (int | tuple[int]): Conv dilation. Defaults to 1.
        bias (bool): Conv bias. Defaults to True.
        norm_cfg (dict, optional): Norm over the embedding, e.g. dict(type='LN').
            Defaults to None.
        input_size (int | tuple[int], optional): An input size to precompute
            ``init_out_size`` (the token grid, used to size an absolute position embedding).
            Defaults to None.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int = 3,
                 embed_dims: int = 768,
                 conv_type: str = 'Conv2d',
                 kernel_size: IntOrPair = 16,
                 stride: Optional[IntOrPair] = 16,
                 padding: Union[int, tuple, str] = 'corner',
                 dilation: IntOrPair = 1,
                 bias: bool = True,
                 norm_cfg: OptConfigType = None,
                 input_size: Optional[IntOrPair] = None,
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        if stride is None:
            stride = kernel_size
        kernel_size = to_2tuple(kernel_size)
        stride = to_2tuple(stride)
        dilation = to_2tuple(dilation)

        if isinstance(padding, str):
            self.adap_padding = AdaptivePadding(kernel_size, stride, dilation, padding)
            padding = 0  # the adaptive padding replaces the conv's
        else:
            self.adap_padding = None
        padding = to_2tuple(padding)

        self.projection = build_conv_layer(
            dict(type=conv_type), in_channels=in_channels, out_channels=embed_dims,
            kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
            bias=bias)
        self.norm = build_norm_layer(norm_cfg, embed_dims)[1] if norm_cfg is not None else None

        if input_size:
            input_size = to_2tuple(input_size)
            self.init_input_size = input_size
            if self.adap_padding:
                pad_h, pad_w = self.adap_padding.get_pad_shape(input_size)
                input_size = (input_size[0] + pad_h, input_size[1] + pad_w)
            self.init_out_size = tuple(
                _conv_out_size(input_size[i], kernel_size[i], stride[i], padding[i],
                               dilation[i]) for i in range(2))
        else:
            self.init_input_size = None
            self.init_out_size = None

    def forward(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        """Embed an image.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            tuple: ``x`` [B, out_h * out_w, embed_dims] (row-major tokens) and
            ``(out_h, out_w)``.
        """
        if self.adap_padding:
            x = self.adap_padding(x)
        x = self.projection(x)
        out_size = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return x, out_size


class PatchMerging(BaseModule):
    """Merge each ``kernel_size`` group of neighbouring tokens into one: unfold, ``norm``
    over the ``kh * kw * in_channels`` concatenation, Linear ``reduction``.

    Args:
        in_channels (int): Input token channels.
        out_channels (int): Output token channels.
        kernel_size (int | tuple[int]): Group size. Defaults to 2.
        stride (int | tuple[int], optional): Group stride; ``kernel_size`` when falsy.
            Defaults to None.
        padding (int | tuple[int] | str): Unfold padding, or an ``AdaptivePadding`` mode.
            Defaults to 'corner'.
        dilation (int | tuple[int]): Unfold dilation. Defaults to 1.
        bias (bool): Bias of ``reduction``. Defaults to False.
        norm_cfg (dict, optional): Norm before ``reduction``. Defaults to dict(type='LN').
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: IntOrPair = 2,
                 stride: Optional[IntOrPair] = None,
                 padding: Union[int, tuple, str] = 'corner',
                 dilation: IntOrPair = 1,
                 bias: bool = False,
                 norm_cfg: OptConfigType = dict(type='LN'),
                 init_cfg: OptConfigType = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        if not stride:
            stride = kernel_size
        kernel_size = to_2tuple(kernel_size)
        stride = to_2tuple(stride)
        dilation = to_2tuple(dilation)

        if isinstance(padding, str):
            self.adap_padding = AdaptivePadding(kernel_size, stride, dilation, padding)
            padding = 0  # the adaptive padding replaces the unfold's
        else:
            self.adap_padding = None
        padding = to_2tuple(padding)

        self.sampler = nn.Unfold(
            kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride)
        sample_dim = kernel_size[0] * kernel_size[1] * in_channels
        self.norm = build_norm_layer(norm_cfg, sample_dim)[1] if norm_cfg is not None else None
        self.reduction = nn.Linear(sample_dim, out_channels, bias=bias)

    def forward(self, x: Tensor, input_size: Sequence[int]) -> Tuple[Tensor, Tuple[int, int]]:
        """Merge tokens.

        Args:
            x (Tensor): [B, H * W, in_channels], row-major tokens.
            input_size (Sequence[int]): (H, W).

        Returns:
            tuple: ``x`` [B, out_h * out_w, out_channels] and ``(out_h, out_w)``; with the
            defaults ``out_h = ceil(H / 2)``, ``out_w = ceil(W / 2)``.
        """
        if not isinstance(input_size, Sequence):
            raise PatchArgumentError(
                f'PatchMerging: input_size must be a Sequence (H, W), got {input_size!r}.')
        batch, length, channels = x.shape
        height, width = input_size
        if length != height * width:
            raise PatchArgumentError(
                f'PatchMerging: input feature has wrong size: {length} tokens for '
                f'input_size {tuple(input_size)}.')

        x = x.view(batch, height, width, channels).permute(0, 3, 1, 2)  # [B, C, H, W]
        if self.adap_padding:
            x = self.adap_padding(x)
            height, width = x.shape[-2:]
        x = self.sampler(x)  # [B, kh * kw * C, out_h * out_w]
        out_size = tuple(
            _conv_out_size(size, self.sampler.kernel_size[i], self.sampler.stride[i],
                           self.sampler.padding[i], self.sampler.dilation[i])
            for i, size in enumerate((height, width)))
        x = x.transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        return self.reduction(x), out_size
