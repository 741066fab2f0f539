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

# Double-Head and Mask Scoring R-CNN RoI heads (and their box / mask IoU heads).
from .bbox_heads import DoubleConvFCBBoxHead  # noqa: E402
from .double_roi_head import DoubleHeadRoIHead  # noqa: E402
from .mask_heads import MaskIoUHead  # noqa: E402
from .mask_scoring_roi_head import MaskScoringRoIHead  # noqa: E402

__all__ += ['DoubleConvFCBBoxHead', 'DoubleHeadRoIHead', 'MaskIoUHead', 'MaskScoringRoIHead']

# Cascade R-CNN.
from .cascade_roi_head import CascadeRoIHead  # noqa: E402

__all__ += ['CascadeRoIHead']

# Grid R-CNN's RoI head (and its grid head).
from .grid_roi_head import GridRoIHead  # noqa: E402
from .mask_heads import GridHead  # noqa: E402

__all__ += ['GridRoIHead', 'GridHead']
