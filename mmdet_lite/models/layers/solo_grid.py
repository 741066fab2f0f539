"""SOLO's location grid: centre-region cells, gt masks at the prediction stride and the
2 x 2 local-maximum filter of grid scores.

Shared by the SOLO family heads (:mod:`~mmdet_lite.models.dense_heads.solo_head`,
``decoupled_solo_head``, ``solov2_head``); mmdetection inlines these in its heads. The
CoordConv maps (``generate_coordinate``) and mask centroids (``center_of_mass``) are in
:mod:`mmdet_lite.models.utils`, as in mmdetection.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

# Re-exported: the SOLO head tests import them from here.
from ..utils import center_of_mass, generate_coordinate  # noqa: F401

CellBox = Tuple[int, int, int, int]  # top, down, left, right grid rows/cols, inclusive


def rescale_masks(masks: Tensor, scale: float) -> Tensor:
    """Shrink binary masks as ``mmcv.imrescale(mask, scale)`` does (cv2, bilinear).

    The size is ``int(side * scale + 0.5)``; cv2's bilinear filter on uint8 0/1 values gives
    0 or 1, rounding a value of exactly 0.5 up. The heads shrink masks padded to a multiple
    of 32 by 1/4 ... 1/16, where every output pixel blends the 2 x 2 pixels at the centre of
    its block with weights 1/2: the result then equals cv2's bit for bit.

    Args:
        masks (Tensor): [N, H, W] bool or 0/1.
        scale (float): Size ratio, e.g. 1/4.

    Returns:
        Tensor: uint8 [N, int(H * scale + 0.5), int(W * scale + 0.5)].
    """
    height, width = masks.shape[-2:]
    size = (int(height * scale + 0.5), int(width * scale + 0.5))
    if len(masks) == 0:
        return masks.new_zeros((0, *size), dtype=torch.uint8)
    blended = F.interpolate(masks[:, None].float(), size=size, mode='bilinear',
                            align_corners=False)[:, 0]
    return (blended >= 0.5).to(torch.uint8)


def _grid_cell(coord: Tensor, size: int, num_grid: int) -> int:
    """Grid row/column of an image coordinate (same float32 ops as mmdetection)."""
    return int(torch.div(coord / size, 1. / num_grid, rounding_mode='trunc'))


def center_region_cells(center_h: Tensor, center_w: Tensor, half_h: Tensor, half_w: Tensor,
                        upsampled_size: Tuple[int, int], num_grid: int) -> CellBox:
    """Grid cells of an object: those its centre region (centre +- half_h/half_w) covers,
    limited to the 3 x 3 cells around the centre's cell.

    Args:
        center_h, center_w (Tensor): Mask centroid in input pixels (0-d).
        half_h, half_w (Tensor): Half extent of the centre region (0-d).
        upsampled_size (tuple[int, int]): (H, W) the grid divides, in input pixels.
        num_grid (int): S of the level.

    Returns:
        tuple[int]: top, down, left, right cells, inclusive.
    """
    height, width = upsampled_size
    coord_h = _grid_cell(center_h, height, num_grid)
    coord_w = _grid_cell(center_w, width, num_grid)
    top = max(0, _grid_cell(center_h - half_h, height, num_grid))
    down = min(num_grid - 1, _grid_cell(center_h + half_h, height, num_grid))
    left = max(0, _grid_cell(center_w - half_w, width, num_grid))
    right = min(num_grid - 1, _grid_cell(center_w + half_w, width, num_grid))
    return (max(top, coord_h - 1), min(down, coord_h + 1), max(left, coord_w - 1),
            min(right, coord_w + 1))


def gt_masks_as_tensor(gt_instances: InstanceData, device: torch.device) -> Tensor:
    """The gt ``masks`` (BitmapMasks, PolygonMasks or a tensor) as bool [G, H, W]."""
    masks = gt_instances.masks
    if hasattr(masks, 'to_tensor'):  # BitmapMasks / PolygonMasks
        return masks.to_tensor(dtype=torch.bool, device=device)
    return torch.as_tensor(masks, device=device).bool()


def keep_local_maxima(scores: Tensor) -> Tensor:
    """Zero every score that is not the maximum of its 2 x 2 window (cell and the cells
    above / to the left): SOLO's cheap point NMS on [B, C, S, S] score maps."""
    local_max = F.max_pool2d(scores, 2, stride=1, padding=1)
    return scores * (local_max[:, :, :-1, :-1] == scores)
