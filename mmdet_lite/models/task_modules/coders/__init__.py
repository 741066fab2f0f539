"""Box coders: turn (prior, gt) pairs into regression targets and back."""
from .delta_xywh_bbox_coder import DeltaXYWHBBoxCoder

__all__ = ['DeltaXYWHBBoxCoder']
