"""DETR: End-to-End Object Detection with Transformers (Carion et al., 2020).

The first member of the family; ``base_detr.py`` shows one iteration top to bottom. What
DETR chooses in each step:

- pre_transformer: the last neck level only, no level embedding.
- forward_encoder: post-norm self-attention over the hw positions (``detr_layers.py``).
- pre_decoder: zero queries, the learned ``query_embedding`` as their positions.
- forward_decoder: every layer's (normalized) output, for the head's auxiliary losses.
"""
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import OptSampleList
from ..layers import DetrTransformerDecoder, DetrTransformerEncoder, SinePositionalEncoding
from .base_detr import DetectionTransformer


@MODELS.register_module()
class DETR(DetectionTransformer):
    """DETR: a CNN feature map, a transformer encoder-decoder and ``num_queries`` learned
    object queries, each predicting one object or "no object".

    Images padded to a common batch size get a padding mask (True on padding) at the
    feature resolution; attention ignores the padded positions and the positional encoding
    counts only valid ones, so an image's detections do not depend on its batch.

    Arguments are those of ``DetectionTransformer``; ``encoder``/``decoder`` hold the
    ``DetrTransformerEncoder``/``DetrTransformerDecoder`` arguments and
    ``positional_encoding`` those of ``SinePositionalEncoding``.
    """

    def _init_layers(self) -> None:
        """Positional encoding, encoder, decoder and the query embeddings [Q, C]."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DetrTransformerEncoder(**self.encoder)
        self.decoder = DetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)

    def pre_transformer(self, img_feats: Tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Flatten the last feature map with its padding mask and positional encoding.

        Args:
            img_feats (tuple[Tensor]): Neck outputs; the last, [B, C, h, w], is used.
            batch_data_samples (list[DetDataSample], optional): ``img_shape`` and
                ``batch_input_shape`` of each image. None means no padding.

        Returns:
            tuple[dict, dict]: ``feat``, ``feat_mask``, ``feat_pos`` for the encoder and
            ``memory_mask``, ``memory_pos`` for the decoder ([B, hw, C] and [B, hw]).
        """
        seq = self.flatten_feats(img_feats[-1:], batch_data_samples)
        encoder_inputs = dict(feat=seq['feat'], feat_mask=seq['feat_mask'],
                              feat_pos=seq['feat_pos'])
        decoder_inputs = dict(memory_mask=seq['feat_mask'], memory_pos=seq['feat_pos'])
        return encoder_inputs, decoder_inputs

    def forward_encoder(self, feat: Tensor, feat_mask: Tensor, feat_pos: Tensor) -> Dict:
        """Self-attention over the feature positions.

        Args:
            feat (Tensor): [B, hw, C].
            feat_mask (Tensor): [B, hw] bool, True on padding.
            feat_pos (Tensor): [B, hw, C].

        Returns:
            dict: ``memory`` [B, hw, C].
        """
        memory = self.encoder(query=feat, query_pos=feat_pos, key_padding_mask=feat_mask)
        return dict(memory=memory)

    def pre_decoder(self, memory: Tensor) -> Tuple[Dict, Dict]:
        """Zero queries with the learned query embeddings as their positions.

        Args:
            memory (Tensor): [B, hw, C].

        Returns:
            tuple[dict, dict]: ``query``, ``query_pos`` [B, num_queries, C] and ``memory``
            for the decoder; nothing extra for the head.
        """
        batch_size = memory.size(0)
        query_pos = self.query_embedding.weight.unsqueeze(0).expand(batch_size, -1, -1)
        query = torch.zeros_like(query_pos)  # [B, num_queries, C]
        return dict(query=query, query_pos=query_pos, memory=memory), dict()

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Tensor, memory_pos: Tensor) -> Dict:
        """Cross-attend the queries to the memory, layer after layer.

        Args:
            query (Tensor): [B, num_queries, C].
            query_pos (Tensor): [B, num_queries, C].
            memory (Tensor): [B, hw, C].
            memory_mask (Tensor): [B, hw] bool, True on padding.
            memory_pos (Tensor): [B, hw, C].

        Returns:
            dict: ``hidden_states`` [num_decoder_layers, B, num_queries, C].
        """
        hidden_states = self.decoder(query=query, key=memory, value=memory,
                                     query_pos=query_pos, key_pos=memory_pos,
                                     key_padding_mask=memory_mask)
        return dict(hidden_states=hidden_states)
