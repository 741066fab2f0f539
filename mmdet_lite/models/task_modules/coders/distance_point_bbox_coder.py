"""Coder between boxes and the distances from a point to their four sides (FCOS, GFL...)."""
from typing import Optional, Sequence, Union

from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import (BaseBoxes, HorizontalBoxes, bbox2distance,
                                        distance2bbox, get_box_tensor)
from .base_bbox_coder import BaseBBoxCoder, _CoderShapeError

ShapeType = Union[Sequence[int], Tensor, Sequence[Sequence[int]]]


@TASK_UTILS.register_module()
class DistancePointBBoxCoder(BaseBBoxCoder):
    """Encode a box (x1, y1, x2, y2) as (left, top, right, bottom) distances from a point.

    Args:
        clip_border (bool): Clip decoded boxes to ``max_shape``. Defaults to True.
        use_box_type (bool): Wrap decoded boxes in ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self, clip_border: Optional[bool] = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clip_border = clip_border

    def encode(self,
               points: Tensor,
               gt_bboxes: Union[Tensor, BaseBoxes],
               max_dis: Optional[float] = None,
               eps: float = 0.1) -> Tensor:
        """Distances from ``points`` to the sides of ``gt_bboxes``.

        Args:
            points (Tensor): Points [N, 2] as (x, y).
            gt_bboxes (Tensor | BaseBoxes): Boxes [N, 4].
            max_dis (float, optional): Clamp distances to [0, max_dis - eps].
            eps (float): Keeps clamped targets strictly below ``max_dis``. Defaults to 0.1.

        Returns:
            Tensor: (left, top, right, bottom) distances [N, 4].
        """
        gt_bboxes = get_box_tensor(gt_bboxes)
        if points.size(0) != gt_bboxes.size(0):
            raise _CoderShapeError(f'points and gt_bboxes must have the same number of rows, '
                                   f'got {tuple(points.shape)} and {tuple(gt_bboxes.shape)}')
        if points.size(-1) != 2 or gt_bboxes.size(-1) != 4:
            raise _CoderShapeError(f'points must end in 2 and gt_bboxes in 4, got '
                                   f'{tuple(points.shape)} and {tuple(gt_bboxes.shape)}')
        return bbox2distance(points, gt_bboxes, max_dis, eps)

    def decode(self,
               points: Tensor,
               pred_bboxes: Tensor,
               max_shape: Optional[ShapeType] = None) -> Union[Tensor, BaseBoxes]:
        """Boxes from points and predicted side distances.

        Args:
            points (Tensor): Points [N, 2] or [B, N, 2].
            pred_bboxes (Tensor): (left, top, right, bottom) distances [N, 4] or [B, N, 4].
            max_shape (optional): (h, w[, c]) to clip to; for batched input also one shape
                per image (a list of B shapes or a [B, 2] tensor).

        Returns:
            Tensor | HorizontalBoxes: Boxes [N, 4] or [B, N, 4].
        """
        if points.size(0) != pred_bboxes.size(0):
            raise _CoderShapeError(f'points and pred_bboxes must have the same first dim, '
                                   f'got {tuple(points.shape)} and {tuple(pred_bboxes.shape)}')
        if points.size(-1) != 2 or pred_bboxes.size(-1) != 4:
            raise _CoderShapeError(f'points must end in 2 and pred_bboxes in 4, got '
                                   f'{tuple(points.shape)} and {tuple(pred_bboxes.shape)}')
        if self.clip_border is False:
            max_shape = None
        bboxes = distance2bbox(points, pred_bboxes, max_shape)
        if self.use_box_type:
            bboxes = HorizontalBoxes(bboxes)
        return bboxes
