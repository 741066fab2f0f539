"""Transformer layers of the DETR family and their building blocks."""
from .detr_layers import (DetrTransformerDecoder, DetrTransformerDecoderLayer,
                          DetrTransformerEncoder, DetrTransformerEncoderLayer)
from .utils import FFN, MultiheadAttention

__all__ = [
    'DetrTransformerEncoder', 'DetrTransformerEncoderLayer', 'DetrTransformerDecoder',
    'DetrTransformerDecoderLayer', 'FFN', 'MultiheadAttention'
]
