"""MMDetection V1.x delta coder: like DeltaXYWHBBoxCoder but with the ``+ 1`` pixel sizes."""
import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes, HorizontalBoxes, get_box_tensor
from .base_bbox_coder import BaseBBoxCoder, _CoderShapeError

ShapeType = Union[Sequence[int], Tensor]


@TASK_UTILS.register_module()
class LegacyDeltaXYWHBBoxCoder(BaseBBoxCoder):
    """(dx, dy, dw, dh) coder of MMDetection V1.x, for testing V1.x models.

    Widths and heights are ``x2 - x1 + 1`` (integer pixel convention), and decoded boxes
    are clipped to ``[0, w - 1] x [0, h - 1]``.

    Args:
        target_means (Sequence[float]): Means of the deltas. Defaults to zeros.
        target_stds (Sequence[float]): Standard deviations of the deltas. Defaults to ones.
        use_box_type (bool): Wrap decoded boxes in ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self,
                 target_means: Sequence[float] = (0., 0., 0., 0.),
                 target_stds: Sequence[float] = (1., 1., 1., 1.),
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.means = target_means
        self.stds = target_stds

    def encode(self, bboxes: Union[Tensor, BaseBoxes],
               gt_bboxes: Union[Tensor, BaseBoxes]) -> Tensor:
        """Normalized deltas [N, 4] from ``bboxes`` [N, 4] to ``gt_bboxes`` [N, 4]."""
        bboxes, gt_bboxes = get_box_tensor(bboxes), get_box_tensor(gt_bboxes)
        if bboxes.size(0) != gt_bboxes.size(0):
            raise _CoderShapeError(f'bboxes and gt_bboxes must have the same number of boxes, '
                                   f'got {tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        if bboxes.size(-1) != 4 or gt_bboxes.size(-1) != 4:
            raise _CoderShapeError(f'bboxes and gt_bboxes must end in 4, got '
                                   f'{tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        return legacy_bbox2delta(bboxes, gt_bboxes, self.means, self.stds)

    def decode(self,
               bboxes: Union[Tensor, BaseBoxes],
               pred_bboxes: Tensor,
               max_shape: Optional[ShapeType] = None,
               wh_ratio_clip: Optional[float] = 16 / 1000) -> Union[Tensor, BaseBoxes]:
        """Apply deltas [N, 4 * C] to ``bboxes`` [N, 4].

        Args:
            bboxes (Tensor | BaseBoxes): Priors [N, 4].
            pred_bboxes (Tensor): Deltas [N, 4 * C].
            max_shape (tuple, optional): (h, w[, c]); boxes are clipped to [0, w-1] x [0, h-1].
            wh_ratio_clip (float): dw/dh are clamped to ``±|log(wh_ratio_clip)|``.

        Returns:
            Tensor | HorizontalBoxes: Boxes [N, 4 * C].
        """
        bboxes = get_box_tensor(bboxes)
        if pred_bboxes.size(0) != bboxes.size(0):
            raise _CoderShapeError(f'pred_bboxes and bboxes must have the same first dim, '
                                   f'got {tuple(pred_bboxes.shape)} and {tuple(bboxes.shape)}')
        decoded = legacy_delta2bbox(bboxes, pred_bboxes, self.means, self.stds, max_shape,
                                    wh_ratio_clip)
        if self.use_box_type:
            if decoded.size(-1) != 4:
                raise _CoderShapeError('use_box_type needs class-agnostic deltas ending in 4, '
                                       f'but got {tuple(decoded.shape)}')
            decoded = HorizontalBoxes(decoded)
        return decoded


def legacy_bbox2delta(proposals: Tensor,
                      gt: Tensor,
                      means: Sequence[float] = (0., 0., 0., 0.),
                      stds: Sequence[float] = (1., 1., 1., 1.)) -> Tensor:
    """Deltas of ``gt`` w.r.t. ``proposals`` (both [N, ..., 4]) with ``+ 1`` sizes.

    Returns:
        Tensor: Normalized (dx, dy, dw, dh), same shape as the inputs.
    """
    if proposals.size() != gt.size():
        raise _CoderShapeError(f'proposals and gt must have the same shape, got '
                               f'{tuple(proposals.shape)} and {tuple(gt.shape)}')
    proposals, gt = proposals.float(), gt.float()
    p_ctr = (proposals[..., :2] + proposals[..., 2:]) * 0.5
    p_wh = proposals[..., 2:] - proposals[..., :2] + 1.0
    g_ctr = (gt[..., :2] + gt[..., 2:]) * 0.5
    g_wh = gt[..., 2:] - gt[..., :2] + 1.0
    deltas = torch.cat([(g_ctr - p_ctr) / p_wh, torch.log(g_wh / p_wh)], dim=-1)
    return (deltas - deltas.new_tensor(means)) / deltas.new_tensor(stds)


def legacy_delta2bbox(rois: Tensor,
                      deltas: Tensor,
                      means: Sequence[float] = (0., 0., 0., 0.),
                      stds: Sequence[float] = (1., 1., 1., 1.),
                      max_shape: Optional[ShapeType] = None,
                      wh_ratio_clip: float = 16 / 1000) -> Tensor:
    """Apply deltas [N, 4 * C] to rois [N, 4] with ``+ 1`` sizes; inverse of
    :func:`legacy_bbox2delta`.

    Returns:
        Tensor: Boxes [N, 4 * C], clipped to ``[0, w - 1] x [0, h - 1]`` with ``max_shape``.
    """
    num_classes = deltas.size(1) // 4
    d = deltas.reshape(deltas.size(0), num_classes, 4)
    d = d * d.new_tensor(stds) + d.new_tensor(means)
    max_ratio = abs(math.log(wh_ratio_clip))
    dwh = d[..., 2:].clamp(min=-max_ratio, max=max_ratio)
    p_ctr = ((rois[:, :2] + rois[:, 2:]) * 0.5)[:, None, :]  # [N, 1, 2]
    p_wh = (rois[:, 2:] - rois[:, :2] + 1.0)[:, None, :]
    g_wh = p_wh * dwh.exp()
    g_ctr = p_ctr + p_wh * d[..., :2]
    x1y1 = g_ctr - g_wh * 0.5
    x2y2 = g_ctr + g_wh * 0.5
    if max_shape is not None:
        # V1.x pixel convention: the last valid coordinate is size - 1.
        hi = torch.stack([torch.as_tensor(max_shape[1] - 1), torch.as_tensor(max_shape[0] - 1)])
        hi = hi.to(x1y1)
        x1y1 = torch.minimum(x1y1.clamp(min=0), hi)
        x2y2 = torch.minimum(x2y2.clamp(min=0), hi)
    return torch.cat([x1y1, x2y2], dim=-1).view_as(deltas)
