"""Conditional DETR's transformer decoder and ``ConditionalAttention`` (shared with DAB-DETR).

What changes from DETR (``detr_layers.py``; the encoder is DETR's, unchanged):

- Attention has separate content and position projections (``qcontent_proj``,
  ``qpos_proj``, ``kcontent_proj``, ``kpos_proj``, ``v_proj``, ``out_proj``) instead of one
  packed ``in_proj``.
- In cross-attention every head's query is the concatenation of a content part and a
  spatial part, ``qpos_sine_proj(ref_sine_embed)``: the sine encoding of the query's 2-d
  reference point; every head's key is likewise ``[content, position]``. Heads are thus
  2 * C / num_heads wide, and the spatial halves only match spatial halves.
- The decoder predicts the reference points from the query embeddings (``ref_point_head``)
  and, after the first layer, scales their sine encodings by ``query_scale(query)``. Only the
  first layer adds the query embedding to the cross-attention query, so the later layers'
  ``cross_attn.qpos_proj`` is removed (``None``) as in mmdetection.
"""
import warnings
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .bricks import FFN
from .utils import MLP, coordinate_to_encoding


class ConditionalAttentionError(ValueError, AssertionError):
    """A bad argument or input of ``ConditionalAttention`` (mmdetection asserts these)."""


class ConditionalAttention(BaseModule):
    """Multi-head attention with separate content/position projections and a residual.

    Self-attention (``cross_attn=False``)::

        q = qcontent_proj(x) + qpos_proj(x_pos)    k = kcontent_proj(x) + kpos_proj(x_pos)
        out = x + proj_drop(out_proj(attention(q, k, v_proj(x))))

    Cross-attention (``cross_attn=True``) from queries ``x`` to a memory ``m``; per head, the
    query is ``[q_h, s_h]`` with ``s = qpos_sine_proj(ref_sine_embed)`` and the key is
    ``[k_h, kpos_proj(m_pos)_h]`` (2 * C / num_heads channels)::

        q = qcontent_proj(x) (+ qpos_proj(x_pos) in the first layer or with keep_query_pos)
        k = kcontent_proj(m) (+ kpos_proj(m_pos), likewise)
        out = x + proj_drop(out_proj(attention([q | s], [k | kpos_proj(m_pos)], v_proj(m))))

    Args:
        embed_dims (int): Channels C of queries, keys and values.
        num_heads (int): Number of attention heads.
        attn_drop (float): Dropout on the attention weights. Defaults to 0.
        proj_drop (float): Dropout on the output before the residual. Defaults to 0.
        cross_attn (bool): Cross-attention (adds ``qpos_sine_proj``). Defaults to False.
        keep_query_pos (bool): Add the projected query positions in every layer, not only
            the first (cross-attention). Defaults to False.
        batch_first (bool): Must be True: inputs are [B, N, C]. Defaults to True.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 cross_attn: bool = False,
                 keep_query_pos: bool = False,
                 batch_first: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if batch_first is not True:
            raise ConditionalAttentionError(
                'ConditionalAttention: batch_first must be True (inputs are [B, N, C]), '
                f'got {batch_first!r}.')
        self.cross_attn = cross_attn
        self.keep_query_pos = keep_query_pos
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)
        self._init_layers()

    def _init_layers(self) -> None:
        """The five input projections (+ ``qpos_sine_proj`` for cross-attention), output."""
        dims = self.embed_dims
        self.qcontent_proj = nn.Linear(dims, dims)
        self.qpos_proj = nn.Linear(dims, dims)
        self.kcontent_proj = nn.Linear(dims, dims)
        self.kpos_proj = nn.Linear(dims, dims)
        self.v_proj = nn.Linear(dims, dims)
        if self.cross_attn:
            self.qpos_sine_proj = nn.Linear(dims, dims)
        self.out_proj = nn.Linear(dims, dims)
        nn.init.constant_(self.out_proj.bias, 0.)

    def forward_attn(self,
                     query: Tensor,
                     key: Tensor,
                     value: Tensor,
                     attn_mask: Optional[Tensor] = None,
                     key_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Scaled dot-product attention over ``num_heads`` heads, then ``out_proj``.

        Query/key channels D may differ from the value's C (2C in cross-attention); each
        head gets D / num_heads of them and the scores are scaled by
        ``(D / num_heads) ** -0.5``.

        Args:
            query (Tensor): [B, Nq, D].
            key (Tensor): [B, Nk, D].
            value (Tensor): [B, Nk, C], C = ``embed_dims``.
            attn_mask (Tensor, optional): [Nq, Nk] or [B * num_heads, Nq, Nk]; bool (True
                = not allowed) or float (added to the scores).
            key_padding_mask (Tensor, optional): [B, Nk], True on padded keys.

        Returns:
            tuple[Tensor, Tensor]: Output [B, Nq, C] and the attention weights averaged over
            the heads [B, Nq, Nk].
        """
        batch_size, num_q, dims = query.shape
        num_k = key.size(1)
        self._check_attn_inputs(query, key, value)
        heads = self.num_heads

        def split_heads(x: Tensor) -> Tensor:  # [B, N, h * d] -> [B * h, N, d]
            return x.reshape(batch_size, x.size(1), heads, -1).transpose(1, 2).flatten(0, 1)

        q = split_heads(query) * float(dims // heads)**-0.5
        scores = torch.bmm(q, split_heads(key).transpose(1, 2))  # [B * h, Nq, Nk]
        if attn_mask is not None:
            attn_mask = self._check_attn_mask(attn_mask, batch_size, num_q, num_k)
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(attn_mask, float('-inf'))
            else:
                scores = scores + attn_mask
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (batch_size, num_k):
                raise ConditionalAttentionError(
                    f'ConditionalAttention: key_padding_mask must be [{batch_size}, {num_k}] '
                    f'(batch, keys), got {tuple(key_padding_mask.shape)}.')
            scores = scores.view(batch_size, heads, num_q, num_k).masked_fill(
                key_padding_mask.to(torch.bool)[:, None, None, :], float('-inf'))
            scores = scores.view(batch_size * heads, num_q, num_k)
        weights = self.attn_drop(F.softmax(scores, dim=-1))
        out = torch.bmm(weights, split_heads(value))  # [B * h, Nq, C / h]
        out = out.view(batch_size, heads, num_q, -1).transpose(1, 2).flatten(2)  # [B, Nq, C]
        mean_weights = weights.view(batch_size, heads, num_q, num_k).mean(1)
        return self.out_proj(out), mean_weights

    def _check_attn_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        """The shape checks mmdetection asserts."""
        problems = []
        if key.size(1) != value.size(1):
            problems.append(f'key and value lengths differ ({key.size(1)} vs {value.size(1)})')
        if not query.size(0) == key.size(0) == value.size(0):
            problems.append('query, key and value batch sizes differ '
                            f'({query.size(0)}, {key.size(0)}, {value.size(0)})')
        if query.size(2) != key.size(2):
            problems.append(f'query and key channels differ ({query.size(2)} vs '
                            f'{key.size(2)})')
        if value.size(2) != self.embed_dims:
            problems.append(f'value channels ({value.size(2)}) != embed_dims '
                            f'({self.embed_dims})')
        if query.size(2) % self.num_heads or self.embed_dims % self.num_heads:
            problems.append(f'query ({query.size(2)}) and value ({self.embed_dims}) channels '
                            f'must be divisible by num_heads ({self.num_heads})')
        if problems:
            raise ConditionalAttentionError('ConditionalAttention: ' + '; '.join(problems) +
                                            '.')

    def _check_attn_mask(self, attn_mask: Tensor, batch_size: int, num_q: int,
                         num_k: int) -> Tensor:
        """A 2-d or 3-d mask as [1 or B * num_heads, Nq, Nk], bool or float."""
        if attn_mask.dtype == torch.uint8:
            warnings.warn('ConditionalAttention: a uint8 attn_mask is deprecated; use bool.')
            attn_mask = attn_mask.to(torch.bool)
        if attn_mask.dtype not in (torch.bool, torch.float16, torch.float32, torch.float64):
            raise ConditionalAttentionError(
                'ConditionalAttention: attn_mask must be bool, uint8 or float, got '
                f'{attn_mask.dtype}.')
        if attn_mask.dim() == 2:
            attn_mask = attn_mask.unsqueeze(0)
            expected = [1, num_q, num_k]
        elif attn_mask.dim() == 3:
            expected = [batch_size * self.num_heads, num_q, num_k]
        else:
            raise RuntimeError(f'ConditionalAttention: attn_mask must be 2-d or 3-d, got '
                               f'{attn_mask.dim()}-d.')
        if list(attn_mask.shape) != expected:
            raise RuntimeError(f'ConditionalAttention: attn_mask must be {expected[1:]} or '
                               f'[B * num_heads, Nq, Nk], got {list(attn_mask.shape)}.')
        return attn_mask

    def forward(self,
                query: Tensor,
                key: Tensor,
                query_pos: Optional[Tensor] = None,
                ref_sine_embed: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                is_first: bool = False) -> Tensor:
        """Attend and add the result to ``query`` (see the class docstring).

        Args:
            query (Tensor): [B, Nq, C].
            key (Tensor): Memory [B, Nk, C] (cross-attention; also the values). Ignored in
                self-attention, which attends among the queries.
            query_pos (Tensor, optional): [B, Nq, C]; required by self-attention and by the
                first cross-attention layer (or ``keep_query_pos``).
            ref_sine_embed (Tensor, optional): [B, Nq, C] sine encodings of the reference
                points; required by cross-attention.
            key_pos (Tensor, optional): [B, Nk, C]; required by cross-attention.
            attn_mask (Tensor, optional): See ``forward_attn``.
            key_padding_mask (Tensor, optional): [B, Nk] bool, True on padded keys.
            is_first (bool): This is the decoder's first layer. Defaults to False.

        Returns:
            Tensor: [B, Nq, C].
        """
        if not self.cross_attn:
            q = self.qcontent_proj(query) + self.qpos_proj(query_pos)
            k = self.kcontent_proj(query) + self.kpos_proj(query_pos)
            out = self.forward_attn(q, k, self.v_proj(query), attn_mask=attn_mask,
                                    key_padding_mask=key_padding_mask)[0]
            return query + self.proj_drop(out)

        batch_size, num_q, dims = query.shape
        num_k = key.size(1)
        heads = self.num_heads
        q = self.qcontent_proj(query)
        k = self.kcontent_proj(key)
        k_pos = self.kpos_proj(key_pos)
        if is_first or self.keep_query_pos:
            q = q + self.qpos_proj(query_pos)
            k = k + k_pos
        q_sine = self.qpos_sine_proj(ref_sine_embed)
        # Each head's channels: its content slice, then its position slice.
        q = torch.cat([q.view(batch_size, num_q, heads, -1),
                       q_sine.view(batch_size, num_q, heads, -1)], dim=3)
        k = torch.cat([k.view(batch_size, num_k, heads, -1),
                       k_pos.view(batch_size, num_k, heads, -1)], dim=3)
        out = self.forward_attn(q.view(batch_size, num_q, 2 * dims),
                                k.view(batch_size, num_k, 2 * dims), self.v_proj(key),
                                attn_mask=attn_mask, key_padding_mask=key_padding_mask)[0]
        return query + self.proj_drop(out)


class ConditionalDetrTransformerDecoderLayer(BaseModule):
    """Decoder layer: conditional self-attn -> norm -> conditional cross-attn -> norm -> FFN
    -> norm (DETR's post-norm order; the attentions are ``ConditionalAttention``).

    Args:
        self_attn_cfg (dict): ``ConditionalAttention`` arguments (``cross_attn=False``).
        cross_attn_cfg (dict): ``ConditionalAttention`` arguments (``cross_attn=True``).
        ffn_cfg (dict): ``FFN`` arguments.
        norm_cfg (dict): Norm after each block. Defaults to ``dict(type='LN')``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 self_attn_cfg: OptConfigType = dict(embed_dims=256, num_heads=8),
                 cross_attn_cfg: OptConfigType = dict(embed_dims=256, num_heads=8,
                                                      cross_attn=True),
                 ffn_cfg: OptConfigType = dict(embed_dims=256, feedforward_channels=1024),
                 norm_cfg: OptConfigType = dict(type='LN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn_cfg = dict(self_attn_cfg)
        self.cross_attn_cfg = dict(cross_attn_cfg)
        self.ffn_cfg = dict(ffn_cfg)
        self.norm_cfg = norm_cfg
        self.self_attn = ConditionalAttention(**self.self_attn_cfg)
        self.cross_attn = ConditionalAttention(**self.cross_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = nn.ModuleList(
            build_norm_layer(norm_cfg, self.embed_dims)[1] for _ in range(3))

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                self_attn_masks: Optional[Tensor] = None,
                cross_attn_masks: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                ref_sine_embed: Optional[Tensor] = None,
                is_first: bool = False) -> Tensor:
        """Decode one step.

        Args:
            query (Tensor): Object queries, [B, Q, C].
            key (Tensor, optional): Encoder memory (also the values), [B, HW, C].
            query_pos (Tensor, optional): Query positional embeddings, [B, Q, C].
            key_pos (Tensor, optional): Memory positional encodings, [B, HW, C].
            self_attn_masks (Tensor, optional): [Q, Q] mask among queries.
            cross_attn_masks (Tensor, optional): [Q, HW] mask from queries to memory.
            key_padding_mask (Tensor, optional): [B, HW] bool, True on padded memory.
            ref_sine_embed (Tensor, optional): Reference-point sine encodings, [B, Q, C].
            is_first (bool): This is the decoder's first layer. Defaults to False.

        Returns:
            Tensor: [B, Q, C].
        """
        query = self.self_attn(query=query, key=query, query_pos=query_pos,
                               key_pos=query_pos, attn_mask=self_attn_masks)
        query = self.norms[0](query)
        query = self.cross_attn(query=query, key=key, query_pos=query_pos, key_pos=key_pos,
                                attn_mask=cross_attn_masks, key_padding_mask=key_padding_mask,
                                ref_sine_embed=ref_sine_embed, is_first=is_first)
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


class ConditionalDetrTransformerDecoder(BaseModule):
    """Conditional DETR's decoder: reference points from the query embeddings, their sine
    encodings scaled per layer by ``query_scale`` and fed to the cross-attention.

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): ``ConditionalDetrTransformerDecoderLayer`` arguments.
        post_norm_cfg (dict, optional): Norm applied to the layer outputs.
            Defaults to ``dict(type='LN')``.
        return_intermediate (bool): Return every layer's output (True) or only the last.
            Defaults to True.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: ConfigType,
                 post_norm_cfg: OptConfigType = dict(type='LN'),
                 return_intermediate: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.post_norm_cfg = post_norm_cfg
        self.return_intermediate = return_intermediate
        self.layers = nn.ModuleList(
            ConditionalDetrTransformerDecoderLayer(**layer_cfg) for _ in range(num_layers))
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = build_norm_layer(post_norm_cfg, self.embed_dims)[1]
        self.query_scale = MLP(self.embed_dims, self.embed_dims, self.embed_dims, 2)
        self.ref_point_head = MLP(self.embed_dims, self.embed_dims, 2, 2)
        # Only the first layer adds the query embedding to the cross-attention query.
        for layer in self.layers[1:]:
            layer.cross_attn.qpos_proj = None

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Decode the queries against the memory.

        Args:
            query (Tensor): [B, Q, C] (zeros).
            key (Tensor, optional): Memory, [B, HW, C].
            query_pos (Tensor, optional): Learned query embeddings, [B, Q, C].
            key_pos (Tensor, optional): Memory positional encodings, [B, HW, C].
            key_padding_mask (Tensor, optional): [B, HW] bool, True on padded memory.

        Returns:
            tuple[Tensor, Tensor]: Normalized outputs [num_layers, B, Q, C] (with
            ``return_intermediate``, else [1, B, Q, C]) and the reference points [B, Q, 2]
            as sigmoid (x, y).
        """
        reference = self.ref_point_head(query_pos).sigmoid()  # [B, Q, 2]
        # mmdetection encodes with 128 channels per coordinate, i.e. embed_dims // 2 for its
        # 256-channel models; embed_dims // 2 keeps narrower models working too.
        ref_sine = coordinate_to_encoding(reference[..., :2], num_feats=self.embed_dims // 2)
        intermediate = []
        for layer_id, layer in enumerate(self.layers):
            scale: Union[Tensor, float] = 1. if layer_id == 0 else self.query_scale(query)
            query = layer(query, key=key, query_pos=query_pos, key_pos=key_pos,
                          key_padding_mask=key_padding_mask, ref_sine_embed=ref_sine * scale,
                          is_first=layer_id == 0)
            if self.return_intermediate:
                intermediate.append(self.post_norm(query))
        if self.return_intermediate:
            return torch.stack(intermediate), reference
        return self.post_norm(query).unsqueeze(0), reference
