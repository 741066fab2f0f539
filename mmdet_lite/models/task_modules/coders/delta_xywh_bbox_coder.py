"""Box coder that regresses normalized centre offsets and log size ratios (R-CNN deltas)."""
import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes, HorizontalBoxes, get_box_tensor
from .base_bbox_coder import BaseBBoxCoder, _CoderShapeError

ShapeType = Union[Sequence[int], Tensor, Sequence[Sequence[int]]]


@TASK_UTILS.register_module()
class DeltaXYWHBBoxCoder(BaseBBoxCoder):
    """Encode a box relative to a prior as (dx, dy, dw, dh), and decode it back.

    With prior centre (px, py) and size (pw, ph) (``pw = x2 - x1``, no +1) and target
    (gx, gy, gw, gh): ``dx = (gx - px) / pw``, ``dy = (gy - py) / ph``, ``dw = log(gw / pw)``,
    ``dh = log(gh / ph)``; then normalized as ``(delta - target_means) / target_stds``.

    Args:
        target_means (Sequence[float]): Means of the deltas. Defaults to zeros.
        target_stds (Sequence[float]): Standard deviations of the deltas. Defaults to ones.
        clip_border (bool): Clip decoded boxes to the image when ``max_shape`` is given.
        add_ctr_clamp (bool): Clamp the decoded centre shift to ``ctr_clamp`` pixels (and only
            the upper side of dw/dh), as in YOLOF. Defaults to False.
        ctr_clamp (int): Maximum centre shift in pixels with ``add_ctr_clamp``. Defaults to 32.
        use_box_type (bool): Return decoded boxes as ``HorizontalBoxes`` instead of a
            tensor. Defaults to False.
    """

    def __init__(self,
                 target_means: Sequence[float] = (0., 0., 0., 0.),
                 target_stds: Sequence[float] = (1., 1., 1., 1.),
                 clip_border: bool = True,
                 add_ctr_clamp: bool = False,
                 ctr_clamp: int = 32,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if len(target_means) != 4 or len(target_stds) != 4:
            # mmdetection fails on these later, inside encode/decode; say why up front.
            raise ValueError(f'target_means and target_stds need 4 values each, but got '
                             f'{target_means} and {target_stds}')
        self.means = tuple(float(m) for m in target_means)
        self.stds = tuple(float(s) for s in target_stds)
        self.clip_border = clip_border
        self.add_ctr_clamp = add_ctr_clamp
        self.ctr_clamp = ctr_clamp

    def encode(self, bboxes: Union[Tensor, BaseBoxes],
               gt_bboxes: Union[Tensor, BaseBoxes]) -> Tensor:
        """Regression targets that turn ``bboxes`` into ``gt_bboxes``.

        Args:
            bboxes (Tensor | BaseBoxes): Priors / proposals [N, 4] (or [..., N, 4]).
            gt_bboxes (Tensor | BaseBoxes): Matched ground-truth boxes, same shape.

        Returns:
            Tensor: Normalized deltas (dx, dy, dw, dh), same shape.
        """
        bboxes, gt_bboxes = get_box_tensor(bboxes), get_box_tensor(gt_bboxes)
        if bboxes.size(0) != gt_bboxes.size(0):
            raise _CoderShapeError(f'bboxes and gt_bboxes must have the same number of boxes, '
                                   f'but got {tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        if bboxes.size(-1) != 4 or gt_bboxes.size(-1) != 4:
            raise _CoderShapeError(f'bboxes and gt_bboxes must end in 4 coordinates, but got '
                                   f'{tuple(bboxes.shape)} and {tuple(gt_bboxes.shape)}')
        bboxes, gt_bboxes = bboxes.float(), gt_bboxes.float()
        pw = bboxes[..., 2] - bboxes[..., 0]
        ph = bboxes[..., 3] - bboxes[..., 1]
        px = bboxes[..., 0] + 0.5 * pw
        py = bboxes[..., 1] + 0.5 * ph
        gw = gt_bboxes[..., 2] - gt_bboxes[..., 0]
        gh = gt_bboxes[..., 3] - gt_bboxes[..., 1]
        gx = gt_bboxes[..., 0] + 0.5 * gw
        gy = gt_bboxes[..., 1] + 0.5 * gh
        deltas = torch.stack(
            [(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self,
               bboxes: Union[Tensor, BaseBoxes],
               pred_bboxes: Tensor,
               max_shape: Optional[ShapeType] = None,
               wh_ratio_clip: float = 16 / 1000) -> Union[Tensor, BaseBoxes]:
        """Apply predicted deltas to ``bboxes``.

        Args:
            bboxes (Tensor | BaseBoxes): Priors [N, 4], or batched [B, N, 4].
            pred_bboxes (Tensor): Deltas [N, 4 * C] (C = 1, or one box per class), or
                batched [B, N, 4 * C].
            max_shape (tuple | Tensor, optional): Image shape (h, w, ...) to clip to; for
                batched input also one shape per image ([B, 2] or a list of B shapes).
            wh_ratio_clip (float): dw/dh are clamped to ``±|log(wh_ratio_clip)|`` so that exp()
                can not explode. Defaults to 16 / 1000.

        Returns:
            Tensor | HorizontalBoxes: Decoded boxes with the shape of ``pred_bboxes``;
            ``HorizontalBoxes`` when ``use_box_type`` (then ``pred_bboxes`` must end in 4).
        """
        bboxes = get_box_tensor(bboxes)
        decoded = self._decode(bboxes, pred_bboxes, max_shape, wh_ratio_clip)
        if self.use_box_type:
            if decoded.size(-1) != 4:
                raise _CoderShapeError('use_box_type needs class-agnostic deltas ending in 4, '
                                       f'but got {tuple(decoded.shape)}')
            return HorizontalBoxes(decoded, clone=False)
        return decoded

    def _decode(self, bboxes: Tensor, pred_bboxes: Tensor, max_shape: Optional[ShapeType],
                wh_ratio_clip: float) -> Tensor:
        """Decode on tensors; see :meth:`decode`."""
        if pred_bboxes.size(0) != bboxes.size(0):
            raise _CoderShapeError(f'pred_bboxes and bboxes must have the same first dim, but '
                                   f'got {tuple(pred_bboxes.shape)} and {tuple(bboxes.shape)}')
        if pred_bboxes.dim() == 3 and pred_bboxes.size(1) != bboxes.size(1):
            raise _CoderShapeError(f'batched pred_bboxes and bboxes must have the same number of '
                                   f'boxes, but got {tuple(pred_bboxes.shape)} and '
                                   f'{tuple(bboxes.shape)}')
        if pred_bboxes.size(-1) % 4 != 0:
            raise _CoderShapeError(f'pred_bboxes last dim must be a multiple of 4, but got '
                                   f'{tuple(pred_bboxes.shape)}')
        if pred_bboxes.numel() == 0:
            return pred_bboxes.clone()

        num_classes = pred_bboxes.size(-1) // 4
        deltas = pred_bboxes.reshape(*pred_bboxes.shape[:-1], num_classes, 4)  # [..., N, C, 4]
        deltas = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        priors = bboxes[..., None, :].to(deltas.dtype)  # [..., N, 1, 4]
        prior_xy = (priors[..., :2] + priors[..., 2:]) * 0.5
        prior_wh = priors[..., 2:] - priors[..., :2]

        shift_xy = prior_wh * deltas[..., :2]
        dwh = deltas[..., 2:]
        max_ratio = abs(math.log(wh_ratio_clip))
        if self.add_ctr_clamp:
            shift_xy = shift_xy.clamp(min=-self.ctr_clamp, max=self.ctr_clamp)
            dwh = dwh.clamp(max=max_ratio)
        else:
            dwh = dwh.clamp(min=-max_ratio, max=max_ratio)
        center = prior_xy + shift_xy
        half_wh = prior_wh * dwh.exp() * 0.5
        decoded = torch.cat([center - half_wh, center + half_wh], dim=-1)  # [..., N, C, 4]

        if self.clip_border and max_shape is not None:
            decoded = self._clip(decoded, max_shape)
        return decoded.reshape(pred_bboxes.shape)

    @staticmethod
    def _clip(boxes: Tensor, max_shape: ShapeType) -> Tensor:
        """Clip [..., N, C, 4] boxes to [0, w] x [0, h]; per image when shapes are batched."""
        if isinstance(max_shape, Tensor):
            shape = max_shape.to(boxes)
        else:
            shape = boxes.new_tensor(max_shape)
        if shape.dim() == 1:
            h, w = shape[0], shape[1]
        else:  # one (h, w) per image of a batched [B, N, C, 4] input
            if boxes.dim() != 4 or shape.size(0) != boxes.size(0):
                raise _CoderShapeError(f'per-image max_shape {tuple(shape.shape)} needs batched '
                                       f'boxes with the same batch size, got '
                                       f'{tuple(boxes.shape[:-2])}')
            h, w = shape[:, 0].view(-1, 1, 1), shape[:, 1].view(-1, 1, 1)
        zero = boxes.new_zeros(())
        x = torch.minimum(torch.maximum(boxes[..., 0::2], zero), w[..., None])
        y = torch.minimum(torch.maximum(boxes[..., 1::2], zero), h[..., None])
        return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)
