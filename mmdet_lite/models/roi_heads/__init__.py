"""Second-stage (RoI) heads."""
from .base_roi_head import BaseRoIHead
from .bbox_heads import BBoxHead, ConvFCBBoxHead, Shared2FCBBoxHead, Shared4Conv1FCBBoxHead
from .mask_heads import FCNMaskHead
from .roi_extractors import SingleRoIExtractor
from .shared_heads import ResLayer
from .standard_roi_head import StandardRoIHead

__all__ = [
    'BaseRoIHead', 'BBoxHead', 'ConvFCBBoxHead', 'Shared2FCBBoxHead', 'Shared4Conv1FCBBoxHead',
    'FCNMaskHead', 'SingleRoIExtractor', 'ResLayer', 'StandardRoIHead'
]
