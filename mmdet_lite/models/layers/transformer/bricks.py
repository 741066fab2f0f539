"""mmcv's transformer bricks, re-implemented: attention with a residual, and the FFN.

mmdet's DETR layers are built from ``mmcv.cnn.bricks.transformer.MultiheadAttention`` and
``FFN``. These two small equivalents keep the same constructor arguments and the same
state_dict keys (``attn.in_proj_weight``, ``layers.0.0.weight`` ...), so mmdetection
checkpoints load, without importing mmcv's transformer module (which warns about its missing
compiled ops on import). Every member's layers file builds on them; ``utils`` re-exports
both under their old path ``layers.transformer.utils``.
"""
from typing import Optional

import torch.nn as nn
from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig


def _build_dropout(cfg: OptConfigType) -> nn.Module:
    """A dropout-like layer from an mmcv-style config (``Dropout``/``DropPath``), or Identity."""
    if not cfg:
        return nn.Identity()
    return MODELS.build(cfg)  # found in mmcv's registry, the parent of ours


class MultiheadAttention(BaseModule):
    """``nn.MultiheadAttention`` plus positional encodings and a residual connection.

    Computes ``identity + dropout(attn(query + query_pos, key + key_pos, value))``. The
    wrapped module is ``self.attn``, so the parameters are ``attn.in_proj_weight``,
    ``attn.in_proj_bias`` and ``attn.out_proj.{weight,bias}`` as in mmcv.

    Args:
        embed_dims (int): Channels of queries, keys and values.
        num_heads (int): Number of attention heads.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to 0.
        dropout_layer (dict, optional): Dropout applied to the residual branch, e.g.
            ``dict(type='Dropout', drop_prob=0.1)``. Defaults to a no-op dropout.
        batch_first (bool): Inputs are [B, N, C] (True) or [N, B, C] (False).
            Defaults to False.
        dropout (float, optional): mmcv's shortcut (used by mmdet's DETR configs): sets both
            ``attn_drop`` and the residual dropout probability.
        init_cfg (dict, optional): Initialization config.
        **kwargs: Passed to ``nn.MultiheadAttention`` (e.g. ``bias``, ``kdim``).
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 dropout_layer: OptConfigType = dict(type='Dropout', drop_prob=0.),
                 batch_first: bool = False,
                 dropout: Optional[float] = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'MultiheadAttention: embed_dims ({embed_dims}) must be divisible '
                             f'by num_heads ({num_heads}).')
        if dropout is not None:
            attn_drop = dropout
            dropout_layer = dict(type='Dropout', drop_prob=dropout)
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.batch_first = batch_first
        self.attn = nn.MultiheadAttention(embed_dims, num_heads, dropout=attn_drop,
                                          batch_first=batch_first, **kwargs)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dropout_layer = _build_dropout(dropout_layer)

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tensor:
        """Attend from ``query`` to ``key``/``value`` and add the result to ``identity``.

        Shapes below are for ``batch_first=True`` (swap the first two dims otherwise).

        Args:
            query (Tensor): [B, Nq, C].
            key (Tensor, optional): [B, Nk, C]; ``query`` when None (self-attention).
            value (Tensor, optional): [B, Nk, C]; ``key`` when None.
            identity (Tensor, optional): Residual added to the output; ``query`` when None.
            query_pos (Tensor, optional): Positional encoding added to ``query``, [B, Nq, C].
            key_pos (Tensor, optional): Positional encoding added to ``key``, [B, Nk, C]. When
                None and ``query_pos`` has the shape of ``key``, ``query_pos`` is used.
            attn_mask (Tensor, optional): [Nq, Nk] (or [B * num_heads, Nq, Nk]); True or
                -inf where attention is not allowed.
            key_padding_mask (Tensor, optional): [B, Nk] bool, True on padded keys.

        Returns:
            Tensor: [B, Nq, C].
        """
        if key is None:
            key = query
        if value is None:
            value = key
        if identity is None:
            identity = query
        if key_pos is None and query_pos is not None and query_pos.shape == key.shape:
            key_pos = query_pos
        if query_pos is not None:
            query = query + query_pos
        if key_pos is not None:
            key = key + key_pos
        out = self.attn(query, key, value, attn_mask=attn_mask,
                        key_padding_mask=key_padding_mask, need_weights=False)[0]
        return identity + self.dropout_layer(self.proj_drop(out))


class FFN(BaseModule):
    """Position-wise feed-forward network: (Linear, act, Dropout) x (num_fcs-1), Linear.

    With ``add_identity`` the input is added back (the transformer's residual). Parameter
    names follow mmcv: ``layers.0.0.*`` is the first Linear (inside its Sequential with the
    activation), ``layers.{num_fcs-1}.*`` the last one.

    Args:
        embed_dims (int): Input and output channels. Defaults to 256.
        feedforward_channels (int): Hidden channels. Defaults to 1024.
        num_fcs (int): Number of Linear layers, at least 2. Defaults to 2.
        act_cfg (dict): Activation after every hidden Linear.
            Defaults to ``dict(type='ReLU', inplace=True)``.
        ffn_drop (float): Dropout after each hidden activation and after the last Linear.
            Defaults to 0.
        dropout_layer (dict, optional): Dropout on the residual branch. Defaults to None.
        add_identity (bool): Add the input to the output. Defaults to True.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 feedforward_channels: int = 1024,
                 num_fcs: int = 2,
                 act_cfg: OptConfigType = dict(type='ReLU', inplace=True),
                 ffn_drop: float = 0.,
                 dropout_layer: OptConfigType = None,
                 add_identity: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_fcs < 2:
            raise ValueError(f'FFN: num_fcs must be at least 2, got {num_fcs}.')
        self.embed_dims = embed_dims
        self.feedforward_channels = feedforward_channels
        self.num_fcs = num_fcs
        self.add_identity = add_identity
        layers = []
        in_channels = embed_dims
        for _ in range(num_fcs - 1):
            layers.append(
                nn.Sequential(
                    nn.Linear(in_channels, feedforward_channels),
                    build_activation_layer(act_cfg), nn.Dropout(ffn_drop)))
            in_channels = feedforward_channels
        layers.append(nn.Linear(feedforward_channels, embed_dims))
        layers.append(nn.Dropout(ffn_drop))
        self.layers = nn.Sequential(*layers)
        self.dropout_layer = _build_dropout(dropout_layer)

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        """Apply the FFN.

        Args:
            x (Tensor): [..., embed_dims].
            identity (Tensor, optional): Residual to add; ``x`` when None.

        Returns:
            Tensor: [..., embed_dims].
        """
        out = self.dropout_layer(self.layers(x))
        if not self.add_identity:
            return out
        return (x if identity is None else identity) + out
