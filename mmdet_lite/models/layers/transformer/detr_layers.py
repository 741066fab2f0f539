"""DETR's transformer: post-norm encoder and decoder layers, and their stacks.

Every layer is batch-first: sequences are [B, N, C]. Each attention or FFN block adds its
input back (residual) and is followed by a LayerNorm (post-norm, as in the DETR paper).
"""
import copy
from typing import Optional

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .bricks import FFN, MultiheadAttention

_DEFAULT_ATTN = dict(embed_dims=256, num_heads=8, dropout=0.0, batch_first=True)
_DEFAULT_FFN = dict(embed_dims=256, feedforward_channels=1024, num_fcs=2, ffn_drop=0.,
                    act_cfg=dict(type='ReLU', inplace=True))


def _batch_first_attn_cfg(cfg: OptConfigType, name: str) -> dict:
    """A copy of an attention config with ``batch_first=True`` (the only layout supported)."""
    cfg = dict(copy.deepcopy(cfg if cfg is not None else _DEFAULT_ATTN))
    if not cfg.setdefault('batch_first', True):
        raise ValueError(f'{name}: DETR layers are batch-first ([B, N, C]); '
                         'batch_first=False is not supported.')
    return cfg


class DetrTransformerEncoderLayer(BaseModule):
    """Encoder layer: self-attention -> norm -> FFN -> norm.

    Args:
        self_attn_cfg (dict, optional): ``MultiheadAttention`` arguments.
        ffn_cfg (dict, optional): ``FFN`` arguments.
        norm_cfg (dict, optional): Norm after each block. Defaults to ``dict(type='LN')``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 self_attn_cfg: OptConfigType = _DEFAULT_ATTN,
                 ffn_cfg: OptConfigType = _DEFAULT_FFN,
                 norm_cfg: OptConfigType = dict(type='LN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn_cfg = _batch_first_attn_cfg(self_attn_cfg, 'self_attn_cfg')
        self.ffn_cfg = dict(copy.deepcopy(ffn_cfg if ffn_cfg is not None else _DEFAULT_FFN))
        self.norm_cfg = norm_cfg
        self.self_attn = MultiheadAttention(**self.self_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = nn.ModuleList(
            build_norm_layer(norm_cfg, self.embed_dims)[1] for _ in range(2))

    def forward(self, query: Tensor, query_pos: Tensor, key_padding_mask: Tensor,
                **kwargs) -> Tensor:
        """Encode one step.

        Args:
            query (Tensor): Flattened image features, [B, HW, C].
            query_pos (Tensor): Their positional encodings, [B, HW, C].
            key_padding_mask (Tensor): [B, HW] bool, True on padded positions.

        Returns:
            Tensor: [B, HW, C].
        """
        query = self.self_attn(query=query, key=query, value=query, query_pos=query_pos,
                               key_pos=query_pos, key_padding_mask=key_padding_mask,
                               **kwargs)
        query = self.norms[0](query)
        query = self.ffn(query)
        return self.norms[1](query)


class DetrTransformerDecoderLayer(BaseModule):
    """Decoder layer: self-attention -> norm -> cross-attention -> norm -> FFN -> norm.

    Args:
        self_attn_cfg (dict, optional): ``MultiheadAttention`` arguments (among queries).
        cross_attn_cfg (dict, optional): ``MultiheadAttention`` arguments (queries to memory).
        ffn_cfg (dict, optional): ``FFN`` arguments.
        norm_cfg (dict, optional): Norm after each block. Defaults to ``dict(type='LN')``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 self_attn_cfg: OptConfigType = _DEFAULT_ATTN,
                 cross_attn_cfg: OptConfigType = _DEFAULT_ATTN,
                 ffn_cfg: OptConfigType = _DEFAULT_FFN,
                 norm_cfg: OptConfigType = dict(type='LN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.self_attn_cfg = _batch_first_attn_cfg(self_attn_cfg, 'self_attn_cfg')
        self.cross_attn_cfg = _batch_first_attn_cfg(cross_attn_cfg, 'cross_attn_cfg')
        self.ffn_cfg = dict(copy.deepcopy(ffn_cfg if ffn_cfg is not None else _DEFAULT_FFN))
        self.norm_cfg = norm_cfg
        self.self_attn = MultiheadAttention(**self.self_attn_cfg)
        self.cross_attn = MultiheadAttention(**self.cross_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = nn.ModuleList(
            build_norm_layer(norm_cfg, self.embed_dims)[1] for _ in range(3))

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_pos: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                cross_attn_mask: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Decode one step.

        Args:
            query (Tensor): Object queries, [B, Q, C].
            key (Tensor, optional): Encoder memory, [B, HW, C].
            value (Tensor, optional): Usually the memory too, [B, HW, C].
            query_pos (Tensor, optional): Learned query embeddings, [B, Q, C].
            key_pos (Tensor, optional): Positional encodings of the memory, [B, HW, C].
            self_attn_mask (Tensor, optional): [Q, Q] mask among queries.
            cross_attn_mask (Tensor, optional): [Q, HW] mask from queries to memory.
            key_padding_mask (Tensor, optional): [B, HW] bool, True on padded memory.

        Returns:
            Tensor: [B, Q, C].
        """
        query = self.self_attn(query=query, key=query, value=query, query_pos=query_pos,
                               key_pos=query_pos, attn_mask=self_attn_mask, **kwargs)
        query = self.norms[0](query)
        query = self.cross_attn(query=query, key=key, value=value, query_pos=query_pos,
                                key_pos=key_pos, attn_mask=cross_attn_mask,
                                key_padding_mask=key_padding_mask, **kwargs)
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


class DetrTransformerEncoder(BaseModule):
    """A stack of ``num_layers`` identical encoder layers.

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): ``DetrTransformerEncoderLayer`` arguments, shared by all layers.
        num_cp (int): Number of leading layers run with activation checkpointing while
            training (saves memory, costs a second forward). -1 or 0 disables it.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: ConfigType,
                 num_cp: int = -1,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_cp > num_layers:
            raise ValueError(f'DetrTransformerEncoder: num_cp ({num_cp}) must not exceed '
                             f'num_layers ({num_layers}).')
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.num_cp = num_cp
        self.layers = nn.ModuleList(
            DetrTransformerEncoderLayer(**layer_cfg) for _ in range(num_layers))
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query: Tensor, query_pos: Tensor, key_padding_mask: Tensor,
                **kwargs) -> Tensor:
        """Encode the flattened feature map.

        Args:
            query (Tensor): [B, HW, C].
            query_pos (Tensor): [B, HW, C].
            key_padding_mask (Tensor): [B, HW] bool, True on padded positions.

        Returns:
            Tensor: The memory, [B, HW, C].
        """
        for i, layer in enumerate(self.layers):
            if self.training and i < self.num_cp:
                query = checkpoint(layer, query, query_pos, key_padding_mask,
                                   use_reentrant=False, **kwargs)
            else:
                query = layer(query, query_pos, key_padding_mask, **kwargs)
        return query


class DetrTransformerDecoder(BaseModule):
    """A stack of decoder layers whose (normalized) outputs are all returned.

    DETR supervises every decoder layer (auxiliary losses), so each layer's output goes
    through the shared ``post_norm`` and the results are stacked.

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): ``DetrTransformerDecoderLayer`` arguments, shared by all layers.
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
            DetrTransformerDecoderLayer(**layer_cfg) for _ in range(num_layers))
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = build_norm_layer(post_norm_cfg, self.embed_dims)[1]

    def forward(self, query: Tensor, key: Tensor, value: Tensor, query_pos: Tensor,
                key_pos: Tensor, key_padding_mask: Tensor, **kwargs) -> Tensor:
        """Decode the object queries against the encoder memory.

        Args:
            query (Tensor): [B, Q, C] (zeros for DETR).
            key (Tensor): Memory, [B, HW, C].
            value (Tensor): Memory, [B, HW, C].
            query_pos (Tensor): Learned query embeddings, [B, Q, C].
            key_pos (Tensor): Positional encodings of the memory, [B, HW, C].
            key_padding_mask (Tensor): [B, HW] bool, True on padded memory.

        Returns:
            Tensor: [num_layers, B, Q, C] with ``return_intermediate``, else [1, B, Q, C].
        """
        intermediate = []
        for layer in self.layers:
            query = layer(query, key=key, value=value, query_pos=query_pos, key_pos=key_pos,
                          key_padding_mask=key_padding_mask, **kwargs)
            if self.return_intermediate:
                intermediate.append(self.post_norm(query))
        if self.return_intermediate:
            return torch.stack(intermediate)  # [num_layers, B, Q, C]
        return self.post_norm(query).unsqueeze(0)  # [1, B, Q, C]
