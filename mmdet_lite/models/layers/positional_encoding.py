"""Sine/cosine 2D positional encoding of a feature map (DETR)."""
import math

import torch
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptMultiConfig


@MODELS.register_module()
class SinePositionalEncoding(BaseModule):
    """Encode each position's (y, x) with sines and cosines of geometric frequencies.

    Coordinates are counted over valid (unmasked) pixels only: a position's y is the number of
    valid rows above and including it, so an image gets the same encoding whether or not it
    is padded in a batch. With ``normalize`` they are divided by the image's valid height/width
    and multiplied by ``scale``, i.e. they lie in (0, scale].

    For frequency index ``i`` in ``[0, num_feats)``, ``dim_t[i] = temperature ** (2 * (i // 2)
    / num_feats)``; even channels hold ``sin(pos / dim_t)``, odd channels ``cos(pos / dim_t)``.
    The output stacks the y encoding (first ``num_feats`` channels) and then the x encoding.

    Args:
        num_feats (int): Channels per axis; the output has ``2 * num_feats`` channels.
        temperature (int): Base of the frequencies. Defaults to 10000.
        normalize (bool): Normalize the coordinates by the valid size. Defaults to False.
        scale (float): Range of the normalized coordinates. Defaults to 2*pi.
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
            raise TypeError('SinePositionalEncoding: with normalize=True, scale must be a '
                            f'float or int, got {type(scale).__name__}.')
        if num_feats % 2 != 0:
            raise ValueError('SinePositionalEncoding: num_feats must be even (sin/cos pairs), '
                             f'got {num_feats}.')
        self.num_feats = num_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.eps = eps
        self.offset = offset

    def forward(self, mask: Tensor) -> Tensor:
        """Encode every position of a batch of padding masks.

        Args:
            mask (Tensor): [B, H, W], non-zero (True) on padded positions.

        Returns:
            Tensor: Positional encodings, [B, 2 * num_feats, H, W].
        """
        if mask.dim() != 3:
            raise ValueError('SinePositionalEncoding expects a mask of shape [B, H, W], got '
                             f'{tuple(mask.shape)}.')
        not_mask = (mask == 0).to(torch.float32)
        y_embed = not_mask.cumsum(1)  # [B, H, W]: 1-based row index among valid rows
        x_embed = not_mask.cumsum(2)  # [B, H, W]
        if self.normalize:
            # The last row/column holds the valid height/width (padding adds nothing).
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature**(2 * torch.div(dim_t, 2, rounding_mode='floor') /
                                   self.num_feats)  # [num_feats]
        pos_x = x_embed[..., None] / dim_t  # [B, H, W, num_feats]
        pos_y = y_embed[..., None] / dim_t
        pos_x = self._interleave_sin_cos(pos_x)
        pos_y = self._interleave_sin_cos(pos_y)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # [B, 2F, H, W]

    @staticmethod
    def _interleave_sin_cos(pos: Tensor) -> Tensor:
        """[..., F] angles -> [..., F] as sin(a0), cos(a1), sin(a2), cos(a3), ..."""
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_feats={self.num_feats}, '
                f'temperature={self.temperature}, normalize={self.normalize}, '
                f'scale={self.scale}, eps={self.eps}, offset={self.offset})')
