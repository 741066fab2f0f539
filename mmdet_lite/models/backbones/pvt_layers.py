"""Building blocks of the Pyramid Vision Transformer (PVT v1 and v2).

``SpatialReductionAttention`` is multi-head self-attention whose keys and values come from a
coarser copy of the token map: a ``sr_ratio`` x ``sr_ratio`` stride-``sr_ratio`` conv followed by
a LayerNorm shrinks ``H * W`` keys to ``(H / sr) * (W / sr)``, which keeps attention affordable
on the stride-4 map. ``MixFFN`` is the feed-forward network written with 1x1 convs (plus, in
v2, a 3x3 depthwise conv between them that leaks position information into the tokens).
``PVTEncoderLayer`` is pre-norm attention + FFN with residuals; ``AbsolutePositionEmbedding``
is v1's learned position table, resized bilinearly to the input's token grid.

Names, arguments, defaults and state_dict keys are mmdetection 3.3's
(``mmdet.models.backbones.pvt``), so its checkpoints load unchanged: ``attn.attn.in_proj_*``,
``attn.attn.out_proj.*``, ``attn.sr.*``, ``attn.norm.*``, ``ffn.layers.{0,1,4}`` (v2) or
``ffn.layers.{0,3}`` (v1), ``pos_embed``.
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor, nn

from mmdet_lite.models.layers.transformer.bricks import MultiheadAttention, _build_dropout
from mmdet_lite.models.layers.transformer.utils import nchw_to_nlc, nlc_to_nchw
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

__all__ = [
    'MixFFN', 'SpatialReductionAttention', 'PVTEncoderLayer', 'AbsolutePositionEmbedding',
    'PVTArgumentError'
]

HWShape = Sequence[int]


class PVTArgumentError(ValueError, AssertionError):
    """A PVT argument that mmdetection rejects with an assert (hence also an AssertionError)."""


def _pair_shape(shape: Union[int, Sequence[int], np.ndarray], what: str) -> Tuple[int, int]:
    """An int or a 1- or 2-long sequence as an (H, W) pair of ints."""
    if isinstance(shape, (int, np.integer)):
        return int(shape), int(shape)
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        raise PVTArgumentError(f'The size of {what} should have length 1 or 2, but got '
                               f'{len(shape)}: {shape}.')
    return shape


class MixFFN(BaseModule):
    """PVT's feed-forward network on a token map: 1x1 conv, [3x3 depthwise conv], act,
    dropout, 1x1 conv, dropout, then a residual.

    A 1x1 conv on the map is a Linear on the tokens; the depthwise conv (``use_conv``, PVTv2)
    mixes each hidden channel over a 3x3 neighbourhood, which lets v2 drop the absolute
    position embedding. The layers sit in ``self.layers`` as mmdetection has them: indices
    0 (fc1), 1 (depthwise, only with ``use_conv``), then activation, dropout, fc2 (index 4 with
    ``use_conv``, else 3) and the same dropout again.

    Args:
        embed_dims (int): Token channels C.
        feedforward_channels (int): Hidden channels.
        act_cfg (dict): Activation config. Defaults to ``dict(type='GELU')``.
        ffn_drop (float): Dropout after the activation and after fc2. Defaults to 0.
        dropout_layer (dict, optional): Dropout on the residual branch (e.g. DropPath).
            Defaults to None (none).
        use_conv (bool): Add the 3x3 depthwise conv after fc1. Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 feedforward_channels: int,
                 act_cfg: ConfigType = dict(type='GELU'),
                 ffn_drop: float = 0.,
                 dropout_layer: OptConfigType = None,
                 use_conv: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        self.act_cfg = act_cfg
        fc1 = nn.Conv2d(embed_dims, feedforward_channels, kernel_size=1, bias=True)
        fc2 = nn.Conv2d(feedforward_channels, embed_dims, kernel_size=1, bias=True)
        # One Dropout module serves both places (it has no state), as in mmdetection.
        drop = nn.Dropout(ffn_drop)
        layers = [fc1, build_activation_layer(act_cfg), drop, fc2, drop]
        if use_conv:
            layers.insert(1, nn.Conv2d(feedforward_channels, feedforward_channels,
                                       kernel_size=3, padding=1, groups=feedforward_channels,
                                       bias=True))
        self.layers = nn.Sequential(*layers)
        self.dropout_layer = _build_dropout(dropout_layer)

    def forward(self, x: Tensor, hw_shape: HWShape, identity: Optional[Tensor] = None) -> Tensor:
        """Apply the FFN and add the residual.

        Args:
            x (Tensor): Tokens [B, H * W, C] (row-major).
            hw_shape (Sequence[int]): (H, W).
            identity (Tensor, optional): Residual [B, H * W, C]; ``x`` when None.

        Returns:
            Tensor: [B, H * W, C].
        """
        out = self.layers(nlc_to_nchw(x, hw_shape))  # [B, C, H, W]
        out = nchw_to_nlc(out)  # [B, H * W, C]
        if identity is None:
            identity = x
        return identity + self.dropout_layer(out)


class SpatialReductionAttention(MultiheadAttention):
    """Self-attention of PVT: every token attends to a spatially reduced copy of the map.

    With ``sr_ratio > 1`` keys and values are computed from ``norm(sr(x))``, where ``sr`` is a
    conv with kernel = stride = ``sr_ratio``: [B, C, H, W] -> [B, C, H / sr, W / sr]. Queries
    keep full resolution, so the output has one token per input token. The attention itself
    is ``nn.MultiheadAttention`` (``self.attn``, from :class:`MultiheadAttention`), so the
    official ``q`` / ``kv`` Linears appear as one ``in_proj_weight`` (see ``pvt_convert``).

    Args:
        embed_dims (int): Token channels C.
        num_heads (int): Attention heads.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to 0.
        dropout_layer (dict, optional): Dropout on the residual branch. Defaults to None.
        batch_first (bool): Tokens are [B, N, C]. Defaults to True.
        qkv_bias (bool): Bias of the query/key/value projections. Defaults to True.
        norm_cfg (dict): Norm after the reduction conv. Defaults to ``dict(type='LN')``.
        sr_ratio (int): Spatial reduction ratio; 1 means plain self-attention (no ``sr`` /
            ``norm``). Defaults to 1.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 dropout_layer: OptConfigType = None,
                 batch_first: bool = True,
                 qkv_bias: bool = True,
                 norm_cfg: ConfigType = dict(type='LN'),
                 sr_ratio: int = 1,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            embed_dims,
            num_heads,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            dropout_layer=dropout_layer,
            batch_first=batch_first,
            init_cfg=init_cfg,
            bias=qkv_bias)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(embed_dims, embed_dims, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = build_norm_layer(norm_cfg, embed_dims)[1]

    def forward(self, x: Tensor, hw_shape: HWShape,  # type: ignore[override]
                identity: Optional[Tensor] = None) -> Tensor:
        """Attend from every token to the reduced map and add the residual.

        Args:
            x (Tensor): Tokens [B, H * W, C].
            hw_shape (Sequence[int]): (H, W) of the token map.
            identity (Tensor, optional): Residual [B, H * W, C]; ``x`` when None.

        Returns:
            Tensor: [B, H * W, C].
        """
        x_kv = x
        if self.sr_ratio > 1:
            x_kv = self.sr(nlc_to_nchw(x, hw_shape))  # [B, C, H / sr, W / sr]
            x_kv = self.norm(nchw_to_nlc(x_kv))  # [B, H * W / sr**2, C]
        if identity is None:
            identity = x
        out = self.attn(x, x_kv, x_kv, need_weights=False)[0]  # [B, H * W, C]
        return identity + self.dropout_layer(self.proj_drop(out))


class PVTEncoderLayer(BaseModule):
    """One PVT transformer layer: ``x + attn(norm1(x))``, then ``x + ffn(norm2(x))``.

    Args:
        embed_dims (int): Token channels C.
        num_heads (int): Attention heads.
        feedforward_channels (int): Hidden channels of the FFN.
        drop_rate (float): Dropout after the attention projection and in the FFN.
            Defaults to 0.
        attn_drop_rate (float): Dropout on the attention weights. Defaults to 0.
        drop_path_rate (float): Stochastic depth of both residual branches. Defaults to 0.
        qkv_bias (bool): Bias of the query/key/value projections. Defaults to True.
        act_cfg (dict): FFN activation. Defaults to ``dict(type='GELU')``.
        norm_cfg (dict): Norm layers. Defaults to ``dict(type='LN')``.
        sr_ratio (int): Spatial reduction ratio of the attention. Defaults to 1.
        use_conv_ffn (bool): Depthwise 3x3 conv in the FFN (PVTv2). Defaults to False.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 qkv_bias: bool = True,
                 act_cfg: ConfigType = dict(type='GELU'),
                 norm_cfg: ConfigType = dict(type='LN'),
                 sr_ratio: int = 1,
                 use_conv_ffn: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        drop_path = dict(type='DropPath', drop_prob=drop_path_rate)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = SpatialReductionAttention(
            embed_dims=embed_dims,
            num_heads=num_heads,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            dropout_layer=drop_path,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            sr_ratio=sr_ratio)
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = MixFFN(
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            ffn_drop=drop_rate,
            dropout_layer=drop_path,
            use_conv=use_conv_ffn,
            act_cfg=act_cfg)

    def forward(self, x: Tensor, hw_shape: HWShape) -> Tensor:
        """[B, H * W, C] tokens of an (H, W) map -> [B, H * W, C]."""
        x = self.attn(self.norm1(x), hw_shape, identity=x)
        return self.ffn(self.norm2(x), hw_shape, identity=x)


class AbsolutePositionEmbedding(BaseModule):
    """PVTv1's learned position embedding, added to a stage's tokens (then dropout).

    The table ``pos_embed`` [1, pos_h * pos_w, C] is learned for the pretraining token grid;
    for another input size it is resized bilinearly to the current grid on every forward.

    Args:
        pos_shape (int | Sequence[int]): (pos_h, pos_w) of the table.
        pos_dim (int): Channels C.
        drop_rate (float): Dropout after adding the embedding. Defaults to 0.
        init_cfg (dict, optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 pos_shape: Union[int, Sequence[int]],
                 pos_dim: int,
                 drop_rate: float = 0.,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.pos_shape = _pair_shape(pos_shape, 'pos_shape')
        self.pos_dim = pos_dim
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.pos_shape[0] * self.pos_shape[1], pos_dim))
        self.drop = nn.Dropout(p=drop_rate)

    def init_weights(self) -> None:
        """Truncated normal, std 0.02."""
        trunc_normal_(self.pos_embed, std=0.02)

    def resize_pos_embed(self, pos_embed: Tensor, input_shape: HWShape,
                         mode: str = 'bilinear') -> Tensor:
        """Interpolate a table to another token grid.

        Args:
            pos_embed (Tensor): [1, L, C]; its last ``pos_h * pos_w`` entries are the table
                (a leading class-token entry, if any, is dropped).
            input_shape (Sequence[int]): Target (H, W).
            mode (str): ``F.interpolate`` mode. Defaults to 'bilinear'.

        Returns:
            Tensor: [1, H * W, C].
        """
        if pos_embed.ndim != 3:
            raise PVTArgumentError(
                f'shape of pos_embed must be [B, L, C], got {tuple(pos_embed.shape)}.')
        pos_h, pos_w = self.pos_shape
        table = pos_embed[:, -pos_h * pos_w:]
        table = table.reshape(1, pos_h, pos_w, self.pos_dim).permute(0, 3, 1, 2)  # [1, C, h, w]
        table = F.interpolate(table, size=tuple(input_shape), mode=mode)  # [1, C, H, W]
        return table.flatten(2).transpose(1, 2).contiguous()  # [1, H * W, C]

    def forward(self, x: Tensor, hw_shape: HWShape, mode: str = 'bilinear') -> Tensor:
        """Add the (resized) embedding to tokens [B, H * W, C] and apply dropout."""
        return self.drop(x + self.resize_pos_embed(self.pos_embed, hw_shape, mode))
