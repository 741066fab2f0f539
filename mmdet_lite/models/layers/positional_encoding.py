"""Sine/cosine positional encodings of the DETR family.

``sine_cosine_encoding`` is the one place the sines and cosines are computed: the feature-map
encoding ``SinePositionalEncoding`` (DETR, Deformable DETR, DINO) uses it for the (y, x) of
every feature position, and ``transformer.utils.coordinate_to_encoding`` (Conditional DETR,
DAB-DETR, DINO) for normalized query coordinates. A member with another encoding (e.g.
DAB-DETR's ``SinePositionalEncodingHW``, one temperature per axis) adds it to this file.
"""
import math
from typing import Optional

import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptMultiConfig


def sine_cosine_encoding(pos: Tensor, num_feats: int, temperature: float = 10000) -> Tensor:
    """Encode scalar positions with sines and cosines of geometric frequencies.

    For channel ``i`` in ``[0, num_feats)``, ``dim_t[i] = temperature ** (2 * (i // 2) /
    num_feats)``; even channels hold ``sin(pos / dim_t[i])``, odd ones ``cos(pos / dim_t[i])``.

    Args:
        pos (Tensor): Positions, any shape [...], floating point.
        num_feats (int): Channels of the encoding (even).
        temperature (float): Base of the frequencies. Defaults to 10000.

    Returns:
        Tensor: [..., num_feats], in ``pos``'s dtype.
    """
    dim_t = torch.arange(num_feats, dtype=pos.dtype, device=pos.device)
    dim_t = temperature**(2 * torch.div(dim_t, 2, rounding_mode='floor') / num_feats)
    angles = pos[..., None] / dim_t  # [..., num_feats]
    # sin(a0), cos(a1), sin(a2), cos(a3), ...
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


class PositionalEncodingArgumentError(TypeError, AssertionError):
    """An argument mmdetection rejects with an assert (hence also an AssertionError)."""


@MODELS.register_module()
class SinePositionalEncoding(BaseModule):
    """Encode each feature position's (y, x) with ``sine_cosine_encoding``.

    Coordinates are counted over valid (unmasked) pixels only: a position's y is the number of
    valid rows above and including it, so an image gets the same encoding whether or not it
    is padded in a batch. With ``normalize`` they are divided by the image's valid height/width
    and multiplied by ``scale``, i.e. they lie in (0, scale].

    The output stacks the y encoding (first ``num_feats`` channels) and then the x encoding.

    Args:
        num_feats (int): Channels per axis, even; the output has ``2 * num_feats`` channels.
        temperature (int): Base of the frequencies. Defaults to 10000.
        normalize (bool): Normalize the coordinates by the valid size. Defaults to False.
        scale (float): Range of the normalized coordinates; must be a float or int when
            ``normalize`` is True and is unused otherwise. Defaults to 2*pi.
        eps (float): Added to the denominator of the normalization. Defaults to 1e-6.
        offset (float): Added to the coordinates before normalizing. Defaults to 0.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 num_feats: int,
                 temperature: int = 10000,
                 normalize: bool = False,
                 scale: float = 2 * math.pi,
                 eps: float = 1e-6,
                 offset: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if normalize and not isinstance(scale, (float, int)):
            raise PositionalEncodingArgumentError(
                'SinePositionalEncoding: with normalize=True, scale must be a float or int, '
                f'got {type(scale).__name__}.')
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask: Optional[Tensor], input: Optional[Tensor] = None) -> Tensor:
        """Encode every position of a batch of padding masks, or of an unpadded batch.

        Args:
            mask (Tensor, optional): [B, H, W], non-zero (True) on padded positions. None
                when no image is padded; then ``input`` gives the shape.
            input (Tensor, optional): Images or features [B, C, H, W], used only when
                ``mask`` is None. Defaults to None.

        Returns:
            Tensor: Positional encodings, [B, 2 * num_feats, H, W], float32.
        """
        if mask is None and input is None:
            raise PositionalEncodingArgumentError(
                'SinePositionalEncoding needs a mask [B, H, W] or, when nothing is padded, '
                'the input [B, C, H, W]; got neither.')
        if self.num_feats % 2 != 0:
            raise ValueError('SinePositionalEncoding: num_feats must be even (sin/cos pairs), '
                             f'got {self.num_feats}.')
        if mask is not None:
            if mask.dim() != 3:
                raise ValueError('SinePositionalEncoding expects a mask of shape [B, H, W], '
                                 f'got {tuple(mask.shape)}.')
            not_mask = (mask == 0).to(torch.float32)
        else:
            batch, _, height, width = input.shape
            not_mask = torch.ones(batch, height, width, device=input.device)
        y_embed = not_mask.cumsum(1)  # [B, H, W]: 1-based row index among valid rows
        x_embed = not_mask.cumsum(2)  # [B, H, W]
        if self.normalize:
            # The last row/column holds the valid height/width (padding adds nothing).
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        pos_y = sine_cosine_encoding(y_embed, self.num_feats, self.temperature)  # [B, H, W, F]
        pos_x = sine_cosine_encoding(x_embed, self.num_feats, self.temperature)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # [B, 2F, H, W]

    def __repr__(self) -> str:
        # mmdetection's repr, which leaves out `offset`.
        return (f'{self.__class__.__name__}(num_feats={self.num_feats}, '
                f'temperature={self.temperature}, normalize={self.normalize}, '
                f'scale={self.scale}, eps={self.eps})')
