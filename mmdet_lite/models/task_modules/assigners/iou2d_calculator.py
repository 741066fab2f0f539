"""IoU calculator used by assigners (``iou_calculator=dict(type='BboxOverlaps2D')``)."""
from typing import Optional, Union

import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes, BoxValueError, bbox_overlaps, get_box_tensor


def _strip_score(bboxes: Union[Tensor, BaseBoxes], name: str) -> Tensor:
    """Accept [N, 4] boxes (tensor or box object), or [N, 5] with a trailing score (dropped)."""
    bboxes = get_box_tensor(bboxes)
    if bboxes.size(-1) not in (0, 4, 5):
        raise BoxValueError(f'{name} must have 4 or 5 values per box, '
                            f'but got {tuple(bboxes.shape)}')
    return bboxes[..., :4] if bboxes.size(-1) == 5 else bboxes


@TASK_UTILS.register_module()
class BboxOverlaps2D:
    """2D overlaps (IoU / IoF / GIoU) between two sets of boxes.

    Args:
        scale (float): Boxes are divided by ``scale`` before a float16 computation, to keep
            areas in range. Defaults to 1.
        dtype (str, optional): ``'fp16'`` to compute in half precision. Defaults to None.
    """

    def __init__(self, scale: float = 1., dtype: Optional[str] = None) -> None:
        self.scale = scale
        self.dtype = dtype

    def __call__(self,
                 bboxes1: Union[Tensor, BaseBoxes],
                 bboxes2: Union[Tensor, BaseBoxes],
                 mode: str = 'iou',
                 is_aligned: bool = False) -> Tensor:
        """Overlaps between ``bboxes1`` [M, 4 or 5] and ``bboxes2`` [N, 4 or 5].

        Args:
            bboxes1 (Tensor | BaseBoxes): Boxes [M, 4], or [M, 5] with scores (ignored).
            bboxes2 (Tensor | BaseBoxes): Boxes [N, 4], or [N, 5] with scores (ignored).
            mode (str): ``'iou'``, ``'iof'`` or ``'giou'``.
            is_aligned (bool): Compare row i with row i only.

        Returns:
            Tensor: [M, N], or [M] when aligned.
        """
        bboxes1 = _strip_score(bboxes1, 'bboxes1')
        bboxes2 = _strip_score(bboxes2, 'bboxes2')
        if self.dtype == 'fp16':
            overlaps = bbox_overlaps((bboxes1 / self.scale).half(),
                                     (bboxes2 / self.scale).half(), mode, is_aligned)
            return overlaps.float() if not overlaps.is_cuda else overlaps
        return bbox_overlaps(bboxes1, bboxes2, mode, is_aligned)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(scale={self.scale}, dtype={self.dtype})'


@TASK_UTILS.register_module()
class BboxOverlaps2D_GLIP(BboxOverlaps2D):  # noqa: N801 (mmdetection's registered name)
    """Pairwise IoU in the "+1 pixel" convention of GLIP.

    Widths and heights count both end pixels (``x2 - x1 + 1``), as GLIP's original code
    does, so the IoUs differ slightly from ``BboxOverlaps2D`` for small boxes. Only the
    pairwise IoU is provided; ``mode`` and ``is_aligned`` are accepted and not used.
    """

    def __call__(self,
                 bboxes1: Union[Tensor, BaseBoxes],
                 bboxes2: Union[Tensor, BaseBoxes],
                 mode: str = 'iou',
                 is_aligned: bool = False) -> Tensor:
        """IoU [M, N] between ``bboxes1`` [M, 4] and ``bboxes2`` [N, 4] (x1, y1, x2, y2)."""
        bboxes1 = get_box_tensor(bboxes1)
        bboxes2 = get_box_tensor(bboxes2)
        wh1 = bboxes1[:, 2:4] - bboxes1[:, :2] + 1
        wh2 = bboxes2[:, 2:4] - bboxes2[:, :2] + 1
        area1 = wh1[:, 0] * wh1[:, 1]  # [M]
        area2 = wh2[:, 0] * wh2[:, 1]  # [N]
        top_left = torch.max(bboxes1[:, None, :2], bboxes2[None, :, :2])  # [M, N, 2]
        bottom_right = torch.min(bboxes1[:, None, 2:4], bboxes2[None, :, 2:4])
        inter_wh = (bottom_right - top_left + 1).clamp(min=0)
        inter = inter_wh[..., 0] * inter_wh[..., 1]  # [M, N]
        return inter / (area1[:, None] + area2[None, :] - inter)
