"""Per-class NMS over the boxes of one image (the last step of a detector's predict)."""
from typing import Tuple

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from mmdet_lite.utils import ConfigType


def multiclass_nms(multi_bboxes: Tensor,
                   multi_scores: Tensor,
                   score_thr: float,
                   nms_cfg: ConfigType,
                   max_num: int = -1) -> Tuple[Tensor, Tensor, Tensor]:
    """Keep, for every class separately, the highest-scoring boxes that survive NMS.

    Args:
        multi_bboxes (Tensor): [N, C*4] class-specific boxes, or [N, 4] shared by all classes.
        multi_scores (Tensor): [N, C+1] class scores; the last column is the background and
            is ignored (mmdetection's layout).
        score_thr (float): Boxes scoring at or below it are dropped before NMS.
        nms_cfg (dict): ``dict(type='nms', iou_threshold=0.5)``; ``class_agnostic=True``
            suppresses across classes too.
        max_num (int): Detections kept after NMS, best first; -1 keeps all.

    Returns:
        tuple: ``bboxes`` [M, 4], ``scores`` [M] and ``labels`` [M] (int64, 0..C-1),
        sorted by decreasing score.
    """
    num_classes = multi_scores.size(1) - 1
    if multi_bboxes.size(1) > 4:
        bboxes = multi_bboxes.view(multi_scores.size(0), -1, 4)  # [N, C, 4]
    else:
        bboxes = multi_bboxes[:, None].expand(multi_scores.size(0), num_classes, 4)
    scores = multi_scores[:, :-1]  # [N, C]
    labels = torch.arange(num_classes, device=scores.device).expand_as(scores)

    # Flatten (box, class) pairs, then drop the low scores before the costly NMS.
    bboxes, scores, labels = bboxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    keep = scores > score_thr
    bboxes, scores, labels = bboxes[keep], scores[keep], labels[keep]
    if bboxes.numel() == 0:
        return bboxes, scores, labels

    nms_type = nms_cfg.get('type', 'nms')
    if nms_type != 'nms':
        raise ValueError(f"nms.type must be 'nms', got {nms_type!r}")
    # mmcv's ``class_agnostic`` option: one NMS over all classes instead of one per class.
    groups = torch.zeros_like(labels) if nms_cfg.get('class_agnostic', False) else labels
    keep = batched_nms(bboxes, scores, groups, nms_cfg['iou_threshold'])  # sorted by score
    if max_num > 0:
        keep = keep[:max_num]
    return bboxes[keep], scores[keep], labels[keep]
