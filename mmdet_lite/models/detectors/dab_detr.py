"""DAB-DETR: Dynamic Anchor Boxes are Better Queries for DETR (Liu et al., 2022).

A member over DETR (``detr.py``); what it changes in the steps of ``base_detr.py``:

- _init_layers: ``DABDetrTransformerEncoder`` and ``DABDetrTransformerDecoder``
  (``dab_detr_layers.py``); ``query_embedding`` holds one learned anchor box per query,
  [Q, query_dim] unsigmoided (cx, cy, w, h); optional ``patterns`` [P, C] content queries.
- pre_transformer, forward_encoder: DETR's.
- pre_decoder: zero content queries and the anchors as ``query_pos`` [B, Q, query_dim];
  with ``num_patterns`` P > 0, every pattern is paired with every anchor (P * Q queries).
- forward_decoder: the decoder refines the anchors after every layer with the head's box
  branch (``bbox_head.fc_reg``) and returns the anchors each layer received as
  ``references`` [num_layers, B, Q, query_dim].
"""
from typing import Dict, Tuple

from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from ..layers import SinePositionalEncoding
from ..layers.transformer import (DABDetrTransformerDecoder, DABDetrTransformerEncoder,
                                  inverse_sigmoid)
from .conditional_detr import DetrMemberConfigError, check_num_feats
from .detr import DETR


@MODELS.register_module()
class DABDETR(DETR):
    """DAB-DETR: DETR whose queries are anchor boxes, refined layer by layer.

    Args:
        *args: ``DETR``'s arguments; ``encoder``/``decoder`` hold the
            ``DABDetrTransformerEncoder``/``DABDetrTransformerDecoder`` arguments and
            ``bbox_head`` is a ``DABDETRHead``.
        with_random_refpoints (bool): Initialize the anchors uniformly in [0, 1] (their
            centres stored as logits) instead of ``nn.Embedding``'s normal init. As in
            mmdetection the centres are not frozen: its ``requires_grad = False`` line
            acts on a copy. Defaults to False.
        num_patterns (int): Learned content queries, each paired with every anchor
            (from Anchor DETR); 0 uses zero content queries. Defaults to 0.
        **kwargs: ``DETR``'s keyword arguments.
    """

    def __init__(self, *args, with_random_refpoints: bool = False, num_patterns: int = 0,
                 **kwargs) -> None:
        if not isinstance(num_patterns, int):
            raise DetrMemberConfigError(
                f'DABDETR: num_patterns must be an int, got {num_patterns!r}.')
        self.with_random_refpoints = with_random_refpoints
        self.num_patterns = num_patterns
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        """Positional encoding, encoder, decoder, anchors [Q, query_dim] and patterns."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DABDetrTransformerEncoder(**self.encoder)
        self.decoder = DABDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_dim = self.decoder.query_dim
        self.query_embedding = nn.Embedding(self.num_queries, self.query_dim)
        if self.num_patterns > 0:
            self.patterns = nn.Embedding(self.num_patterns, self.embed_dims)
        check_num_feats(self)

    def init_weights(self) -> None:
        """DETR's init; with ``with_random_refpoints`` uniform anchors, centres as logits."""
        super().init_weights()
        if self.with_random_refpoints:
            weight = self.query_embedding.weight.data
            nn.init.uniform_(weight, 0., 1.)
            weight[:, :2] = inverse_sigmoid(weight[:, :2])

    def pre_decoder(self, memory: Tensor) -> Tuple[Dict, Dict]:
        """Zero (or pattern) content queries and the anchors as their positions.

        Args:
            memory (Tensor): [B, hw, C].

        Returns:
            tuple[dict, dict]: ``query`` [B, Q', C], ``query_pos`` [B, Q', query_dim] and
            ``memory`` for the decoder (Q' = Q, or P * Q with patterns: query i has pattern
            i // Q and anchor i % Q); nothing extra for the head.
        """
        batch_size = memory.size(0)
        query_pos = self.query_embedding.weight.unsqueeze(0).repeat(batch_size, 1, 1)
        if self.num_patterns == 0:
            query = query_pos.new_zeros(batch_size, self.num_queries, self.embed_dims)
        else:
            query = self.patterns.weight.repeat_interleave(self.num_queries, dim=0)
            query = query.unsqueeze(0).repeat(batch_size, 1, 1)  # [B, P * Q, C]
            query_pos = query_pos.repeat(1, self.num_patterns, 1)  # [B, P * Q, query_dim]
        return dict(query=query, query_pos=query_pos, memory=memory), dict()

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Tensor, memory_pos: Tensor) -> Dict:
        """Decode the queries, refining the anchors with the head's box branch.

        Args:
            query (Tensor): [B, Q', C].
            query_pos (Tensor): Unsigmoided anchors [B, Q', query_dim].
            memory (Tensor): [B, hw, C].
            memory_mask (Tensor): [B, hw] bool, True on padding.
            memory_pos (Tensor): [B, hw, C].

        Returns:
            dict: ``hidden_states`` [num_decoder_layers, B, Q', C] and ``references``
            [num_decoder_layers, B, Q', query_dim] (sigmoid anchors of each layer).
        """
        hidden_states, references = self.decoder(query=query, key=memory,
                                                 query_pos=query_pos, key_pos=memory_pos,
                                                 key_padding_mask=memory_mask,
                                                 reg_branches=self.bbox_head.fc_reg)
        return dict(hidden_states=hidden_states, references=references)
