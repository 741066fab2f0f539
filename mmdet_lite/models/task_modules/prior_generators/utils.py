"""Helpers around priors: which anchors lie inside the image, proportional regions."""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmdet_lite.structures.bbox import BaseBoxes


def anchor_inside_flags(flat_anchors: Tensor,
                        valid_flags: Tensor,
                        img_shape: Sequence[int],
                        allowed_border: int = 0) -> Tensor:
    """Valid anchors lying inside the image, up to ``allowed_border`` pixels outside.

    Args:
        flat_anchors (Tensor | BaseBoxes): Anchors [N, 4].
        valid_flags (Tensor): Bool flags [N] of the anchors that are valid already.
        img_shape (tuple): Image shape (h, w, ...).
        allowed_border (int): How far (pixels) an anchor may stick out; negative keeps every
            valid anchor. Defaults to 0.

    Returns:
        Tensor: Bool flags [N].
    """
    img_h, img_w = img_shape[:2]
    if allowed_border < 0:
        return valid_flags
    if isinstance(flat_anchors, BaseBoxes):
        return valid_flags & flat_anchors.is_inside(
            [img_h, img_w], all_inside=True, allowed_border=allowed_border)
    return (valid_flags & (flat_anchors[:, 0] >= -allowed_border)
            & (flat_anchors[:, 1] >= -allowed_border)
            & (flat_anchors[:, 2] < img_w + allowed_border)
            & (flat_anchors[:, 3] < img_h + allowed_border))


def calc_region(bbox: Tensor,
                ratio: float,
                featmap_size: Optional[Tuple[int, int]] = None) -> Tuple[Tensor, ...]:
    """Integer corners of the region keeping ``bbox``'s centre with each side scaled by
    ``1 - 2 * ratio`` (``ratio`` is cut from each side).

    Args:
        bbox (Tensor): One box [4] (x1, y1, x2, y2).
        ratio (float): Fraction of the size removed at each side.
        featmap_size (tuple[int, int], optional): (h, w) to clamp the corners to.

    Returns:
        tuple[Tensor]: Rounded long (x1, y1, x2, y2).
    """
    x1 = torch.round((1 - ratio) * bbox[0] + ratio * bbox[2]).long()
    y1 = torch.round((1 - ratio) * bbox[1] + ratio * bbox[3]).long()
    x2 = torch.round(ratio * bbox[0] + (1 - ratio) * bbox[2]).long()
    y2 = torch.round(ratio * bbox[1] + (1 - ratio) * bbox[3]).long()
    if featmap_size is not None:
        x1, x2 = x1.clamp(min=0, max=featmap_size[1]), x2.clamp(min=0, max=featmap_size[1])
        y1, y2 = y1.clamp(min=0, max=featmap_size[0]), y2.clamp(min=0, max=featmap_size[0])
    return x1, y1, x2, y2
