"""Second-stage box heads."""
from .bbox_head import BBoxHead
from .convfc_bbox_head import ConvFCBBoxHead, Shared2FCBBoxHead, Shared4Conv1FCBBoxHead

__all__ = ['BBoxHead', 'ConvFCBBoxHead', 'Shared2FCBBoxHead', 'Shared4Conv1FCBBoxHead']

# Double-Head R-CNN's box head.
from .double_bbox_head import DoubleConvFCBBoxHead  # noqa: E402

__all__ += ['DoubleConvFCBBoxHead']
