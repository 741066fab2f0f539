"""TBLR coder (FSAF): a box as its top/bottom/left/right distances from a prior's centre."""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import BaseBoxes, HorizontalBoxes, get_box_tensor
from .base_bbox_coder import BaseBBoxCoder, _CoderShapeError

ShapeType = Union[Sequence[int], Tensor, Sequence[Sequence[int]]]
NormalizerType = Union[Sequence[float], float]


@TASK_UTILS.register_module()
class TBLRBBoxCoder(BaseBBoxCoder):
    """Encode a gt box as (top, bottom, left, right) distances from the prior centre.

    The distances are divided by the prior height (top, bottom) or width (left, right),
    then by ``normalizer``.

    Args:
        normalizer (Sequence[float] | float): One factor for all four distances, or four
            factors in (top, bottom, left, right) order. Defaults to 4.0.
        clip_border (bool): Clip decoded boxes to ``max_shape``. Defaults to True.
        use_box_type (bool): Wrap decoded boxes in ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self,
                 normalizer: NormalizerType = 4.0,
                 clip_border: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.normalizer = normalizer
        self.clip_border = clip_border

    def encode(self, bboxes: Union[Tensor, BaseBoxes],
               gt_bboxes: Union[Tensor, BaseBoxes]) -> Tensor:
        """Normalized (top, bottom, left, right) targets.

        Args:
            bboxes (Tensor | BaseBoxes): Priors [N, 4].
            gt_bboxes (Tensor | BaseBoxes): Matched gt boxes [N, 4].

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
        return bboxes2tblr(bboxes, gt_bboxes, normalizer=self.normalizer)

    def decode(self,
               bboxes: Union[Tensor, BaseBoxes],
               pred_bboxes: Tensor,
               max_shape: Optional[ShapeType] = None) -> Union[Tensor, BaseBoxes]:
        """Boxes from priors and predicted normalized (top, bottom, left, right).

        Args:
            bboxes (Tensor | BaseBoxes): Priors [N, 4] or [B, N, 4].
            pred_bboxes (Tensor): Predictions, same shape.
            max_shape (optional): (h, w[, c]) to clip to; for batched input also one shape
                per image (a list of B shapes or a [B, 2] tensor).

        Returns:
            Tensor | HorizontalBoxes: Boxes [N, 4] or [B, N, 4].
        """
        decoded = tblr2bboxes(get_box_tensor(bboxes), pred_bboxes, normalizer=self.normalizer,
                              max_shape=max_shape, clip_border=self.clip_border)
        if self.use_box_type:
            decoded = HorizontalBoxes(decoded)
        return decoded


def _normalizer_tensor(normalizer: NormalizerType, ref: Tensor) -> Union[float, Tensor]:
    """A float stays a float; a sequence becomes a [4] tensor on ``ref``'s device."""
    if isinstance(normalizer, float):
        return normalizer
    normalizer = torch.tensor(normalizer, device=ref.device)
    if normalizer.numel() != 4:
        raise _CoderShapeError(f'normalizer must be a float or have 4 values, got {normalizer}')
    return normalizer


def bboxes2tblr(priors: Tensor,
                gts: Tensor,
                normalizer: NormalizerType = 4.0,
                normalize_by_wh: bool = True) -> Tensor:
    """Encode gt boxes as (top, bottom, left, right) distances from the prior centres.

    Args:
        priors (Tensor): Priors [N, 4] (x1, y1, x2, y2).
        gts (Tensor): Gt boxes [N, 4].
        normalizer (Sequence[float] | float): Final division factor(s). Defaults to 4.0.
        normalize_by_wh (bool): Divide top/bottom by the prior height and left/right by its
            width first. Defaults to True.

    Returns:
        Tensor: Encoded distances [N, 4].
    """
    normalizer = _normalizer_tensor(normalizer, priors)
    if priors.size(0) != gts.size(0):
        raise _CoderShapeError(f'priors and gts must have the same number of boxes, got '
                               f'{tuple(priors.shape)} and {tuple(gts.shape)}')
    cx = (priors[:, 0] + priors[:, 2]) / 2
    cy = (priors[:, 1] + priors[:, 3]) / 2
    loc = torch.stack([cy - gts[:, 1], gts[:, 3] - cy, cx - gts[:, 0], gts[:, 2] - cx], dim=1)
    if normalize_by_wh:
        w = priors[:, 2] - priors[:, 0]
        h = priors[:, 3] - priors[:, 1]
        loc = loc / torch.stack([h, h, w, w], dim=1)
    return loc / normalizer


def tblr2bboxes(priors: Tensor,
                tblr: Tensor,
                normalizer: NormalizerType = 4.0,
                normalize_by_wh: bool = True,
                max_shape: Optional[ShapeType] = None,
                clip_border: bool = True) -> Tensor:
    """Decode (top, bottom, left, right) predictions back to boxes; inverse of
    :func:`bboxes2tblr`.

    Args:
        priors (Tensor): Priors [N, 4] or [B, N, 4].
        tblr (Tensor): Encoded distances, same shape.
        normalizer (Sequence[float] | float): Factor(s) used when encoding. Defaults to 4.0.
        normalize_by_wh (bool): Whether the encoding divided by the prior size.
        max_shape (optional): (h, w[, c]) to clip to, or one per image for batched input.
        clip_border (bool): Clip when ``max_shape`` is given. Defaults to True.

    Returns:
        Tensor: Boxes [N, 4] or [B, N, 4].
    """
    normalizer = _normalizer_tensor(normalizer, priors)
    if priors.size(0) != tblr.size(0) or (priors.dim() == 3 and priors.size(1) != tblr.size(1)):
        raise _CoderShapeError(f'priors and tblr must have matching leading dims, got '
                               f'{tuple(priors.shape)} and {tuple(tblr.shape)}')
    loc = tblr * normalizer
    cx = ((priors[..., 0] + priors[..., 2]) / 2)[..., None]
    cy = ((priors[..., 1] + priors[..., 3]) / 2)[..., None]
    if normalize_by_wh:
        w = (priors[..., 2] - priors[..., 0])[..., None]
        h = (priors[..., 3] - priors[..., 1])[..., None]
        loc = torch.cat([loc[..., :2] * h, loc[..., 2:] * w], dim=-1)
    top, bottom, left, right = loc.split(1, dim=-1)
    bboxes = torch.cat([cx - left, cy - top, cx + right, cy + bottom], dim=-1)
    if clip_border and max_shape is not None:
        bboxes = _clip_xyxy(bboxes, max_shape)
    return bboxes


def _clip_xyxy(bboxes: Tensor, max_shape: ShapeType) -> Tensor:
    """Clip [..., 4] boxes to [0, w] x [0, h]; ``max_shape`` may be one (h, w[, c]) or, for
    [B, N, 4] boxes, one per image."""
    shape = torch.as_tensor(max_shape, device=bboxes.device)[..., :2].to(bboxes.dtype)
    if shape.dim() == 2 and (bboxes.dim() != 3 or shape.size(0) != bboxes.size(0)):
        raise _CoderShapeError(f'{shape.size(0)} image shapes need boxes [B, N, 4] with the '
                               f'same B, got {tuple(bboxes.shape)}')
    max_xyxy = torch.cat([shape, shape], dim=-1).flip(-1).unsqueeze(-2)  # (w, h, w, h)
    return torch.minimum(bboxes.clamp(min=0), max_xyxy)
