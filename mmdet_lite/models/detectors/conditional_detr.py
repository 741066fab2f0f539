"""Conditional DETR: Conditional DETR for Fast Training Convergence (Meng et al., 2021).

A member over DETR (``detr.py``); what it changes in the steps of ``base_detr.py``:

- _init_layers: DETR's encoder, ``ConditionalDetrTransformerDecoder``
  (``conditional_detr_layers.py``) as the decoder.
- pre_transformer, forward_encoder, pre_decoder: DETR's (zero queries, the learned
  ``query_embedding`` as their positions).
- forward_decoder: the decoder also returns the reference points [B, Q, 2] it predicts
  from the query embeddings; they go to the head as ``references``.
"""
from typing import Dict

from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from ..layers import DetrTransformerEncoder, SinePositionalEncoding
from ..layers.transformer import ConditionalDetrTransformerDecoder
from .detr import DETR


class DetrMemberConfigError(ValueError, AssertionError):
    """A detector argument mmdetection rejects with an assert."""


def check_num_feats(detector: DETR) -> None:
    """The positional encoding must give ``embed_dims`` channels (mmdetection asserts it)."""
    num_feats = detector.positional_encoding.num_feats
    if num_feats * 2 != detector.embed_dims:
        raise DetrMemberConfigError(
            f'{type(detector).__name__}: positional_encoding.num_feats ({num_feats}) must be '
            f'half of the transformer embed_dims ({detector.embed_dims}).')


@MODELS.register_module()
class ConditionalDETR(DETR):
    """Conditional DETR: DETR whose decoder cross-attention gets a spatial query from a
    reference point per object query, which speeds up training convergence.

    Arguments are ``DETR``'s; ``decoder`` holds ``ConditionalDetrTransformerDecoder``
    arguments (layers with ``ConditionalAttention`` configs) and ``bbox_head`` is a
    ``ConditionalDETRHead``.
    """

    def _init_layers(self) -> None:
        """Positional encoding, DETR encoder, conditional decoder, query embeddings [Q, C]."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DetrTransformerEncoder(**self.encoder)
        self.decoder = ConditionalDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        check_num_feats(self)

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Tensor, memory_pos: Tensor) -> Dict:
        """Decode the queries; also return the reference points.

        Args:
            query (Tensor): [B, Q, C] (zeros).
            query_pos (Tensor): [B, Q, C], the query embeddings.
            memory (Tensor): [B, hw, C].
            memory_mask (Tensor): [B, hw] bool, True on padding.
            memory_pos (Tensor): [B, hw, C].

        Returns:
            dict: ``hidden_states`` [num_decoder_layers, B, Q, C] and ``references``
            [B, Q, 2] (sigmoid x, y).
        """
        hidden_states, references = self.decoder(query=query, key=memory,
                                                 query_pos=query_pos, key_pos=memory_pos,
                                                 key_padding_mask=memory_mask)
        return dict(hidden_states=hidden_states, references=references)
