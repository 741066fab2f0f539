"""Box utilities on plain (x1, y1, x2, y2) tensors / arrays."""
from .bbox_overlaps import bbox_overlaps
from .transforms import (bbox2distance, bbox2roi, bbox_cxcywh_to_xyxy, bbox_flip,
                         bbox_mapping_back, bbox_project, bbox_rescale, bbox_xyxy_to_cxcywh,
                         distance2bbox, empty_box_as, get_box_tensor, get_box_wh, roi2bbox,
                         scale_boxes)

__all__ = [
    'bbox_overlaps', 'bbox_xyxy_to_cxcywh', 'bbox_cxcywh_to_xyxy', 'bbox_flip', 'bbox_rescale',
    'scale_boxes', 'bbox_project', 'bbox_mapping_back', 'bbox2roi', 'roi2bbox', 'get_box_tensor',
    'get_box_wh', 'empty_box_as', 'bbox2distance', 'distance2bbox'
]
