"""Deformable DETR's transformer: multi-scale deformable encoder and decoder.

What Deformable DETR changes from DETR's layers (``detr_layers.py``):

- Attention over the image features is ``MultiScaleDeformableAttention``: each query
  samples a few points around its *reference point* on every feature level instead of
  attending to all N positions (encoder self-attention, decoder cross-attention).
- The encoder's reference points are the centres of the feature positions themselves
  (``get_encoder_reference_points``), in coordinates of the valid (unpadded) image.
- The decoder carries reference points (cx, cy) or boxes (cx, cy, w, h) through its
  layers; with box refinement each layer's box branch moves them, and every layer's
  output and references are returned. There is no post-norm.

Shapes: B images, n feature levels, N = sum_l(h_l * w_l) feature positions, Q queries,
C = ``embed_dims``; all sequences are batch-first.
"""
import copy
from typing import Optional, Tuple, Union

import torch
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .bricks import FFN, MultiheadAttention
from .detr_layers import _DEFAULT_ATTN, _DEFAULT_FFN, _batch_first_attn_cfg
from .ms_deform_attn import MultiScaleDeformableAttention
from .utils import inverse_sigmoid


class DeformableDetrTransformerEncoderLayer(BaseModule):
    """Encoder layer: deformable self-attention -> norm -> FFN -> norm.

    Args:
        self_attn_cfg (dict, optional): ``MultiScaleDeformableAttention`` arguments
            (``batch_first`` must be True, it is set when missing).
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
        self._init_layers()

    def _init_layers(self) -> None:
        """``self_attn`` (deformable), ``ffn`` and two ``norms``."""
        self.self_attn = MultiScaleDeformableAttention(**self.self_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = ModuleList(
            build_norm_layer(self.norm_cfg, self.embed_dims)[1] for _ in range(2))

    def forward(self, query: Tensor, query_pos: Tensor, key_padding_mask: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor, reference_points: Tensor,
                **kwargs) -> Tensor:
        """Encode one step.

        Args:
            query (Tensor): Flattened multi-level features, [B, N, C].
            query_pos (Tensor): Their positional (+ level) encodings, [B, N, C].
            key_padding_mask (Tensor): [B, N] bool, True on padded positions.
            spatial_shapes (Tensor): [n, 2] (h_l, w_l) of each level.
            level_start_index (Tensor): [n], where each level starts in the sequence.
            reference_points (Tensor): [B, N, n, 2] normalized (x, y) on every level.
            **kwargs: Ignored (e.g. ``valid_ratios``), as mmdetection's layers accept them.

        Returns:
            Tensor: [B, N, C].
        """
        # The features are the values; positions only steer where to sample.
        query = self.self_attn(query=query, value=query, query_pos=query_pos,
                               key_padding_mask=key_padding_mask,
                               reference_points=reference_points,
                               spatial_shapes=spatial_shapes,
                               level_start_index=level_start_index)
        query = self.norms[0](query)
        query = self.ffn(query)
        return self.norms[1](query)


class DeformableDetrTransformerDecoderLayer(BaseModule):
    """Decoder layer: self-attention -> norm -> deformable cross-attention -> norm -> FFN
    -> norm.

    Args:
        self_attn_cfg (dict, optional): ``MultiheadAttention`` arguments (among queries).
        cross_attn_cfg (dict, optional): ``MultiScaleDeformableAttention`` arguments
            (queries to the memory).
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
        self._init_layers()

    def _init_layers(self) -> None:
        """``self_attn``, ``cross_attn`` (deformable), ``ffn`` and three ``norms``."""
        self.self_attn = MultiheadAttention(**self.self_attn_cfg)
        self.cross_attn = MultiScaleDeformableAttention(**self.cross_attn_cfg)
        self.embed_dims = self.self_attn.embed_dims
        self.ffn = FFN(**self.ffn_cfg)
        self.norms = ModuleList(
            build_norm_layer(self.norm_cfg, self.embed_dims)[1] for _ in range(3))

    def forward(self,
                query: Tensor,
                value: Tensor,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None,
                self_attn_mask: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Decode one step.

        Args:
            query (Tensor): Object queries, [B, Q, C].
            value (Tensor): Encoder memory, [B, N, C].
            query_pos (Tensor, optional): Query positions, [B, Q, C].
            key_padding_mask (Tensor, optional): [B, N] bool, True on padded memory.
            reference_points (Tensor, optional): [B, Q, n, 2] points or [B, Q, n, 4]
                boxes, normalized to each level's valid area.
            spatial_shapes (Tensor, optional): [n, 2] (h_l, w_l).
            level_start_index (Tensor, optional): [n].
            self_attn_mask (Tensor, optional): [Q, Q] (or [B * heads, Q, Q]), True where a
                query may not attend another (DINO's denoising groups).
            **kwargs: Ignored (e.g. ``valid_ratios``).

        Returns:
            Tensor: [B, Q, C].
        """
        query = self.self_attn(query=query, key=query, value=query, query_pos=query_pos,
                               key_pos=query_pos, attn_mask=self_attn_mask)
        query = self.norms[0](query)
        query = self.cross_attn(query=query, value=value, query_pos=query_pos,
                                key_padding_mask=key_padding_mask,
                                reference_points=reference_points,
                                spatial_shapes=spatial_shapes,
                                level_start_index=level_start_index)
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


class DeformableDetrTransformerEncoder(BaseModule):
    """A stack of ``num_layers`` deformable encoder layers.

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): ``DeformableDetrTransformerEncoderLayer`` arguments.
        num_cp (int): Number of leading layers run with activation checkpointing while
            training. -1 or 0 disables it.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 num_layers: int,
                 layer_cfg: ConfigType,
                 num_cp: int = -1,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_cp > num_layers:
            raise ValueError(f'{type(self).__name__}: num_cp ({num_cp}) must not exceed '
                             f'num_layers ({num_layers}).')
        self.num_layers = num_layers
        self.layer_cfg = layer_cfg
        self.num_cp = num_cp
        self._init_layers()

    def _init_layers(self) -> None:
        """``layers`` and ``embed_dims``."""
        self.layers = ModuleList(
            DeformableDetrTransformerEncoderLayer(**self.layer_cfg)
            for _ in range(self.num_layers))
        self.embed_dims = self.layers[0].embed_dims

    def forward(self, query: Tensor, query_pos: Tensor, key_padding_mask: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor, valid_ratios: Tensor,
                **kwargs) -> Tensor:
        """Encode the flattened multi-level features.

        Args:
            query (Tensor): [B, N, C].
            query_pos (Tensor): [B, N, C].
            key_padding_mask (Tensor): [B, N] bool, True on padded positions.
            spatial_shapes (Tensor): [n, 2] (h_l, w_l).
            level_start_index (Tensor): [n].
            valid_ratios (Tensor): [B, n, 2] valid (w, h) fraction of each level.

        Returns:
            Tensor: The memory, [B, N, C].
        """
        reference_points = self.get_encoder_reference_points(spatial_shapes, valid_ratios,
                                                             device=query.device)
        inputs = dict(query_pos=query_pos, key_padding_mask=key_padding_mask,
                      spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                      reference_points=reference_points, **kwargs)
        for i, layer in enumerate(self.layers):
            if self.training and i < self.num_cp:
                query = checkpoint(layer, query, use_reentrant=False, **inputs)
            else:
                query = layer(query, **inputs)
        return query

    @staticmethod
    def get_encoder_reference_points(spatial_shapes: Tensor, valid_ratios: Tensor,
                                     device: Union[torch.device, str]) -> Tensor:
        """Reference points of the encoder: every feature position's centre, on every level.

        Position (i, j) of level l is at ((j + 0.5) / (r_w,l * w_l), (i + 0.5) /
        (r_h,l * h_l)) in coordinates of its image's valid area, then multiplied by each
        level's valid ratios to find the same point on every level.

        Args:
            spatial_shapes (Tensor): [n, 2] (h_l, w_l).
            valid_ratios (Tensor): [B, n, 2] (r_w, r_h) per image and level.
            device (torch.device | str): Device of the result.

        Returns:
            Tensor: [B, N, n, 2] normalized (x, y).
        """
        points = []
        for lvl, (height, width) in enumerate(spatial_shapes.tolist()):
            ref_y, ref_x = torch.meshgrid(
                torch.linspace(0.5, height - 0.5, height, dtype=torch.float32, device=device),
                torch.linspace(0.5, width - 0.5, width, dtype=torch.float32, device=device),
                indexing='ij')
            # [1, h*w] / [B, 1]: divide by the valid extent so the valid area spans [0, 1].
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * height)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * width)
            points.append(torch.stack((ref_x, ref_y), -1))  # [B, h*w, 2]
        reference_points = torch.cat(points, 1)  # [B, N, 2]
        return reference_points[:, :, None] * valid_ratios[:, None]  # [B, N, n, 2]


class DeformableDetrTransformerDecoder(BaseModule):
    """A stack of deformable decoder layers carrying reference points or boxes.

    Each layer samples the memory around the current references. With ``reg_branches``
    (box refinement) layer i's box branch predicts a logit offset to its references, and
    the (detached) result becomes the next layer's references.

    Args:
        num_layers (int): Number of layers.
        layer_cfg (dict): ``DeformableDetrTransformerDecoderLayer`` arguments.
        post_norm_cfg (dict, optional): Must be None: Deformable DETR has no post-norm (the
            default is DETR's so that a config must say so, as in mmdetection).
        return_intermediate (bool): Return every layer's output and references (True) or
            only the last. Defaults to True.
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
        self._init_layers()

    def _init_layers(self) -> None:
        """``layers`` and ``embed_dims``; rejects a post-norm."""
        self.layers = ModuleList(
            DeformableDetrTransformerDecoderLayer(**self.layer_cfg)
            for _ in range(self.num_layers))
        self.embed_dims = self.layers[0].embed_dims
        if self.post_norm_cfg is not None:
            raise ValueError(f'There is no post_norm in {type(self).__name__}: set '
                             f'post_norm_cfg=None (got {self.post_norm_cfg}).')

    def forward(self,
                query: Tensor,
                query_pos: Tensor,
                value: Tensor,
                key_padding_mask: Tensor,
                reference_points: Tensor,
                spatial_shapes: Tensor,
                level_start_index: Tensor,
                valid_ratios: Tensor,
                reg_branches: Optional[nn.ModuleList] = None,
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode the queries against the memory.

        Args:
            query (Tensor): [B, Q, C].
            query_pos (Tensor): [B, Q, C].
            value (Tensor): The memory, [B, N, C].
            key_padding_mask (Tensor): [B, N] bool, True on padded memory.
            reference_points (Tensor): Initial references relative to the valid image:
                [B, Q, 2] (cx, cy) or, two-stage, [B, Q, 4] (cx, cy, w, h).
            spatial_shapes (Tensor): [n, 2] (h_l, w_l).
            level_start_index (Tensor): [n].
            valid_ratios (Tensor): [B, n, 2].
            reg_branches (nn.ModuleList, optional): The head's box branches (one per
                layer), given with box refinement.
            **kwargs: Passed to every layer (e.g. ``self_attn_mask``).

        Returns:
            tuple[Tensor, Tensor]: With ``return_intermediate``, the outputs
            [num_layers, B, Q, C] and the references after each layer
            [num_layers, B, Q, 2 or 4]; else the last output [B, Q, C] and references.
        """
        output = query
        intermediate, intermediate_references = [], []
        for layer_id, layer in enumerate(self.layers):
            output = layer(output, value=value, query_pos=query_pos,
                           key_padding_mask=key_padding_mask,
                           reference_points=self._level_references(reference_points,
                                                                   valid_ratios),
                           spatial_shapes=spatial_shapes,
                           level_start_index=level_start_index, valid_ratios=valid_ratios,
                           **kwargs)
            if reg_branches is not None:
                reference_points = self._refine(reg_branches[layer_id](output),
                                                reference_points).detach()
            if self.return_intermediate:
                intermediate.append(output)
                intermediate_references.append(reference_points)
        if self.return_intermediate:
            return torch.stack(intermediate), torch.stack(intermediate_references)
        return output, reference_points

    @staticmethod
    def _level_references(reference_points: Tensor, valid_ratios: Tensor) -> Tensor:
        """References relative to the valid image -> to each level's padded map.

        Args:
            reference_points (Tensor): [B, Q, 2] points or [B, Q, 4] boxes.
            valid_ratios (Tensor): [B, n, 2] (r_w, r_h).

        Returns:
            Tensor: [B, Q, n, 2 or 4].
        """
        num_coords = reference_points.size(-1)
        if num_coords not in (2, 4):
            raise ValueError('DeformableDetrTransformerDecoder: reference_points must end '
                             f'with 2 (cx, cy) or 4 (cx, cy, w, h), got {num_coords}.')
        ratios = valid_ratios if num_coords == 2 else torch.cat([valid_ratios] * 2, -1)
        return reference_points[:, :, None] * ratios[:, None]

    @staticmethod
    def _refine(reg_preds: Tensor, reference_points: Tensor) -> Tensor:
        """New references: the box branch's logits plus the old references' logits.

        Args:
            reg_preds (Tensor): [B, Q, 4] box-branch output.
            reference_points (Tensor): [B, Q, 4] boxes, or [B, Q, 2] points (their w, h
                come from ``reg_preds`` alone).

        Returns:
            Tensor: [B, Q, 4] sigmoid boxes.
        """
        if reference_points.size(-1) == 4:
            return (reg_preds + inverse_sigmoid(reference_points)).sigmoid()
        centres = reg_preds[..., :2] + inverse_sigmoid(reference_points)
        return torch.cat((centres, reg_preds[..., 2:]), -1).sigmoid()
