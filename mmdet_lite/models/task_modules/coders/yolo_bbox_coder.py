"""YOLO (v3) coder: centre offsets inside a grid cell plus log size ratios."""
from typing import Union

import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes, HorizontalBoxes, get_box_tensor
from .base_bbox_coder import BaseBBoxCoder, _CoderShapeError


@TASK_UTILS.register_module()
class YOLOBBoxCoder(BaseBBoxCoder):
    """Encode a gt box relative to an anchor as (cx, cy, dw, dh).

    ``cx = (gt_cx - anchor_cx) / stride + 0.5`` (same for y), clamped to [eps, 1 - eps], so a
    centre inside the anchor's cell maps to (0, 1); ``dw = log(gt_w / anchor_w)`` and
    ``dh = log(gt_h / anchor_h)``, the ratios clamped to at least ``eps``.

    Args:
        eps (float): Lower clamp of the centre targets and size ratios. Defaults to 1e-6.
        use_box_type (bool): Wrap decoded boxes in ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self, eps: float = 1e-6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.eps = eps

    def encode(self, bboxes: Union[Tensor, BaseBoxes], gt_bboxes: Union[Tensor, BaseBoxes],
               stride: Union[Tensor, int]) -> Tensor:
        """Targets (cx, cy, dw, dh) for the anchors ``bboxes``.

        Args:
            bboxes (Tensor | BaseBoxes): Anchors [N, 4].
            gt_bboxes (Tensor | BaseBoxes): Matched gt boxes [N, 4].
            stride (Tensor | int): Stride of each anchor ([N]) or of all of them.

        Returns:
            Tensor: Targets [N, 4].
        """
        bboxes, gt_bboxes = get_box_tensor(bboxes), get_box_tensor(gt_bboxes)
        if bboxes.size(0) != gt_bboxes.size(0):
            raise _CoderShapeError(f'bboxes and gt_bboxes must have the same number of boxes, '
                                   f'got {tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        if bboxes.size(-1) != 4 or gt_bboxes.size(-1) != 4:
            raise _CoderShapeError(f'bboxes and gt_bboxes must end in 4, got '
                                   f'{tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        # x and y separately: ``stride`` broadcasts against the [N] centre coordinates.
        gt_cx = (gt_bboxes[..., 0] + gt_bboxes[..., 2]) * 0.5
        gt_cy = (gt_bboxes[..., 1] + gt_bboxes[..., 3]) * 0.5
        cx = (bboxes[..., 0] + bboxes[..., 2]) * 0.5
        cy = (bboxes[..., 1] + bboxes[..., 3]) * 0.5
        w_ratio = (gt_bboxes[..., 2] - gt_bboxes[..., 0]) / (bboxes[..., 2] - bboxes[..., 0])
        h_ratio = (gt_bboxes[..., 3] - gt_bboxes[..., 1]) / (bboxes[..., 3] - bboxes[..., 1])
        return torch.stack([
            ((gt_cx - cx) / stride + 0.5).clamp(self.eps, 1 - self.eps),
            ((gt_cy - cy) / stride + 0.5).clamp(self.eps, 1 - self.eps),
            torch.log(w_ratio.clamp(min=self.eps)),
            torch.log(h_ratio.clamp(min=self.eps)),
        ], dim=-1)

    def decode(self, bboxes: Union[Tensor, BaseBoxes], pred_bboxes: Tensor,
               stride: Union[Tensor, int]) -> Union[Tensor, BaseBoxes]:
        """Boxes from anchors and predicted (cx, cy, dw, dh).

        Args:
            bboxes (Tensor | BaseBoxes): Anchors [..., 4].
            pred_bboxes (Tensor): Predictions [..., 4] (centres already in (0, 1)).
            stride (Tensor | int): Strides broadcastable to [..., 2] (e.g. [N, 1]), or one int.

        Returns:
            Tensor | HorizontalBoxes: Boxes [..., 4].
        """
        bboxes = get_box_tensor(bboxes)
        if pred_bboxes.size(-1) != 4 or bboxes.size(-1) != 4:
            raise _CoderShapeError(f'pred_bboxes and bboxes must end in 4, got '
                                   f'{tuple(pred_bboxes.shape)} and {tuple(bboxes.shape)}')
        # ``stride`` multiplies the [..., 2] centre offsets as given (YOLOV3Head passes [N, 1]).
        ctr = (bboxes[..., :2] + bboxes[..., 2:]) * 0.5 + (pred_bboxes[..., :2] - 0.5) * stride
        half_wh = (bboxes[..., 2:] - bboxes[..., :2]) * 0.5 * pred_bboxes[..., 2:].exp()
        decoded = torch.cat([ctr - half_wh, ctr + half_wh], dim=-1)
        if self.use_box_type:
            decoded = HorizontalBoxes(decoded)
        return decoded
