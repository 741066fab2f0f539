"""Instance masks (bitmap and polygon), conversions and mask-head targets."""
from .base_masks import BaseInstanceMasks
from .bitmap_masks import BitmapMasks
from .mask_target import mask_target, mask_target_single
from .polygon_masks import PolygonMasks
from .utils import (bitmap_to_polygon, clip_polygon, encode_mask_results, mask2bbox,
                    polygon_area, polygon_to_bitmap, segmentation_to_bitmap)

__all__ = [
    'BaseInstanceMasks', 'BitmapMasks', 'PolygonMasks', 'mask_target', 'mask_target_single',
    'polygon_to_bitmap', 'bitmap_to_polygon', 'segmentation_to_bitmap', 'encode_mask_results',
    'mask2bbox', 'clip_polygon', 'polygon_area'
]
