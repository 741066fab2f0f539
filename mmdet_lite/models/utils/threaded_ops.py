"""torchvision's serial CPU ops spread over torch's threads, with the same results.

torchvision's CPU ``roi_align`` (forward and backward) and ``nms`` run on one core: a loop
over the RoIs, a loop over the boxes. Everything else in a detector's inference uses all
of ``torch.get_num_threads()`` cores, so with 2 threads a Faster R-CNN at 640x640 spends
about a fifth of its time in RoIAlign and a tenth in NMS with the second core idle. Both
ops are independent per RoI / per NMS group, and their kernels release the GIL, so the
work can be cut into one piece per thread and run from a small thread pool:

- :func:`roi_align`: the RoIs in ``num_threads`` contiguous chunks, each pooled by
  torchvision's kernel; the outputs are concatenated, bit-identical to one call. The
  backward pools each chunk's gradient into the feature map and adds the partial maps (a
  fixed order for a given thread count, so runs stay reproducible).
- :func:`batched_nms`: torchvision's own large-input path (one ``nms`` per group, above
  1000 boxes on the CPU) with the groups shared out between the threads; the kept
  indices, in the same order, equal ``torchvision.ops.batched_nms``'s.

With one thread, on a GPU, while tracing/exporting/compiling, or for small inputs, both
simply call torchvision.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms as tv_nms

MIN_ROIS_PER_THREAD = 16  # below this a thread's start-up costs more than it saves
NMS_VANILLA_MIN_NUMEL = 4000  # torchvision loops over groups above this many box values

_enabled = True  # set_threaded_ops(False) restores torchvision's serial ops (benchmarks)
_pool_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_key: Tuple[int, int] = (0, 0)  # (pid, workers): a forked child builds its own pool


def set_threaded_ops(enabled: bool) -> bool:
    """Turn the splitting on or off process-wide (e.g. to time what it gains).

    Returns:
        bool: The previous setting.
    """
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def _threads_for(tensor: Tensor) -> int:
    """How many threads to split a CPU op over: 1 where splitting does not apply."""
    if not _enabled or tensor.device.type != 'cpu' or torch.get_num_threads() < 2:
        return 1
    if (torch.jit.is_scripting() or torch.jit.is_tracing() or torchvision._is_tracing()
            or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()):
        return 1
    return torch.get_num_threads()


def _run_parallel(fn: Callable, pieces: Sequence, workers: int) -> List:
    """``[fn(p) for p in pieces]``, the pieces shared out over a pool of ``workers``."""
    global _pool, _pool_key
    key = (os.getpid(), workers)
    with _pool_lock:
        if _pool is None or _pool_key != key:
            # a pool copied into a forked DataLoader worker has no threads: make a new one
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix='mmdet_lite')
            _pool_key = key
        pool = _pool
    return list(pool.map(fn, pieces))


def _chunks(num: int, parts: int) -> List[Tuple[int, int]]:
    """``parts`` contiguous (start, end) ranges covering ``range(num)``, sizes within 1."""
    bounds = [num * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def _roi_chunks(rois: Tensor) -> Optional[List[Tuple[int, int]]]:
    threads = min(_threads_for(rois), rois.size(0) // MIN_ROIS_PER_THREAD)
    return _chunks(rois.size(0), threads) if threads >= 2 else None


class _ThreadedRoIAlign(torch.autograd.Function):
    """torchvision's ``roi_align`` with the RoIs split over threads, forward and backward."""

    @staticmethod
    def forward(ctx, feats: Tensor, rois: Tensor, output_size: Tuple[int, int],
                spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
        out_h, out_w = output_size
        ctx.save_for_backward(rois)
        ctx.args = (spatial_scale, out_h, out_w, sampling_ratio, aligned)
        ctx.feat_shape = feats.shape
        chunks = _roi_chunks(rois)
        op = torch.ops.torchvision.roi_align
        if chunks is None:
            return op(feats, rois, spatial_scale, out_h, out_w, sampling_ratio, aligned)
        feats = feats.contiguous()  # once, instead of once per chunk inside the kernel
        parts = _run_parallel(
            lambda r: op(feats, rois[r[0]:r[1]], spatial_scale, out_h, out_w,
                         sampling_ratio, aligned), chunks, len(chunks))
        return torch.cat(parts)  # [K, C, out_h, out_w]

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        rois, = ctx.saved_tensors
        spatial_scale, out_h, out_w, sampling_ratio, aligned = ctx.args
        batch, channels, height, width = ctx.feat_shape
        op = torch.ops.torchvision._roi_align_backward

        def grad_of(start: int, end: int) -> Tensor:  # [B, C, H, W]
            return op(grad_out[start:end].contiguous(), rois[start:end], spatial_scale,
                      out_h, out_w, batch, channels, height, width, sampling_ratio, aligned)

        chunks = _roi_chunks(rois)
        if chunks is None:
            return grad_of(0, rois.size(0)), None, None, None, None, None
        parts = _run_parallel(lambda r: grad_of(*r), chunks, len(chunks))
        grad = parts[0]
        for part in parts[1:]:
            grad += part
        return grad, None, None, None, None, None


def roi_align(feats: Tensor, rois: Tensor, output_size: Tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 0,
              aligned: bool = True) -> Tensor:
    """``torchvision.ops.roi_align`` on a CPU with the RoIs pooled by all torch threads.

    Args:
        feats (Tensor): Feature maps [B, C, H, W].
        rois (Tensor): [K, 5] rows of (batch_idx, x1, y1, x2, y2), ``feats``' dtype.
        output_size (tuple[int, int]): (out_h, out_w).
        spatial_scale (float): Feature-map scale relative to the RoI coordinates.
        sampling_ratio (int): Samples per bin side; 0 picks ceil(roi_size / bin).
        aligned (bool): Shift the RoIs by -0.5 px (pixel centres line up).

    Returns:
        Tensor: [K, C, out_h, out_w], equal to ``torchvision.ops.roi_align``'s.
    """
    if _roi_chunks(rois) is None:
        return torchvision.ops.roi_align(feats, rois, output_size, spatial_scale,
                                         sampling_ratio, aligned)
    return _ThreadedRoIAlign.apply(feats, rois, tuple(output_size), float(spatial_scale),
                                   int(sampling_ratio), bool(aligned))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """``torchvision.ops.batched_nms`` with its per-group NMS calls shared out over threads.

    Args:
        boxes (Tensor): [N, 4] (x1, y1, x2, y2).
        scores (Tensor): [N].
        idxs (Tensor): [N] group of each box (class, level or image x class).
        iou_threshold (float): Boxes of one group overlapping a better one by more are
            dropped.

    Returns:
        Tensor: Kept indices [K] (int64), highest score first: torchvision's, index for
        index.
    """
    threads = _threads_for(boxes)
    if threads < 2 or boxes.numel() <= NMS_VANILLA_MIN_NUMEL:
        return tv_batched_nms(boxes, scores, idxs, iou_threshold)
    # Group the boxes: a stable sort keeps each group's boxes in input order, as
    # torchvision's torch.where(idxs == group) does, so each nms sees the same input.
    order = torch.sort(idxs, stable=True)[1]
    counts = torch.unique_consecutive(idxs[order], return_counts=True)[1].tolist()
    starts = [0]
    for count in counts:
        starts.append(starts[-1] + count)
    groups = list(zip(starts[:-1], starts[1:]))
    sorted_boxes, sorted_scores = boxes[order], scores[order]

    def nms_groups(span: Tuple[int, int]) -> Tensor:
        kept = []
        for start, end in groups[span[0]:span[1]]:
            keep = tv_nms(sorted_boxes[start:end], sorted_scores[start:end], iou_threshold)
            kept.append(keep + start)
        return torch.cat(kept) if kept else order.new_zeros(0)

    # contiguous spans of groups with about equal numbers of boxes per thread
    spans, begin, per_thread = [], 0, boxes.size(0) / threads
    for g in range(len(groups)):
        if starts[g + 1] >= per_thread * (len(spans) + 1) or g == len(groups) - 1:
            spans.append((begin, g + 1))
            begin = g + 1
    keep = order[torch.cat(_run_parallel(nms_groups, spans, threads))]
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    keep_mask[keep] = True
    keep = torch.where(keep_mask)[0]  # ascending, then by score as torchvision sorts
    return keep[scores[keep].sort(descending=True)[1]]


__all__ = ['roi_align', 'batched_nms', 'set_threaded_ops']
