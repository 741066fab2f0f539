"""Small helpers shared by heads and detectors."""
from .misc import (batched_nms, empty_instances, filter_scores_and_topk, images_to_levels,
                   select_single_mlvl, sigmoid_geometric_mean, unmap, unpack_gt_instances)

__all__ = [
    'batched_nms', 'empty_instances', 'filter_scores_and_topk', 'images_to_levels',
    'select_single_mlvl', 'sigmoid_geometric_mean', 'unmap', 'unpack_gt_instances'
]
