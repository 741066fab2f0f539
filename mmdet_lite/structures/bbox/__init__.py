"""Box types (``BaseBoxes``, ``HorizontalBoxes``), their registry, and box utilities on plain
(x1, y1, x2, y2) tensors / arrays."""
from .base_boxes import BaseBoxes, BoxValueError
from .bbox_overlaps import bbox_overlaps
from .box_type import (autocast_box_type, box_converters, box_types, convert_box_type,
                       get_box_type, register_box, register_box_converter)
from .horizontal_boxes import HorizontalBoxes
from .transforms import (bbox2distance, bbox2roi, bbox_cxcywh_to_xyxy, bbox_flip,
                         bbox_mapping_back, bbox_project, bbox_rescale, bbox_xyxy_to_cxcywh,
                         cat_boxes, distance2bbox, empty_box_as, get_box_tensor, get_box_wh,
                         roi2bbox, scale_boxes, stack_boxes)

__all__ = [
    'bbox_overlaps', 'bbox_xyxy_to_cxcywh', 'bbox_cxcywh_to_xyxy', 'bbox_flip', 'bbox_rescale',
    'scale_boxes', 'bbox_project', 'bbox_mapping_back', 'bbox2roi', 'roi2bbox', 'get_box_tensor',
    'get_box_wh', 'empty_box_as', 'bbox2distance', 'distance2bbox', 'cat_boxes', 'stack_boxes',
    'BaseBoxes', 'BoxValueError', 'HorizontalBoxes', 'register_box', 'register_box_converter',
    'get_box_type', 'convert_box_type', 'autocast_box_type', 'box_types', 'box_converters'
]
