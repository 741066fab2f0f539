"""Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu et al., 2021).

A member over ``DetectionTransformer`` (``base_detr.py`` shows one iteration). What
Deformable DETR chooses in each step:

- pre_transformer: all ``num_feature_levels`` neck levels, each position's encoding plus
  its level's learned ``level_embed``; the sequence keeps ``spatial_shapes``,
  ``level_start_index`` and ``valid_ratios`` for the deformable attention.
- forward_encoder: deformable self-attention around every position
  (``deformable_detr_layers.py``).
- pre_decoder: one-stage, ``query_embedding`` [Q, 2C] split into positions and contents,
  reference points ``sigmoid(reference_points_fc(query_pos))``. Two-stage
  (``as_two_stage``), the encoder output scores a proposal at every position
  (``gen_encoder_output_proposals``, the head's extra branches); the Q best proposals become
  the reference boxes and, through their sine encoding (``get_proposal_pos_embed``), the
  queries.
- forward_decoder: deformable cross-attention around the references; with
  ``with_box_refine`` each layer's box branch moves them for the next layer.
"""
import copy
import math
from typing import Dict, Optional, Tuple

import torch
from mmengine.model import xavier_init
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import OptSampleList
from mmdet_lite.utils import OptConfigType
from ..layers import SinePositionalEncoding
from ..layers.positional_encoding import sine_cosine_encoding
from ..layers.transformer import (DeformableDetrTransformerDecoder,
                                  DeformableDetrTransformerEncoder)
from ..layers.transformer.ms_deform_attn import MultiScaleDeformableAttention
from .base_detr import DetectionTransformer


class DeformableDETRConfigError(ValueError, AssertionError):
    """A configuration mmdetection rejects with an assert (hence also an AssertionError)."""


@MODELS.register_module()
class DeformableDETR(DetectionTransformer):
    """Deformable DETR: multi-scale features, deformable attention, optional box
    refinement and two-stage queries.

    Arguments other than the three below are ``DetectionTransformer``'s; ``encoder`` /
    ``decoder`` hold the ``DeformableDetrTransformerEncoder`` / ``...Decoder`` arguments.
    The head's ``share_pred_layer``, ``num_pred_layer`` and ``as_two_stage`` are set here
    and must not be in ``bbox_head``.

    Args:
        with_box_refine (bool): Each decoder layer refines the previous layer's boxes
            (the head's branches are then not shared). Defaults to False.
        as_two_stage (bool): Queries come from the best encoder proposals instead of
            learned embeddings. Defaults to False.
        num_feature_levels (int): Neck levels used (the ``level_embed`` rows).
            Defaults to 4.
    """

    def __init__(self,
                 *args,
                 decoder: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 with_box_refine: bool = False,
                 as_two_stage: bool = False,
                 num_feature_levels: int = 4,
                 **kwargs) -> None:
        self.with_box_refine = with_box_refine
        self.as_two_stage = as_two_stage
        self.num_feature_levels = num_feature_levels
        if bbox_head is not None and decoder is not None:
            set_here = [k for k in ('share_pred_layer', 'num_pred_layer', 'as_two_stage')
                        if k in bbox_head]
            if set_here:
                raise DeformableDETRConfigError(
                    f'DeformableDETR sets bbox_head.{set_here} from with_box_refine, '
                    'as_two_stage and decoder.num_layers; remove them from bbox_head.')
            bbox_head = copy.deepcopy(bbox_head)
            # Refinement needs a box branch per layer; two-stage one more for proposals.
            bbox_head['share_pred_layer'] = not with_box_refine
            bbox_head['num_pred_layer'] = decoder['num_layers'] + int(as_two_stage)
            bbox_head['as_two_stage'] = as_two_stage
        super().__init__(*args, decoder=decoder, bbox_head=bbox_head, **kwargs)

    def _init_layers(self) -> None:
        """Positional encoding, encoder, decoder, ``level_embed`` [n, C] and either
        ``query_embedding`` [Q, 2C] + ``reference_points_fc`` or the two-stage
        ``memory_trans_*`` / ``pos_trans_*`` layers."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DeformableDetrTransformerEncoder(**self.encoder)
        self.decoder = DeformableDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        if not self.as_two_stage:
            # Split in pre_decoder into the query positions and contents.
            self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims * 2)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise DeformableDETRConfigError(
                f'DeformableDETR: positional_encoding.num_feats ({num_feats}) must be half '
                f'of the transformer embed_dims ({self.embed_dims}).')
        # Filled by init_weights (normal); zeros until then rather than uninitialized memory.
        self.level_embed = nn.Parameter(torch.zeros(self.num_feature_levels, self.embed_dims))
        if self.as_two_stage:
            self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
            self.memory_trans_norm = nn.LayerNorm(self.embed_dims)
            self.pos_trans_fc = nn.Linear(self.embed_dims * 2, self.embed_dims * 2)
            self.pos_trans_norm = nn.LayerNorm(self.embed_dims * 2)
        else:
            self.reference_points_fc = nn.Linear(self.embed_dims, 2)

    def init_weights(self) -> None:
        """Base init (Xavier on the transformer), then the deformable attentions' own
        init, Xavier on the two-stage / reference-point layers, normal ``level_embed``."""
        super().init_weights()
        # The Xavier pass above overwrote the sampling-offset and attention-weight init.
        for module in self.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.init_weights()
        if self.as_two_stage:
            nn.init.xavier_uniform_(self.memory_trans_fc.weight)
            nn.init.xavier_uniform_(self.pos_trans_fc.weight)
        else:
            xavier_init(self.reference_points_fc, distribution='uniform', bias=0.)
        nn.init.normal_(self.level_embed)

    def pre_transformer(self, mlvl_feats: Tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Flatten all levels with their padding masks and positional + level encodings.

        Args:
            mlvl_feats (tuple[Tensor]): n levels [B, C, h_l, w_l].
            batch_data_samples (list[DetDataSample], optional): ``img_shape`` and
                ``batch_input_shape`` of each image. None means no padding.

        Returns:
            tuple[dict, dict]: Encoder inputs ``feat`` [B, N, C], ``feat_mask`` [B, N],
            ``feat_pos`` [B, N, C], ``spatial_shapes`` [n, 2], ``level_start_index`` [n],
            ``valid_ratios`` [B, n, 2]; decoder inputs ``memory_mask`` and the last three.
        """
        seq = self.flatten_feats(mlvl_feats, batch_data_samples, level_embed=self.level_embed)
        levels = dict(spatial_shapes=seq['spatial_shapes'],
                      level_start_index=seq['level_start_index'],
                      valid_ratios=seq['valid_ratios'])
        encoder_inputs = dict(feat=seq['feat'], feat_mask=seq['feat_mask'],
                              feat_pos=seq['feat_pos'], **levels)
        decoder_inputs = dict(memory_mask=seq['feat_mask'], **levels)
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, feat: Tensor, feat_mask: Tensor, feat_pos: Tensor,
                        spatial_shapes: Tensor, level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """Deformable self-attention over all levels.

        Returns:
            dict: ``memory`` [B, N, C], ``memory_mask`` [B, N] and ``spatial_shapes``
            (used by the two-stage proposals).
        """
        memory = self.encoder(query=feat, query_pos=feat_pos, key_padding_mask=feat_mask,
                              spatial_shapes=spatial_shapes,
                              level_start_index=level_start_index, valid_ratios=valid_ratios)
        return dict(memory=memory, memory_mask=feat_mask, spatial_shapes=spatial_shapes)

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor) -> Tuple[Dict, Dict]:
        """Queries, their positions and initial references (see the module docstring).

        Args:
            memory (Tensor): [B, N, C].
            memory_mask (Tensor, optional): [B, N] bool, True on padding (two-stage only).
            spatial_shapes (Tensor): [n, 2] (two-stage only).

        Returns:
            tuple[dict, dict]: Decoder inputs ``query``, ``query_pos`` [B, Q, C],
            ``memory`` and ``reference_points`` ([B, Q, 2] points, two-stage [B, Q, 4]
            boxes); head inputs in training ``enc_outputs_class`` [B, N, cls_out_channels]
            and ``enc_outputs_coord`` [B, N, 4] (None when one-stage), empty otherwise.
        """
        batch_size, _, channels = memory.shape
        if self.as_two_stage:
            output_memory, output_proposals = self.gen_encoder_output_proposals(
                memory, memory_mask, spatial_shapes)
            # The extra (last) branches of the head score and regress the proposals.
            proposal_layer = self.decoder.num_layers
            enc_outputs_class = self.bbox_head.cls_branches[proposal_layer](output_memory)
            enc_outputs_coord_unact = self.bbox_head.reg_branches[proposal_layer](
                output_memory) + output_proposals
            enc_outputs_coord = enc_outputs_coord_unact.sigmoid()
            # Class 0's logit is the objectness: the encoder loss labels every object 0.
            topk_proposals = torch.topk(enc_outputs_class[..., 0], self.num_queries, dim=1)[1]
            topk_coords_unact = torch.gather(
                enc_outputs_coord_unact, 1,
                topk_proposals.unsqueeze(-1).expand(-1, -1, 4)).detach()  # [B, Q, 4]
            reference_points = topk_coords_unact.sigmoid()
            pos_trans_out = self.pos_trans_norm(self.pos_trans_fc(
                self.get_proposal_pos_embed(topk_coords_unact,
                                            num_pos_feats=self.embed_dims // 2)))
            query_pos, query = torch.split(pos_trans_out, channels, dim=2)
        else:
            enc_outputs_class, enc_outputs_coord = None, None
            query_pos, query = torch.split(self.query_embedding.weight, channels, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(batch_size, -1, -1)
            query = query.unsqueeze(0).expand(batch_size, -1, -1)
            reference_points = self.reference_points_fc(query_pos).sigmoid()  # [B, Q, 2]
        decoder_inputs = dict(query=query, query_pos=query_pos, memory=memory,
                              reference_points=reference_points)
        head_inputs = dict(enc_outputs_class=enc_outputs_class,
                           enc_outputs_coord=enc_outputs_coord) if self.training else dict()
        return decoder_inputs, head_inputs

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Tensor, reference_points: Tensor,
                        spatial_shapes: Tensor, level_start_index: Tensor,
                        valid_ratios: Tensor) -> Dict:
        """Deformable cross-attention around the references, layer after layer.

        Returns:
            dict: ``hidden_states`` [L, B, Q, C] and ``references``, a list of L + 1
            tensors: the initial references, then each layer's.
        """
        inter_states, inter_references = self.decoder(
            query=query, value=memory, query_pos=query_pos, key_padding_mask=memory_mask,
            reference_points=reference_points, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index, valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches if self.with_box_refine else None)
        references = [reference_points, *inter_references]
        return dict(hidden_states=inter_states, references=references)

    def gen_encoder_output_proposals(self, memory: Tensor, memory_mask: Optional[Tensor],
                                     spatial_shapes: Tensor) -> Tuple[Tensor, Tensor]:
        """A proposal box at every encoder position, and the memory that scores it.

        Position (i, j) of level l proposes the box centred at ((j + 0.5) / valid_w_l,
        (i + 0.5) / valid_h_l) of width and height ``0.05 * 2**l`` (relative to the valid
        image). Proposals on padding or not inside (0.01, 0.99) on every coordinate are
        invalid: their logits are +inf and their memory is zeroed.

        Args:
            memory (Tensor): [B, N, C].
            memory_mask (Tensor, optional): [B, N] bool, True on padding; None: no padding.
            spatial_shapes (Tensor): [n, 2] (h_l, w_l).

        Returns:
            tuple[Tensor, Tensor]: ``output_memory`` [B, N, C] (masked, then
            ``memory_trans_fc`` and ``memory_trans_norm``) and ``output_proposals``
            [B, N, 4], the logits (inverse sigmoid) of (cx, cy, w, h).
        """
        batch_size = memory.size(0)
        proposals = []
        start = 0  # where the current level starts in the sequence
        for lvl, (height, width) in enumerate(spatial_shapes.tolist()):
            if memory_mask is not None:
                mask = memory_mask[:, start:start + height * width].view(
                    batch_size, height, width)
                valid_h = torch.sum(~mask[:, :, 0], 1)
                valid_w = torch.sum(~mask[:, 0, :], 1)
                scale = torch.stack([valid_w, valid_h], -1).view(batch_size, 1, 1, 2)
            else:
                scale = memory.new_tensor([width, height]).view(1, 1, 1, 2)
            grid_y, grid_x = torch.meshgrid(
                torch.arange(height, dtype=torch.float32, device=memory.device),
                torch.arange(width, dtype=torch.float32, device=memory.device),
                indexing='ij')
            grid = torch.stack([grid_x, grid_y], -1)  # [h, w, 2] as (x, y)
            centres = (grid.unsqueeze(0).expand(batch_size, -1, -1, -1) + 0.5) / scale
            sizes = torch.full_like(centres, 0.05 * (2.0**lvl))
            proposals.append(torch.cat((centres, sizes), -1).view(batch_size, -1, 4))
            start += height * width
        output_proposals = torch.cat(proposals, 1)  # [B, N, 4]
        valid = ((output_proposals > 0.01) & (output_proposals < 0.99)).all(-1, keepdim=True)
        output_proposals = torch.log(output_proposals / (1 - output_proposals))
        invalid = ~valid
        if memory_mask is not None:
            invalid = invalid | memory_mask.unsqueeze(-1)
        output_proposals = output_proposals.masked_fill(invalid, float('inf'))
        output_memory = memory.masked_fill(invalid, 0.0)
        output_memory = self.memory_trans_norm(self.memory_trans_fc(output_memory))
        return output_memory, output_proposals

    @staticmethod
    def get_proposal_pos_embed(proposals: Tensor, num_pos_feats: int = 128,
                               temperature: int = 10000) -> Tensor:
        """Sine encoding of proposal boxes given as logits.

        Each coordinate of ``sigmoid(proposals) * 2 * pi`` is encoded with
        ``num_pos_feats`` interleaved sines and cosines (``sine_cosine_encoding``); the four
        encodings are concatenated in the order cx, cy, w, h.

        Args:
            proposals (Tensor): [B, Q, 4] logits of (cx, cy, w, h).
            num_pos_feats (int): Channels per coordinate. Defaults to 128 (mmdetection
                always uses 128, i.e. ``embed_dims`` 256; the detector passes
                ``embed_dims // 2`` so that other widths work too).
            temperature (int): Base of the frequencies. Defaults to 10000.

        Returns:
            Tensor: [B, Q, 4 * num_pos_feats].
        """
        coords = proposals.sigmoid() * (2 * math.pi)
        return torch.cat([
            sine_cosine_encoding(coords[..., i], num_pos_feats, temperature)
            for i in range(4)
        ], dim=-1)
