"""Pieces every DETR-family member shares, under mmdetection's names and signatures.

Coordinate transforms (``nchw_to_nlc``, ``nlc_to_nchw``), box-coordinate helpers
(``inverse_sigmoid``, ``coordinate_to_encoding``) and the plain ``MLP`` of the box branches.
mmcv's ``MultiheadAttention`` and ``FFN`` live in ``bricks.py`` and are importable from here
too (their path before the family split).
"""
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..positional_encoding import sine_cosine_encoding
from .bricks import FFN, MultiheadAttention

__all__ = [
    'nchw_to_nlc', 'nlc_to_nchw', 'inverse_sigmoid', 'coordinate_to_encoding', 'MLP', 'FFN',
    'MultiheadAttention'
]


def nchw_to_nlc(x: Tensor) -> Tensor:
    """Flatten a feature map into a sequence: [N, C, H, W] -> [N, H*W, C].

    The result is a view (no copy); position ``h * W + w`` of the sequence is pixel (h, w).
    """
    if x.dim() != 4:
        raise ValueError(f'nchw_to_nlc expects [N, C, H, W], got {tuple(x.shape)}.')
    return x.flatten(2).transpose(1, 2)


def nlc_to_nchw(x: Tensor, hw_shape: Sequence[int]) -> Tensor:
    """Fold a sequence back into a feature map: [N, H*W, C] -> [N, C, H, W].

    Args:
        x (Tensor): [N, L, C] with ``L == H * W``.
        hw_shape (Sequence[int]): (H, W).

    Returns:
        Tensor: [N, C, H, W], contiguous.
    """
    height, width = hw_shape
    if x.dim() != 3 or x.size(1) != height * width:
        raise ValueError(f'nlc_to_nchw: expected [N, {height}*{width}, C], got '
                         f'{tuple(x.shape)}.')
    return x.transpose(1, 2).reshape(x.size(0), x.size(2), height, width).contiguous()


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``log(x / (1 - x))``, the logit, with ``x`` clamped to [0, 1] and both terms to >= eps.

    Members that refine boxes layer by layer (Deformable DETR, DINO, DAB-DETR) predict a
    logit offset: ``new_box = (reg(hidden) + inverse_sigmoid(box)).sigmoid()``.

    Args:
        x (Tensor): Values in [0, 1] (normalized box coordinates), any shape.
        eps (float): Lower bound of ``x`` and ``1 - x``; keeps 0 and 1 finite
            (``inverse_sigmoid(0) = log(eps / 1)``). Defaults to 1e-5.

    Returns:
        Tensor: Same shape as ``x``.
    """
    x = x.clamp(min=0, max=1)
    x1 = x.clamp(min=eps)
    x2 = (1 - x).clamp(min=eps)
    return torch.log(x1 / x2)


def coordinate_to_encoding(coord_tensor: Tensor,
                           num_feats: int = 128,
                           temperature: int = 10000,
                           scale: float = 2 * math.pi) -> Tensor:
    """Sine/cosine encoding of normalized point or box coordinates (query positions).

    Each coordinate is multiplied by ``scale`` and encoded with ``sine_cosine_encoding``
    (the function behind ``SinePositionalEncoding``); the encodings are concatenated in the
    order y, x (points) or y, x, w, h (boxes), as in mmdetection.

    Args:
        coord_tensor (Tensor): [..., 2] as (x, y) or [..., 4] as (cx, cy, w, h), in [0, 1].
        num_feats (int): Channels per coordinate. Defaults to 128.
        temperature (int): Base of the frequencies. Defaults to 10000.
        scale (float): Multiplies the coordinates before encoding. Defaults to 2*pi.

    Returns:
        Tensor: [..., 2 * num_feats] for points, [..., 4 * num_feats] for boxes.
    """
    num_coords = coord_tensor.size(-1)
    if num_coords not in (2, 4):
        raise ValueError('coordinate_to_encoding: the last dimension must be 2 (x, y) or 4 '
                         f'(cx, cy, w, h), got {num_coords}.')
    order = (1, 0) if num_coords == 2 else (1, 0, 2, 3)  # y, x[, w, h]
    return torch.cat([
        sine_cosine_encoding(coord_tensor[..., i] * scale, num_feats, temperature)
        for i in order
    ], dim=-1)


class MLP(BaseModule):
    """``num_layers`` Linear layers with ReLU between them (none after the last).

    mmdetection's box branches of Conditional DETR, DAB-DETR and DINO's query heads. The
    parameters are ``layers.{i}.weight`` / ``layers.{i}.bias``.

    Args:
        input_dim (int): Channels of the input.
        hidden_dim (int): Channels of every hidden layer.
        output_dim (int): Channels of the output.
        num_layers (int): Number of Linear layers (at least 1).
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int,
                 num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f'MLP: num_layers must be at least 1, got {num_layers}.')
        self.num_layers = num_layers
        hidden = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(n, k) for n, k in zip([input_dim] + hidden, hidden + [output_dim]))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layers.

        Args:
            x (Tensor): [..., input_dim].

        Returns:
            Tensor: [..., output_dim].
        """
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x
