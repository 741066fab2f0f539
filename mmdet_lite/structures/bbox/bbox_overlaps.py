"""Pairwise and aligned overlaps (IoU, IoF, GIoU) between sets of (x1, y1, x2, y2) boxes."""
from typing import Union

import torch
from torch import Tensor

from .base_boxes import BaseBoxes, BoxValueError

_MODES = ('iou', 'iof', 'giou')


def _check_boxes(boxes: Tensor, name: str) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f'{name} must be a torch.Tensor, but got {type(boxes).__name__}')
    if boxes.dim() < 2 or boxes.size(-1) != 4:
        if not (boxes.numel() == 0 and boxes.dim() >= 1):
            raise BoxValueError(f'{name} must have shape [..., N, 4], '
                                f'but got {tuple(boxes.shape)}')


def bbox_overlaps(bboxes1: Union[Tensor, BaseBoxes],
                  bboxes2: Union[Tensor, BaseBoxes],
                  mode: str = 'iou',
                  is_aligned: bool = False,
                  eps: float = 1e-6) -> Tensor:
    """Compute overlaps between two sets of boxes.

    ``iou`` is intersection over union, ``iof`` is intersection over the area of the box in
    ``bboxes1`` (the "foreground"), ``giou`` is generalized IoU (in [-1, 1]).
    Leading batch dimensions broadcast against each other like ordinary torch ops.

    Args:
        bboxes1 (Tensor | BaseBoxes): Boxes of shape [..., M, 4] in (x1, y1, x2, y2) format,
            or empty. A box object stands for its ``.tensor``.
        bboxes2 (Tensor | BaseBoxes): Boxes of shape [..., N, 4] in (x1, y1, x2, y2) format,
            or empty. A box object stands for its ``.tensor``.
        mode (str): One of ``'iou'``, ``'iof'``, ``'giou'``. Defaults to ``'iou'``.
        is_aligned (bool): If True, compare ``bboxes1[i]`` with ``bboxes2[i]`` only; M must
            equal N. Defaults to False.
        eps (float): Lower bound of the denominators, for numerical stability.

    Returns:
        Tensor: Overlaps of shape [..., M, N], or [..., M] when ``is_aligned``.

    Example:
        >>> a = torch.tensor([[0., 0., 10., 10.]])
        >>> b = torch.tensor([[5., 0., 15., 10.]])
        >>> bbox_overlaps(a, b)  # 50 / 150
        tensor([[0.3333]])
    """
    if mode not in _MODES:
        raise BoxValueError(f'bbox_overlaps mode must be one of {_MODES}, but got {mode!r}')
    if isinstance(bboxes1, BaseBoxes):
        bboxes1 = bboxes1.tensor
    if isinstance(bboxes2, BaseBoxes):
        bboxes2 = bboxes2.tensor
    _check_boxes(bboxes1, 'bboxes1')
    _check_boxes(bboxes2, 'bboxes2')
    # Let an empty 1-D tensor stand for "no boxes".
    if bboxes1.dim() == 1:
        bboxes1 = bboxes1.reshape(0, 4)
    if bboxes2.dim() == 1:
        bboxes2 = bboxes2.reshape(0, 4)

    rows, cols = bboxes1.size(-2), bboxes2.size(-2)
    if is_aligned and rows != cols:
        raise BoxValueError('bbox_overlaps with is_aligned=True needs the same number of '
                            f'boxes, but got {rows} and {cols}')
    try:
        batch_shape = torch.broadcast_shapes(bboxes1.shape[:-2], bboxes2.shape[:-2])
    except RuntimeError as err:
        raise BoxValueError('bbox_overlaps batch dims of bboxes1 '
                            f'{tuple(bboxes1.shape[:-2])} and bboxes2 '
                            f'{tuple(bboxes2.shape[:-2])} do not broadcast') from err

    if rows * cols == 0:
        out_shape = (rows, ) if is_aligned else (rows, cols)
        return bboxes1.new_zeros(batch_shape + out_shape)

    area1 = (bboxes1[..., 2] - bboxes1[..., 0]) * (bboxes1[..., 3] - bboxes1[..., 1])
    area2 = (bboxes2[..., 2] - bboxes2[..., 0]) * (bboxes2[..., 3] - bboxes2[..., 1])

    if is_aligned:
        b1, b2 = bboxes1, bboxes2  # [..., M, 4] each
        a1, a2 = area1, area2  # [..., M]
    else:
        b1 = bboxes1[..., :, None, :]  # [..., M, 1, 4]
        b2 = bboxes2[..., None, :, :]  # [..., 1, N, 4]
        a1, a2 = area1[..., :, None], area2[..., None, :]  # [..., M, 1], [..., 1, N]

    lt = torch.max(b1[..., :2], b2[..., :2])
    rb = torch.min(b1[..., 2:], b2[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]  # [..., M, N] or [..., M]

    union = a1 + a2 - overlap if mode in ('iou', 'giou') else a1 + torch.zeros_like(overlap)
    union = union.clamp(min=eps)
    ious = overlap / union
    if mode != 'giou':
        return ious

    enclose_lt = torch.min(b1[..., :2], b2[..., :2])
    enclose_rb = torch.max(b1[..., 2:], b2[..., 2:])
    enclose_wh = (enclose_rb - enclose_lt).clamp(min=0)
    enclose_area = (enclose_wh[..., 0] * enclose_wh[..., 1]).clamp(min=eps)
    return ious - (enclose_area - union) / enclose_area
