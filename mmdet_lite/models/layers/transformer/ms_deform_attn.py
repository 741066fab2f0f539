"""Multi-scale deformable attention (Deformable DETR, DINO) in plain torch.

mmcv's ``MultiScaleDeformableAttention`` lives in ``mmcv.ops`` and runs a compiled kernel on
the GPU; mmcv-lite has neither. This module keeps mmcv 2.x's constructor arguments, parameter
names (``sampling_offsets``, ``attention_weights``, ``value_proj``, ``output_proj``),
initialisation and forward signature, so mmdetection checkpoints and configs work unchanged,
and samples with ``F.grid_sample`` on every device (mmcv's CPU path does the same).

Each query looks at ``num_points`` points per head and per feature level, placed around its
reference point by learned offsets, and returns the attention-weighted sum of the bilinearly
sampled values: cost O(queries x heads x levels x points), independent of the map sizes.

The class is registered in mmdet_lite's ``MODELS`` and, as mmcv does, in mmengine's root
``MODELS``, where ``mmcv.cnn.bricks.transformer.build_attention`` looks.
"""
import math
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule, constant_init, xavier_init
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig

SpatialShapes = Union[Tensor, Sequence[Tuple[int, int]]]


class MSDeformAttnShapeError(ValueError, AssertionError):
    """Inputs whose sizes disagree (mmcv asserts there, hence also an AssertionError)."""


def _level_shapes(spatial_shapes: SpatialShapes) -> List[Tuple[int, int]]:
    """(h, w) of every level as Python ints: ``split`` and ``reshape`` need plain sizes.

    Args:
        spatial_shapes (Tensor | Sequence[tuple[int, int]]): [num_levels, 2] as (h, w).

    Returns:
        list[tuple[int, int]]: One (h, w) per level.
    """
    rows = spatial_shapes.tolist() if isinstance(spatial_shapes, Tensor) else spatial_shapes
    return [(int(h), int(w)) for h, w in rows]


def multi_scale_deformable_attn_pytorch(value: Tensor, value_spatial_shapes: SpatialShapes,
                                        sampling_locations: Tensor,
                                        attention_weights: Tensor) -> Tensor:
    """Attention-weighted sum of bilinear samples taken on several feature maps.

    Sampling is ``F.grid_sample`` (bilinear, ``align_corners=False``, zeros outside the map),
    i.e. location (0, 0) is the top-left corner of the first pixel and (1, 1) the
    bottom-right corner of the last one, as in mmcv's kernel.

    Args:
        value (Tensor): [B, num_keys, num_heads, head_dims]: the levels' values flattened
            row-major and concatenated, ``num_keys = sum(h * w)``.
        value_spatial_shapes (Tensor | Sequence[tuple[int, int]]): [num_levels, 2], (h, w)
            of each level. A Python sequence keeps ``torch.export`` free of data-dependent
            sizes.
        sampling_locations (Tensor): [B, num_queries, num_heads, num_levels, num_points, 2],
            normalised (x, y) in [0, 1] (outside reads zeros).
        attention_weights (Tensor): [B, num_queries, num_heads, num_levels, num_points].

    Returns:
        Tensor: [B, num_queries, num_heads * head_dims].
    """
    batch, _, num_heads, head_dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = _level_shapes(value_spatial_shapes)
    values = value.split([h * w for h, w in shapes], dim=1)
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    out = None
    for level, (h, w) in enumerate(shapes):
        # [B, h*w, heads, D] -> [B*heads, D, h, w]: every head samples its own channels.
        value_l = values[level].permute(0, 2, 3, 1).reshape(batch * num_heads, head_dims, h, w)
        # [B, Q, heads, P, 2] -> [B*heads, Q, P, 2]
        grid_l = grids[:, :, :, level].transpose(1, 2).reshape(
            batch * num_heads, num_queries, num_points, 2)
        sampled = F.grid_sample(value_l, grid_l, mode='bilinear', padding_mode='zeros',
                                align_corners=False)  # [B*heads, D, Q, P]
        weight_l = attention_weights[:, :, :, level].transpose(1, 2).reshape(
            batch * num_heads, 1, num_queries, num_points)
        # Summing level by level never holds all levels' samples in one stacked tensor.
        part = (sampled * weight_l).sum(-1)  # [B*heads, D, Q]
        out = part if out is None else out + part
    if out is None:
        raise MSDeformAttnShapeError('value_spatial_shapes: expected at least one level')
    out = out.view(batch, num_heads * head_dims, num_queries)
    return out.transpose(1, 2).contiguous()


@MODELS.register_module()
class MultiScaleDeformableAttention(BaseModule):
    """Deformable attention over several feature levels, with dropout and a residual.

    Output: ``identity + dropout(output_proj(msda(value_proj(value), locations, weights)))``
    where the sampling locations are the reference points moved by
    ``sampling_offsets(query + query_pos)`` and the weights are
    ``softmax(attention_weights(query + query_pos))`` over levels x points of each head.

    Args:
        embed_dims (int): Channels of queries and values. Defaults to 256.
        num_heads (int): Attention heads; must divide ``embed_dims``. Defaults to 8.
        num_levels (int): Feature levels sampled. Defaults to 4.
        num_points (int): Sampling points per query, head and level. Defaults to 4.
        im2col_step (int): Batch chunk of mmcv's CUDA kernel; kept for config
            compatibility, unused here. Defaults to 64.
        dropout (float): Dropout on the output before the residual. Defaults to 0.1.
        batch_first (bool): Inputs are [B, N, C] (True) or [N, B, C] (False).
            Defaults to False.
        norm_cfg (dict, optional): Stored only, as in mmcv. Defaults to None.
        init_cfg (dict, optional): Initialization config. Defaults to None.
        value_proj_ratio (float): ``value_proj`` outputs ``int(embed_dims * ratio)``
            channels (split over the heads). Defaults to 1.0.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_heads: int = 8,
                 num_levels: int = 4,
                 num_points: int = 4,
                 im2col_step: int = 64,
                 dropout: float = 0.1,
                 batch_first: bool = False,
                 norm_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 value_proj_ratio: float = 1.0) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads != 0:
            raise ValueError(f'MultiScaleDeformableAttention: embed_dims ({embed_dims}) must '
                             f'be divisible by num_heads ({num_heads}).')
        self.norm_cfg = norm_cfg
        self.dropout = nn.Dropout(dropout)
        self.batch_first = batch_first
        self.im2col_step = im2col_step
        self.embed_dims = embed_dims
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        value_proj_size = int(embed_dims * value_proj_ratio)
        self.value_proj = nn.Linear(embed_dims, value_proj_size)
        self.output_proj = nn.Linear(value_proj_size, embed_dims)
        self.init_weights()

    def init_weights(self) -> None:
        """mmcv's initialisation (``init_cfg`` is not applied, as in mmcv).

        The offset bias puts the points of head ``k`` on the ray at angle ``2*pi*k/heads``,
        scaled so the larger of |cos|, |sin| is 1, and point ``i`` ``i + 1`` steps out (the
        same on every level); offset weights and both attention-weight parameters are 0, so
        every point starts with the same weight; the projections are xavier-uniform with
        zero biases.
        """
        constant_init(self.sampling_offsets, 0.)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi /
                                                                      self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)  # [heads, 2] as (x, y)
        directions = directions / directions.abs().max(-1, keepdim=True)[0]
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        grid = directions[:, None, None, :] * steps[None, None, :, None]  # [heads, 1, P, 2]
        grid = grid.expand(self.num_heads, self.num_levels, self.num_points, 2)
        device = self.sampling_offsets.bias.device
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1).to(device))
        constant_init(self.attention_weights, val=0., bias=0.)
        xavier_init(self.value_proj, distribution='uniform', bias=0.)
        xavier_init(self.output_proj, distribution='uniform', bias=0.)
        self._is_init = True

    def _sampling_locations(self, offsets: Tensor, reference_points: Tensor,
                            shapes: List[Tuple[int, int]]) -> Tensor:
        """Reference points moved by the offsets, normalised to [0, 1].

        Args:
            offsets (Tensor): [B, Q, heads, levels, points, 2] in pixels of each level
                (points as (x, y)) or, with reference boxes, in units of the box half-size
                times ``num_points``.
            reference_points (Tensor): [B, Q, levels, 2] (x, y) or [B, Q, levels, 4]
                (x, y, w, h), normalised.
            shapes (list[tuple[int, int]]): (h, w) per level.

        Returns:
            Tensor: [B, Q, heads, levels, points, 2].
        """
        ref = reference_points[:, :, None, :, None, :]
        if reference_points.shape[-1] == 2:
            # A pixel offset on a level is 1 / (w, h) in normalised coordinates.
            normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=offsets.dtype,
                                      device=offsets.device)
            return ref + offsets / normalizer[None, None, None, :, None, :]
        if reference_points.shape[-1] == 4:
            # Offsets of +-num_points reach the edges of the reference box.
            return ref[..., :2] + offsets / self.num_points * ref[..., 2:] * 0.5
        raise ValueError('MultiScaleDeformableAttention: the last dim of reference_points '
                         f'must be 2 or 4, got {reference_points.shape[-1]}.')

    def forward(self,
                query: Tensor,
                key: Optional[Tensor] = None,
                value: Optional[Tensor] = None,
                identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[SpatialShapes] = None,
                level_start_index: Optional[Tensor] = None,
                **kwargs) -> Tensor:
        """Sample the multi-scale ``value`` around each query's reference point.

        Shapes below are for ``batch_first=True``; otherwise ``query``, ``value``,
        ``identity`` and the output are [N, B, C].

        Args:
            query (Tensor): [B, Q, C].
            key (Tensor, optional): Unused, as in mmcv.
            value (Tensor, optional): [B, num_keys, C], all levels flattened and
                concatenated; ``query`` when None (encoder self-attention).
            identity (Tensor, optional): Residual, [B, Q, C]; ``query`` when None.
            query_pos (Tensor, optional): Added to ``query`` (not to ``identity``).
            key_padding_mask (Tensor, optional): [B, num_keys] bool, True on padded keys,
                whose projected values are set to 0.
            reference_points (Tensor): [B, Q, levels, 2] normalised (x, y), or
                [B, Q, levels, 4] normalised (x, y, w, h) boxes.
            spatial_shapes (Tensor | Sequence[tuple[int, int]]): [levels, 2], (h, w).
            level_start_index (Tensor, optional): [levels], where each level starts in
                ``value``; only mmcv's CUDA kernel reads it.
            **kwargs: Ignored, as in mmcv; mmcv's old name ``residual`` for ``identity`` is
                accepted with a warning.

        Returns:
            Tensor: [B, Q, C].
        """
        if 'residual' in kwargs:
            warnings.warn('MultiScaleDeformableAttention: "residual" is deprecated, '
                          'use "identity" instead.', DeprecationWarning)
            identity = kwargs.pop('residual')
        if value is None:
            value = query
        if identity is None:
            identity = query
        if query_pos is not None:
            query = query + query_pos
        if not self.batch_first:
            query = query.permute(1, 0, 2)
            value = value.permute(1, 0, 2)
        batch, num_query, _ = query.shape
        _, num_value, _ = value.shape
        shapes = _level_shapes(spatial_shapes)
        if sum(h * w for h, w in shapes) != num_value:
            raise MSDeformAttnShapeError(
                f'MultiScaleDeformableAttention: spatial_shapes {shapes} cover '
                f'{sum(h * w for h, w in shapes)} positions but value has {num_value}.')

        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(batch, num_value, self.num_heads, -1)
        offsets = self.sampling_offsets(query).view(batch, num_query, self.num_heads,
                                                    self.num_levels, self.num_points, 2)
        weights = self.attention_weights(query).view(
            batch, num_query, self.num_heads, self.num_levels * self.num_points)
        # One softmax over all levels and points of a head.
        weights = weights.softmax(-1).view(batch, num_query, self.num_heads,
                                           self.num_levels, self.num_points)
        locations = self._sampling_locations(offsets, reference_points, shapes)
        output = multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)
        output = self.output_proj(output)
        if not self.batch_first:
            output = output.permute(1, 0, 2)
        return self.dropout(output) + identity


# mmcv registers this name in mmengine's root MODELS, where mmcv.cnn's build_attention and
# configs without a default scope look; do the same unless a real mmcv build already has it.
if 'MultiScaleDeformableAttention' not in MMENGINE_MODELS.module_dict:
    MMENGINE_MODELS.register_module('MultiScaleDeformableAttention',
                                    module=MultiScaleDeformableAttention)
