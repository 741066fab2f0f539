"""Gaussian heatmap helpers of the keypoint-style heads (CenterNet, CornerNet).

Targets: an object marks the heatmap cell of its centre (or corner) with a Gaussian peak
(:func:`gen_gaussian_target`) whose radius (:func:`gaussian_radius`) is the largest corner
displacement that still overlaps the box by ``min_overlap``. Decoding: the local maxima of the
predicted heatmap (:func:`get_local_maximum`) give the top-k candidates
(:func:`get_topk_from_heatmap`), whose other outputs are read at the same positions
(:func:`transpose_and_gather_feat`).
"""
from math import sqrt
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian2D(radius: int, sigma: float = 1, dtype: torch.dtype = torch.float32,
               device='cpu') -> Tensor:
    """``exp(-(x**2 + y**2) / (2 sigma**2))`` on the integer grid [-radius, radius]**2, with
    values below ``eps * max`` set to 0: [2 * radius + 1, 2 * radius + 1]."""
    steps = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    x, y = steps.view(1, -1), steps.view(-1, 1)
    kernel = (-(x * x + y * y) / (2 * sigma * sigma)).exp()
    kernel[kernel < torch.finfo(kernel.dtype).eps * kernel.max()] = 0
    return kernel


def gen_gaussian_target(heatmap: Tensor, center: Sequence[int], radius: int,
                        k: float = 1) -> Tensor:
    """Draw ``k`` times a Gaussian (sigma = diameter / 6) at ``center`` (x, y) into
    ``heatmap`` [H, W] in place, keeping the element-wise max; returns ``heatmap``."""
    kernel = gaussian2D(radius, sigma=(2 * radius + 1) / 6, dtype=heatmap.dtype,
                        device=heatmap.device)
    x, y = int(center[0]), int(center[1])
    height, width = heatmap.shape[:2]
    # The part of the kernel that falls on the map.
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    window = heatmap[y - top:y + bottom, x - left:x + right]
    patch = kernel[radius - top:radius + bottom, radius - left:radius + right]
    window.copy_(torch.maximum(window, patch * k))
    return heatmap


def gaussian_radius(det_size: Sequence, min_overlap: float) -> float:
    """Largest corner displacement keeping IoU >= ``min_overlap`` with a box (h, w).

    The smallest root of the three cases of CornerNet: one corner inside the box and one
    outside, both inside, both outside (each a quadratic in the radius r):

    - ``r**2 - (h + w) r + w h (1 - o) / (1 + o) = 0``
    - ``4 r**2 - 2 (h + w) r + (1 - o) w h = 0``
    - ``4 o r**2 + 2 o (h + w) r + (o - 1) w h = 0``
    """
    height, width = det_size
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 - sqrt(b2**2 - 16 * c2)) / 8
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + sqrt(b3**2 - 4 * a3 * c3)) / (2 * a3)
    return min(r1, r2, r3)


def get_local_maximum(heat: Tensor, kernel: int = 3) -> Tensor:
    """``heat`` [B, C, H, W] with every value that is not the max of its ``kernel``
    neighbourhood set to 0."""
    hmax = F.max_pool2d(heat, kernel, stride=1, padding=(kernel - 1) // 2)
    return heat * (hmax == heat).float()


def get_topk_from_heatmap(scores: Tensor, k: int = 20) -> Tuple[Tensor, ...]:
    """The ``k`` best (class, position) pairs of ``scores`` [B, C, H, W].

    Returns:
        tuple: scores [B, k], position index ``y * W + x`` [B, k], class [B, k], y [B, k]
        (integer) and x [B, k] (float).
    """
    batch, _, height, width = scores.size()
    topk_scores, topk_inds = torch.topk(scores.view(batch, -1), k)
    topk_clses = topk_inds // (height * width)
    topk_inds = topk_inds % (height * width)
    return (topk_scores, topk_inds, topk_clses, topk_inds // width,
            (topk_inds % width).int().float())


def transpose_and_gather_feat(feat: Tensor, ind: Tensor) -> Tensor:
    """Channels of ``feat`` [B, C, H, W] at the positions ``ind`` [B, K]: [B, K, C]."""
    feat = feat.permute(0, 2, 3, 1).contiguous()
    feat = feat.view(feat.size(0), -1, feat.size(3))
    return feat.gather(1, ind.unsqueeze(2).repeat(1, 1, feat.size(2)))
