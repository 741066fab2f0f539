"""DINO: DETR with Improved DeNoising Anchor Boxes (Zhang et al., 2022).

A member over Deformable DETR (``deformable_detr.py``), always two-stage with box
refinement. What DINO changes in each step:

- pre_transformer, forward_encoder: Deformable DETR's.
- pre_decoder (mixed query selection): the Q best encoder proposals, ranked by their best
  class score (Deformable DETR: by class 0), give the initial reference boxes, while the
  query contents are the learned ``query_embedding`` [Q, C] (Deformable DETR: the
  proposals' sine encoding). In training, ``dn_query_generator`` (``CdnQueryGenerator``)
  puts D denoising queries from the noisy ground truth before them, with the attention
  mask ``dn_mask`` and ``dn_meta`` for the head.
- forward_decoder: ``DinoTransformerDecoder`` (positions from the boxes,
  look-forward-twice), the head's box branches refining the boxes.

The head (``DINOHead``) adds the denoising losses; its encoder losses are computed on the
selected top-Q proposals only.
"""
import copy
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import OptSampleList
from mmdet_lite.utils import OptConfigType
from ..layers import SinePositionalEncoding
from ..layers.transformer import (CdnQueryGenerator, DeformableDetrTransformerEncoder,
                                  DinoTransformerDecoder)
from ..layers.transformer.ms_deform_attn import MultiScaleDeformableAttention
from .base_detr import DetectionTransformer
from .deformable_detr import DeformableDETR, DeformableDETRConfigError


@MODELS.register_module()
class DINO(DeformableDETR):
    """DINO: Deformable DETR with mixed query selection and contrastive denoising.

    Arguments are those of ``DeformableDETR`` (``as_two_stage`` and ``with_box_refine``
    must be True) plus ``dn_cfg``.

    Args:
        dn_cfg (dict): ``CdnQueryGenerator`` arguments except ``num_classes``,
            ``embed_dims`` and ``num_matching_queries``, which come from the head, the
            transformer and ``num_queries``. Required (mmdetection's default None fails).
    """

    pre_decoder_needs_data_samples = True  # the denoising queries need the ground truth

    def __init__(self, *args, dn_cfg: OptConfigType = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.as_two_stage:
            raise DeformableDETRConfigError('DINO: as_two_stage must be True.')
        if not self.with_box_refine:
            raise DeformableDETRConfigError('DINO: with_box_refine must be True.')
        if dn_cfg is None:
            raise TypeError('DINO needs a dn_cfg (CdnQueryGenerator arguments: '
                            'label_noise_scale, box_noise_scale, group_cfg).')
        set_here = [k for k in ('num_classes', 'num_queries', 'hidden_dim') if k in dn_cfg]
        if set_here:
            raise DeformableDETRConfigError(
                f'DINO sets the denoising generator\'s num_classes, embed_dims and '
                f'num_matching_queries itself; remove {set_here} from dn_cfg.')
        dn_cfg = dict(copy.deepcopy(dn_cfg))
        dn_cfg.update(num_classes=self.bbox_head.num_classes, embed_dims=self.embed_dims,
                      num_matching_queries=self.num_queries)
        self.dn_query_generator = CdnQueryGenerator(**dn_cfg)

    def _init_layers(self) -> None:
        """Positional encoding, encoder, DINO decoder, ``query_embedding`` [Q, C] (contents
        only), ``level_embed`` [n, C] and the proposal layers ``memory_trans_*``."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DeformableDetrTransformerEncoder(**self.encoder)
        self.decoder = DinoTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise DeformableDETRConfigError(
                f'DINO: positional_encoding.num_feats ({num_feats}) must be half of the '
                f'transformer embed_dims ({self.embed_dims}).')
        # Filled by init_weights (normal); zeros until then rather than uninitialized memory.
        self.level_embed = nn.Parameter(torch.zeros(self.num_feature_levels, self.embed_dims))
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        """Base init (Xavier on the transformer), the deformable attentions' own init,
        Xavier on ``memory_trans_fc`` and ``query_embedding``, normal ``level_embed``."""
        DetectionTransformer.init_weights(self)  # not Deformable DETR's: no pos_trans_fc
        for module in self.modules():
            if isinstance(module, MultiScaleDeformableAttention):
                module.init_weights()
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)
        nn.init.xavier_uniform_(self.query_embedding.weight)
        nn.init.normal_(self.level_embed)

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor,
                    batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Select the top-Q proposals as reference boxes; add denoising queries in training.

        Args:
            memory (Tensor): [B, N, C].
            memory_mask (Tensor, optional): [B, N] bool, True on padding.
            spatial_shapes (Tensor): [n, 2] (h_l, w_l).
            batch_data_samples (list[DetDataSample], optional): Ground truth, needed in
                training for the denoising queries.

        Returns:
            tuple[dict, dict]: Decoder inputs ``query`` [B, D + Q, C], ``memory``,
            ``reference_points`` [B, D + Q, 4] sigmoid (cx, cy, w, h) and ``dn_mask``
            ([D + Q, D + Q] bool; D = 0 and ``dn_mask`` None when not training). Head
            inputs in training: ``enc_outputs_class`` [B, Q, cls_out_channels] and
            ``enc_outputs_coord`` [B, Q, 4] of the selected proposals and ``dn_meta``;
            empty otherwise.
        """
        batch_size = memory.size(0)
        proposal_layer = self.decoder.num_layers  # the head's extra branches
        cls_out_features = self.bbox_head.cls_branches[proposal_layer].out_features
        output_memory, output_proposals = self.gen_encoder_output_proposals(
            memory, memory_mask, spatial_shapes)
        enc_outputs_class = self.bbox_head.cls_branches[proposal_layer](output_memory)
        enc_outputs_coord_unact = self.bbox_head.reg_branches[proposal_layer](
            output_memory) + output_proposals

        # Ranked by the best of all class scores (Deformable DETR: class 0 only).
        topk_indices = torch.topk(enc_outputs_class.max(-1)[0], k=self.num_queries, dim=1)[1]
        topk_score = torch.gather(
            enc_outputs_class, 1,
            topk_indices.unsqueeze(-1).expand(-1, -1, cls_out_features))  # [B, Q, cls]
        topk_coords_unact = torch.gather(enc_outputs_coord_unact, 1,
                                         topk_indices.unsqueeze(-1).expand(-1, -1, 4))
        topk_coords = topk_coords_unact.sigmoid()  # for the encoder loss: keeps gradients
        topk_coords_unact = topk_coords_unact.detach()  # the decoder's starting boxes

        query = self.query_embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)
        if self.training:
            dn_label_query, dn_bbox_query, dn_mask, dn_meta = self.dn_query_generator(
                batch_data_samples)
            query = torch.cat([dn_label_query, query], dim=1)
            reference_points = torch.cat([dn_bbox_query, topk_coords_unact], dim=1)
        else:
            reference_points = topk_coords_unact
            dn_mask, dn_meta = None, None
        reference_points = reference_points.sigmoid()

        decoder_inputs = dict(query=query, memory=memory, reference_points=reference_points,
                              dn_mask=dn_mask)
        head_inputs = dict(enc_outputs_class=topk_score, enc_outputs_coord=topk_coords,
                           dn_meta=dn_meta) if self.training else dict()
        return decoder_inputs, head_inputs

    def forward_decoder(self,
                        query: Tensor,
                        memory: Tensor,
                        memory_mask: Tensor,
                        reference_points: Tensor,
                        spatial_shapes: Tensor,
                        level_start_index: Tensor,
                        valid_ratios: Tensor,
                        dn_mask: Optional[Tensor] = None,
                        **kwargs) -> Dict:
        """Decode with box refinement by the head's branches.

        Args:
            query (Tensor): [B, D + Q, C].
            memory (Tensor): [B, N, C].
            memory_mask (Tensor): [B, N] bool, True on padding.
            reference_points (Tensor): [B, D + Q, 4] sigmoid (cx, cy, w, h).
            spatial_shapes (Tensor): [n, 2].
            level_start_index (Tensor): [n].
            valid_ratios (Tensor): [B, n, 2].
            dn_mask (Tensor, optional): [D + Q, D + Q] self-attention mask.
            **kwargs: Passed to the decoder.

        Returns:
            dict: ``hidden_states`` [L, B, D + Q, C] and ``references``, a list of L + 1
            tensors [B, D + Q, 4]: the initial boxes, then each layer's.
        """
        inter_states, references = self.decoder(
            query=query, value=memory, key_padding_mask=memory_mask, self_attn_mask=dn_mask,
            reference_points=reference_points, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index, valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches, **kwargs)
        if query.size(1) == self.num_queries:
            # No denoising query (testing, or no ground truth): keep label_embedding in the
            # graph with a zero term, or distributed training finds an unused parameter.
            inter_states = inter_states + \
                self.dn_query_generator.label_embedding.weight[0, 0] * 0.0
        return dict(hidden_states=inter_states, references=list(references))
