"""Evaluation helpers shared by the metrics."""
from .bbox_overlaps import bbox_overlaps
from .coco_utils import (gt_to_coco_dict, masks_to_original_shape, results_to_coco,
                         sample_to_gt_dict, xyxy_to_xywh)
from .mean_ap import average_precision, eval_map, print_map_summary
from .recall import eval_recalls, print_recall_summary

__all__ = [
    'bbox_overlaps',
    'gt_to_coco_dict', 'masks_to_original_shape', 'results_to_coco',
    'sample_to_gt_dict', 'xyxy_to_xywh',
    'average_precision', 'eval_map', 'print_map_summary', 'eval_recalls',
    'print_recall_summary'
]
