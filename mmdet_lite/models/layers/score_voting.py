"""Score voting (PAA): refine each box kept by NMS with the pre-NMS candidates around it.

NMS keeps one box per object and throws its neighbours away, although they also say where the
object is. Score voting replaces each kept box by the average of the same-class candidates
that overlap it, each weighted by its score and by how close it is to the kept box::

    box_k = sum_m w_km * cand_m / sum_m w_km,  w_km = exp(-(1 - IoU_km)**2 / 0.025) * score_m

over the candidates ``m`` of the detection's class with ``IoU_km > 0.01`` (0.025 and 0.01 as in
the paper's code). The detection keeps its score.
"""
from typing import Tuple

import torch
from torch import Tensor

from mmdet_lite.structures.bbox import bbox_overlaps


def score_voting(det_bboxes: Tensor, det_labels: Tensor, mlvl_bboxes: Tensor,
                 mlvl_nms_scores: Tensor, score_thr: float,
                 num_classes: int) -> Tuple[Tensor, Tensor]:
    """Replace each detection's box by a vote of the candidate boxes of its class.

    Candidates are all pre-NMS (box, class) pairs scoring above ``score_thr``.

    Args:
        det_bboxes (Tensor): Detections after NMS [K, 5], (x1, y1, x2, y2, score).
        det_labels (Tensor): Their labels [K].
        mlvl_bboxes (Tensor): All boxes before NMS [N, 4].
        mlvl_nms_scores (Tensor): Their scores [N, C + 1] (last column background).
        score_thr (float): Score a candidate must exceed.
        num_classes (int): Classes to vote over (0 .. num_classes - 1).

    Returns:
        tuple[Tensor, Tensor]: Voted detections [K', 5] and their labels [K'], ordered by
        class, then as in the input.
    """
    cand_rows, cand_labels = (mlvl_nms_scores > score_thr).nonzero(as_tuple=True)
    cand_bboxes = mlvl_bboxes[cand_rows]  # [M, 4]
    cand_scores = mlvl_nms_scores[cand_rows, cand_labels]  # [M]
    voted_bboxes, voted_labels = [], []
    for cls in range(num_classes):
        in_cls = cand_labels == cls
        if not in_cls.any():
            continue
        cls_dets = det_bboxes[det_labels == cls]  # [K_c, 5]
        cls_cand_bboxes = cand_bboxes[in_cls]  # [M_c, 4]
        ious = bbox_overlaps(cls_dets[:, :4], cls_cand_bboxes)  # [K_c, M_c]
        votes = torch.exp(-(1 - ious)**2 / 0.025) * cand_scores[in_cls]
        votes = votes * (ious > 0.01)
        boxes = (votes @ cls_cand_bboxes) / votes.sum(dim=1, keepdim=True)  # [K_c, 4]
        voted_bboxes.append(torch.cat([boxes, cls_dets[:, -1:]], dim=1))
        voted_labels.append(det_labels.new_full((len(cls_dets), ), cls))
    return torch.cat(voted_bboxes), torch.cat(voted_labels)
