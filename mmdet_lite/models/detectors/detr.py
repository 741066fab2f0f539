"""DETR: End-to-End Object Detection with Transformers (Carion et al., 2020)."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
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
        """Positional encoding, encoder, decoder and the query embeddings."""
        for name in ('encoder', 'decoder', 'positional_encoding'):
            if getattr(self, name) is None:
                raise ValueError(f'DETR needs a {name} config.')
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DetrTransformerEncoder(**self.encoder)
        self.decoder = DetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise ValueError(f'DETR: positional_encoding.num_feats ({num_feats}) must be half '
                             f'of the transformer embed_dims ({self.embed_dims}).')

    def init_weights(self) -> None:
        """Default init, then Xavier-uniform on every transformer weight matrix (as DETR)."""
        super().init_weights()
        for coder in (self.encoder, self.decoder):
            for param in coder.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def pre_transformer(self, img_feats: Tuple[Tensor, ...],
                        batch_data_samples: OptSampleList = None) -> Tuple[Dict, Dict]:
        """Flatten the last feature map and build its padding mask and positional encoding.

        Args:
            img_feats (tuple[Tensor]): Neck outputs; the last, [B, C, h, w], is used.
            batch_data_samples (list[DetDataSample], optional): ``img_shape`` and
                ``batch_input_shape`` of each image. None means no padding.

        Returns:
            tuple[dict, dict]: ``feat``, ``feat_mask``, ``feat_pos`` for the encoder and
            ``memory_mask``, ``memory_pos`` for the decoder ([B, hw, C] and [B, hw]).
        """
        feat = img_feats[-1]  # [B, C, h, w]
        masks = self._padding_masks(feat, batch_data_samples)  # [B, h, w] bool
        pos_embed = self.positional_encoding(masks)  # [B, C, h, w]

        feat = feat.flatten(2).permute(0, 2, 1)  # [B, hw, C]
        pos_embed = pos_embed.flatten(2).permute(0, 2, 1)  # [B, hw, C]
        masks = masks.flatten(1)  # [B, hw]
        encoder_inputs = dict(feat=feat, feat_mask=masks, feat_pos=pos_embed)
        decoder_inputs = dict(memory_mask=masks, memory_pos=pos_embed)
        return encoder_inputs, decoder_inputs

    @staticmethod
    def _padding_masks(feat: Tensor, batch_data_samples: OptSampleList) -> Tensor:
        """True where a feature position lies in an image's padding, [B, h, w]."""
        batch_size = feat.size(0)
        if batch_data_samples is None:
            return feat.new_zeros((batch_size, *feat.shape[-2:]), dtype=torch.bool)
        if len(batch_data_samples) != batch_size:
            raise ValueError(f'DETR: got {len(batch_data_samples)} data samples for a batch '
                             f'of {batch_size} images.')
        sample = batch_data_samples[0]
        if 'batch_input_shape' not in sample.metainfo:
            raise KeyError('DETR needs "batch_input_shape" in the data samples\' metainfo '
                           '(set by DetDataPreprocessor) to build the padding masks.')
        input_h, input_w = sample.batch_input_shape
        masks = feat.new_ones((batch_size, input_h, input_w))  # [B, H, W], 1 = padding
        for i, data_sample in enumerate(batch_data_samples):
            img_h, img_w = data_sample.img_shape[:2]
            masks[i, :img_h, :img_w] = 0
        # Nearest-neighbour downsampling to the feature grid.
        masks = F.interpolate(masks[:, None], size=feat.shape[-2:])  # [B, 1, h, w]
        return masks[:, 0].to(torch.bool)

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
