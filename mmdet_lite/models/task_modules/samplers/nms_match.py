"""Pure-torch ``nms_match`` (mmcv.ops.nms_match): NMS that records who suppressed whom."""
from typing import List, Union

import numpy as np
import torch
from torch import Tensor


class _DetsShapeError(ValueError, AssertionError):
    """Detections not of shape [N, 5] (mmcv asserts this)."""


def nms_match(dets: Union[Tensor, np.ndarray],
              iou_threshold: float) -> List[Union[Tensor, np.ndarray]]:
    """Group detections by greedy NMS: each kept box and the boxes it suppresses.

    Boxes are visited by descending score; a box not yet suppressed starts a group and
    suppresses every later unsuppressed box with IoU >= ``iou_threshold`` (areas are
    ``(x2 - x1) * (y2 - y1)``, no +1).

    Args:
        dets (Tensor | np.ndarray): Detections [N, 5] (x1, y1, x2, y2, score).
        iou_threshold (float): IoU at which a box is suppressed.

    Returns:
        list[Tensor | np.ndarray]: One long index array per group (kept box first, then the
        suppressed ones in score order), groups in score order of their kept box; the type
        follows ``dets``.
    """
    is_tensor = isinstance(dets, Tensor)
    groups: List[List[int]] = []
    if dets.shape[0] > 0:
        if dets.shape[-1] != 5:
            raise _DetsShapeError(f'inputs dets.shape should be (N, 5), but get {dets.shape}')
        boxes = (dets.detach().cpu() if is_tensor else torch.from_numpy(dets)).float()
        order = torch.sort(boxes[:, 4], descending=True, stable=True)[1]
        x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        areas = (x2 - x1) * (y2 - y1)
        inter_w = (torch.minimum(x2[:, None], x2[None]) -
                   torch.maximum(x1[:, None], x1[None])).clamp(min=0)
        inter_h = (torch.minimum(y2[:, None], y2[None]) -
                   torch.maximum(y1[:, None], y1[None])).clamp(min=0)
        inter = inter_w * inter_h
        iou = inter / (areas[:, None] + areas[None] - inter)  # [N, N]
        suppressed = torch.zeros(len(boxes), dtype=torch.bool)
        order_list = order.tolist()
        for pos, i in enumerate(order_list):
            if suppressed[i]:
                continue
            later = order[pos + 1:]
            hit = later[(~suppressed[later]) & (iou[i, later] >= iou_threshold)]
            suppressed[hit] = True
            groups.append([i] + hit.tolist())
    if is_tensor:
        return [dets.new_tensor(g, dtype=torch.long) for g in groups]
    return [np.array(g, dtype=int) for g in groups]
