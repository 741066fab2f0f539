"""DAB-DETR's transformer: the encoder with scaled positions and the anchor-box decoder.

What changes from DETR (``detr_layers.py``) and Conditional DETR
(``conditional_detr_layers.py``):

- Encoder: DETR's layers, but each layer's positional encoding is multiplied element-wise
  by ``query_scale(query)`` (an MLP of the layer's input).
- Decoder queries are anchor boxes: ``query_pos`` holds unsigmoided (cx, cy, w, h)
  (``query_dim=4``; or points, ``query_dim=2``). In every layer the anchor's sine encoding
  gives the query position (``ref_point_head``) and, scaled by ``query_scale`` and
  modulated by the predicted/anchor width and height ratio (``ref_anchor_head``), the
  spatial query of Conditional DETR's cross-attention (``ConditionalAttention``).
- After every layer the head's box branch (``reg_branches``, passed in by the detector)
  refines the anchors: ``anchor = sigmoid(reg(out) + inverse_sigmoid(anchor))``, detached
  before the next layer. The anchors fed to each layer are returned as the references.
"""
from typing import List, Optional, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .conditional_detr_layers import ConditionalDetrTransformerDecoderLayer
from .detr_layers import DetrTransformerEncoder
from .utils import MLP, coordinate_to_encoding, inverse_sigmoid

_QUERY_SCALE_TYPES = ('cond_elewise', 'cond_scalar', 'fix_elewise')


class DABDetrConfigError(ValueError, AssertionError):
    """A DAB-DETR decoder argument mmdetection rejects with an assert."""


class DABDetrTransformerDecoderLayer(ConditionalDetrTransformerDecoderLayer):
    """Conditional DETR's decoder layer; its arguments (``keep_query_pos`` of the
    cross-attention decides whether later layers keep ``qpos_proj``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.keep_query_pos = self.cross_attn.keep_query_pos

    def forward(self,
                query: Tensor,
                key: Tensor,
                query_pos: Tensor,
                key_pos: Tensor,
                ref_sine_embed: Optional[Tensor] = None,
                self_attn_masks: Optional[Tensor] = None,
                cross_attn_masks: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                is_first: bool = False,
                **kwargs) -> Tensor:
        """Decode one step (mmdetection's argument order for DAB-DETR).

        Args:
            query (Tensor): [B, Q, C].
            key (Tensor): Memory, [B, HW, C].
            query_pos (Tensor): [B, Q, C], from the anchors' sine encodings.
            key_pos (Tensor): [B, HW, C].
            ref_sine_embed (Tensor, optional): Spatial query of the cross-attention,
                [B, Q, C].
            self_attn_masks (Tensor, optional): [Q, Q].
            cross_attn_masks (Tensor, optional): [Q, HW].
            key_padding_mask (Tensor, optional): [B, HW] bool, True on padded memory.
            is_first (bool): This is the decoder's first layer. Defaults to False.
            **kwargs: Passed to both attentions.

        Returns:
            Tensor: [B, Q, C].
        """
        query = self.self_attn(query=query, key=query, query_pos=query_pos,
                               key_pos=query_pos, attn_mask=self_attn_masks, **kwargs)
        query = self.norms[0](query)
        query = self.cross_attn(query=query, key=key, query_pos=query_pos, key_pos=key_pos,
                                ref_sine_embed=ref_sine_embed, attn_mask=cross_attn_masks,
                                key_padding_mask=key_padding_mask, is_first=is_first,
                                **kwargs)
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


class DABDetrTransformerDecoder(BaseModule):
    """DAB-DETR's decoder: anchor boxes as queries, refined layer by layer.

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): ``DABDetrTransformerDecoderLayer`` arguments.
        post_norm_cfg (dict, optional): Norm applied to the layer outputs.
            Defaults to ``dict(type='LN')``.
        return_intermediate (bool): Return every layer's output (True) or only the last.
            Defaults to True.
        init_cfg (dict, optional): Initialization config.
        query_dim (int): 4 for anchor boxes (cx, cy, w, h), 2 for points. Defaults to 4.
        query_scale_type (str): How the spatial query is scaled: ``'cond_elewise'``
            (per channel, from the content), ``'cond_scalar'`` (one factor, from the
            content) or ``'fix_elewise'`` (a learned vector per layer).
            Defaults to ``'cond_elewise'``.
        with_modulated_hw_attn (bool): Scale the x/y parts of the spatial query by the
            ratio of predicted to anchor width/height (needs ``query_dim=4``).
            Defaults to True.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: ConfigType,
                 post_norm_cfg: OptConfigType = dict(type='LN'),
                 return_intermediate: bool = True,
                 init_cfg: OptMultiConfig = None,
                 *,
                 query_dim: int = 4,
                 query_scale_type: str = 'cond_elewise',
                 with_modulated_hw_attn: bool = True) -> None:
        super().__init__(init_cfg=init_cfg)
        if query_dim not in (2, 4):
            raise DABDetrConfigError('DABDetrTransformerDecoder: query_dim must be 4 (anchor '
                                     f'boxes) or 2 (points), got {query_dim!r}.')
        if query_scale_type not in _QUERY_SCALE_TYPES:
            raise DABDetrConfigError('DABDetrTransformerDecoder: query_scale_type must be one '
                                     f'of {_QUERY_SCALE_TYPES}, got {query_scale_type!r}.')
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.post_norm_cfg = post_norm_cfg
        self.return_intermediate = return_intermediate
        self.query_dim = query_dim
        self.query_scale_type = query_scale_type
        self.with_modulated_hw_attn = with_modulated_hw_attn

        self.layers = nn.ModuleList(
            DABDetrTransformerDecoderLayer(**layer_cfg) for _ in range(num_layers))
        dims = self.embed_dims = self.layers[0].embed_dims
        self.post_norm = build_norm_layer(post_norm_cfg, dims)[1]
        if query_scale_type == 'cond_elewise':
            self.query_scale = MLP(dims, dims, dims, 2)
        elif query_scale_type == 'cond_scalar':
            self.query_scale = MLP(dims, dims, 1, 2)
        else:
            self.query_scale = nn.Embedding(num_layers, dims)
        # The anchor's sine encoding has dims // 2 channels per coordinate.
        self.ref_point_head = MLP(query_dim // 2 * dims, dims, dims, 2)
        if with_modulated_hw_attn and query_dim == 4:
            self.ref_anchor_head = MLP(dims, dims, 2, 2)
        self.keep_query_pos = self.layers[0].keep_query_pos
        if not self.keep_query_pos:
            for layer in self.layers[1:]:
                layer.cross_attn.qpos_proj = None

    def _spatial_query(self, layer_id: int, output: Tensor, anchors: Tensor,
                       ref_sine: Tensor) -> Tensor:
        """The cross-attention's spatial query of one layer, [B, Q, C].

        Args:
            layer_id (int): Index of the layer.
            output (Tensor): The previous layer's (unnormalized) output, [B, Q, C].
            anchors (Tensor): Sigmoid anchors [B, Q, query_dim].
            ref_sine (Tensor): Their sine encodings [B, Q, query_dim // 2 * C], ordered
                y, x (, w, h).
        """
        dims = self.embed_dims
        if self.query_scale_type == 'fix_elewise':
            scale: Union[Tensor, float] = self.query_scale.weight[layer_id]
        else:  # the first layer's content is all zeros: no transformation
            scale = 1. if layer_id == 0 else self.query_scale(output)
        spatial = ref_sine[..., :dims] * scale  # the y and x parts
        if not self.with_modulated_hw_attn:
            return spatial
        if anchors.size(-1) != 4:
            raise DABDetrConfigError(
                'DABDetrTransformerDecoder: with_modulated_hw_attn needs anchor boxes '
                f'(query_dim=4), got query_dim={anchors.size(-1)}.')
        ref_hw = self.ref_anchor_head(output).sigmoid()  # [B, Q, 2] as (w, h)
        # The y part is scaled by predicted h / anchor h, the x part by w / anchor w.
        y_part = spatial[..., :dims // 2] * (ref_hw[..., 1] / anchors[..., 3]).unsqueeze(-1)
        x_part = spatial[..., dims // 2:] * (ref_hw[..., 0] / anchors[..., 2]).unsqueeze(-1)
        return torch.cat([y_part, x_part], dim=-1)

    def forward(self,
                query: Tensor,
                key: Tensor,
                query_pos: Tensor,
                key_pos: Tensor,
                reg_branches: nn.Module,
                key_padding_mask: Optional[Tensor] = None,
                **kwargs) -> List[Tensor]:
        """Decode the queries and refine their anchors after every layer.

        Args:
            query (Tensor): Content queries [B, Q, C] (zeros, or the patterns).
            key (Tensor): Memory, [B, HW, C].
            query_pos (Tensor): Unsigmoided anchors [B, Q, query_dim].
            key_pos (Tensor): Memory positional encodings, [B, HW, C].
            reg_branches (nn.Module): The head's box branch, [..., C] -> [..., 4] logits.
            key_padding_mask (Tensor, optional): [B, HW] bool, True on padded memory.
            **kwargs: Passed to every layer.

        Returns:
            list[Tensor]: Normalized outputs [num_layers, B, Q, C] (``return_intermediate``,
            else the last one as [1, B, Q, C]) and the anchors each layer received,
            [num_layers, B, Q, query_dim] (sigmoid).
        """
        output = query
        anchors = query_pos.sigmoid()
        layer_anchors = [anchors]
        intermediate = []
        for layer_id, layer in enumerate(self.layers):
            anchors = anchors[..., :self.query_dim]
            ref_sine = coordinate_to_encoding(anchors, num_feats=self.embed_dims // 2)
            output = layer(output, key, query_pos=self.ref_point_head(ref_sine),
                           ref_sine_embed=self._spatial_query(layer_id, output, anchors,
                                                              ref_sine),
                           key_pos=key_pos, key_padding_mask=key_padding_mask,
                           is_first=layer_id == 0, **kwargs)
            reg = reg_branches(output)  # [B, Q, 4] logits
            new_anchors = (reg[..., :self.query_dim] + inverse_sigmoid(anchors)).sigmoid()
            if layer_id != self.num_layers - 1:
                layer_anchors.append(new_anchors)
            # Each layer's box loss trains its own refinement only.
            anchors = new_anchors.detach()
            if self.return_intermediate:
                intermediate.append(self.post_norm(output))
        references = torch.stack(layer_anchors)
        if self.return_intermediate:
            return [torch.stack(intermediate), references]
        return [self.post_norm(output).unsqueeze(0), references]


class DABDetrTransformerEncoder(DetrTransformerEncoder):
    """DETR's encoder whose layers get ``query_pos * query_scale(query)`` as positions.

    Arguments are ``DetrTransformerEncoder``'s; as in mmdetection, ``num_cp`` is accepted
    but no layer is checkpointed.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.query_scale = MLP(self.embed_dims, self.embed_dims, self.embed_dims, 2)

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
        for layer in self.layers:
            query = layer(query, query_pos=query_pos * self.query_scale(query),
                          key_padding_mask=key_padding_mask, **kwargs)
        return query
