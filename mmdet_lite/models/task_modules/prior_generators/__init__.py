"""Prior (anchor / point) generators."""
from .anchor_generator import AnchorGenerator
from .legacy_anchor_generator import LegacyAnchorGenerator
from .point_generator import MlvlPointGenerator, PointGenerator
from .ssd_anchor_generator import LegacySSDAnchorGenerator, SSDAnchorGenerator
from .utils import anchor_inside_flags, calc_region
from .yolo_anchor_generator import YOLOAnchorGenerator

__all__ = [
    'AnchorGenerator', 'LegacyAnchorGenerator', 'anchor_inside_flags', 'PointGenerator',
    'calc_region', 'YOLOAnchorGenerator', 'MlvlPointGenerator', 'SSDAnchorGenerator',
    'LegacySSDAnchorGenerator'
]
