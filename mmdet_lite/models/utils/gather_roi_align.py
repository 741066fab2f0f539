"""RoIAlign as one weighted gather of channel vectors: a fast pure-torch CPU kernel.

torchvision's CPU ``roi_align`` loops over the RoIs and, inside, over the channels of an
NCHW map one scalar at a time: on 2 cores a Faster R-CNN at 640x640 spends about a tenth of
its inference there and a train step about a tenth in its backward. Every output bin of
RoIAlign is a weighted sum of feature vectors: for each of its ``grid_h x grid_w`` sampling
points, the 4 pixels around it with bilinear weights, divided by the number of points. With
the feature map as a table of channel vectors (channels-last: ``[B*H*W, C]``), that is
exactly ``F.embedding_bag(mode='sum', per_sample_weights=...)``: one bag of ``4 * points``
rows per output bin. Its CPU kernel gathers contiguous C-vectors over all threads, and its
backward scatters them back, so the gradient comes from autograd.

The sampling points, the out-of-map rule and the clamping follow torchvision's kernel
(``roi_align_kernel.cpp``) operation for operation, so outputs equal torchvision's up to the
order of the float additions (about 1e-6 relative). The adaptive grid
(``sampling_ratio=0``: ``ceil(roi_size / output_size)`` points per bin side, what
mmdetection's configs use) gives each RoI its own bag size.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

# Sampling points per call: larger inputs are pooled in RoI chunks, which bounds the index
# and weight tensors (12 bytes per corner, 4 corners per point: about 100 MB per chunk).
MAX_POINTS_PER_CHUNK = 1 << 21


def _bin_grid(rois: Tensor, output_size: Tuple[int, int], spatial_scale: float,
              sampling_ratio: int, aligned: bool):
    """Per-RoI geometry: batch index, top-left corner, bin size and sampling grid.

    Returns:
        tuple: ``batch_idx`` [K] int64, ``y1``, ``x1``, ``bin_h``, ``bin_w`` [K] (feature-map
        pixels), ``grid_h``, ``grid_w`` [K] int64 (points per bin side, 0 for an empty RoI).
    """
    out_h, out_w = output_size
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:  # the legacy rule: RoIs at least one pixel wide
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(rois[:, 0], sampling_ratio, dtype=torch.long)
    else:
        grid_h, grid_w = torch.ceil(roi_h / out_h).long(), torch.ceil(roi_w / out_w).long()
    return (rois[:, 0].long(), y1, x1, bin_h, bin_w,
            grid_h.clamp(min=0), grid_w.clamp(min=0))


def _bilinear_corners(pos: Tensor, size: int):
    """torchvision's clamping of sampling positions along one axis.

    Args:
        pos (Tensor): [P] positions in pixels (already known to lie in [-1, size]).
        size (int): Map size along this axis.

    Returns:
        tuple: ``low``, ``high`` [P] int64 pixel indices and ``frac`` [P], the weight of
        ``high`` (``1 - frac`` is ``low``'s).
    """
    pos = pos.clamp(min=0)
    low = pos.long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    frac = torch.where(at_edge, 0.0, pos - low)
    return low, high, frac


def _pool_chunk(table: Tensor, rois: Tensor, feat_hw: Tuple[int, int],
                output_size: Tuple[int, int], spatial_scale: float, sampling_ratio: int,
                aligned: bool) -> Tensor:
    """RoIAlign of one chunk of RoIs from the channel-vector table.

    Args:
        table (Tensor): [B*H*W, C], row ``b*H*W + y*W + x`` the vector of pixel (b, y, x).
        rois (Tensor): [K, 5] (batch_idx, x1, y1, x2, y2).

    Returns:
        Tensor: [K*out_h*out_w, C], the bins of each RoI in row-major order.
    """
    height, width = feat_hw
    out_h, out_w = output_size
    bins_per_roi = out_h * out_w
    batch_idx, y1, x1, bin_h, bin_w, grid_h, grid_w = _bin_grid(
        rois, output_size, spatial_scale, sampling_ratio, aligned)
    points_per_bin = grid_h * grid_w                                  # [K]
    bag_size = points_per_bin.repeat_interleave(bins_per_roi)        # [K*out_h*out_w]
    bag_start = torch.cumsum(bag_size, 0) - bag_size
    num_points = int(bag_size.sum())
    # one entry per sampling point: its bin, and its index inside the bin's grid
    bin_of = torch.arange(bag_size.numel()).repeat_interleave(bag_size)       # [P]
    point = torch.arange(num_points) - bag_start.repeat_interleave(bag_size)  # [P]
    roi_of = bin_of // bins_per_roi
    bin_y, bin_x = (bin_of // out_w) % out_h, bin_of % out_w
    gh, gw = grid_h[roi_of], grid_w[roi_of]
    point_y = point // gw
    point_x = point - point_y * gw
    # the same float operations, in the same order, as torchvision's kernel
    bh, bw = bin_h[roi_of], bin_w[roi_of]
    y = y1[roi_of] + bin_y * bh + (point_y + 0.5) * bh / gh
    x = x1[roi_of] + bin_x * bw + (point_x + 0.5) * bw / gw
    inside = (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    y_low, y_high, ly = _bilinear_corners(y, height)
    x_low, x_high, lx = _bilinear_corners(x, width)
    hy, hx = 1 - ly, 1 - lx
    # a point outside the map adds nothing; every point counts 1 / points_per_bin
    scale = inside.to(table.dtype) / points_per_bin[roi_of].clamp(min=1).to(table.dtype)
    row = batch_idx[roi_of] * (height * width)
    indices = torch.stack([row + y_low * width + x_low, row + y_low * width + x_high,
                           row + y_high * width + x_low, row + y_high * width + x_high],
                          dim=1).reshape(-1)                                  # [4P]
    weights = (torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=1)
               * scale[:, None]).reshape(-1).to(table.dtype)                 # [4P]
    return F.embedding_bag(indices, table, bag_start * 4, mode='sum',
                           per_sample_weights=weights)


def gather_roi_align(feats: Tensor, rois: Tensor, output_size: Tuple[int, int],
                     spatial_scale: float = 1.0, sampling_ratio: int = 0,
                     aligned: bool = True) -> Tensor:
    """``torchvision.ops.roi_align``, computed as a weighted gather (differentiable).

    Args:
        feats (Tensor): Feature maps [B, C, H, W]; channels-last memory avoids one copy.
        rois (Tensor): [K, 5] rows of (batch_idx, x1, y1, x2, y2), ``feats``' dtype.
        output_size (tuple[int, int]): (out_h, out_w).
        spatial_scale (float): Feature-map scale relative to the RoI coordinates.
        sampling_ratio (int): Samples per bin side; 0 picks ceil(roi_size / bin).
        aligned (bool): Shift the RoIs by -0.5 px (pixel centres line up).

    Returns:
        Tensor: [K, C, out_h, out_w] in channels-last memory format; torchvision's values
        up to float rounding.
    """
    batch, channels, height, width = feats.shape
    out_h, out_w = output_size
    # [B, H, W, C] -> [B*H*W, C]: a view when feats is channels-last
    table = feats.permute(0, 2, 3, 1).contiguous().view(-1, channels)
    if rois.size(0) == 0:
        return feats.new_zeros(0, channels, out_h, out_w)
    rois = rois.detach()
    # RoI chunks of at most MAX_POINTS_PER_CHUNK sampling points
    grid_h, grid_w = _bin_grid(rois, output_size, spatial_scale, sampling_ratio,
                               aligned)[-2:]
    points = torch.cumsum(grid_h * grid_w * (out_h * out_w), 0)
    chunk_of = (points - 1).clamp(min=0) // MAX_POINTS_PER_CHUNK
    bounds = torch.searchsorted(chunk_of, torch.unique_consecutive(chunk_of)).tolist()
    bounds.append(rois.size(0))
    pooled = [_pool_chunk(table, rois[start:end], (height, width), output_size,
                          spatial_scale, sampling_ratio, aligned)
              for start, end in zip(bounds[:-1], bounds[1:])]
    pooled = pooled[0] if len(pooled) == 1 else torch.cat(pooled)
    # [K*out_h*out_w, C] -> [K, out_h, out_w, C] -> [K, C, out_h, out_w] (a view)
    return pooled.view(-1, out_h, out_w, channels).permute(0, 3, 1, 2)


__all__ = ['gather_roi_align', 'MAX_POINTS_PER_CHUNK']
