"""Dense heads: predict scores and boxes at every position of every feature level."""
from .anchor_head import AnchorHead
from .base_dense_head import BaseDenseHead
from .retina_head import RetinaHead
from .rpn_head import RPNHead

__all__ = ['BaseDenseHead', 'AnchorHead', 'RPNHead', 'RetinaHead']

# DETR head.
from .detr_head import DETRHead  # noqa: E402

__all__ += ['DETRHead']
