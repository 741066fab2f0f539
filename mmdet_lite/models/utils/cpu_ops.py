"""Faster CPU versions of torchvision's serial ops, with torchvision's results.

torchvision's CPU ``roi_align`` (forward and backward) and ``nms`` are serial loops: over
the RoIs and, for RoIAlign, over the channels of an NCHW map one scalar at a time. With 2
threads a Faster R-CNN at 640x640 spent about a fifth of its inference in RoIAlign and a
tenth in NMS with the second core idle, and a train step a tenth in RoIAlign's backward.

- :func:`roi_align`: the weighted-gather kernel of :mod:`.gather_roi_align`
  (``F.embedding_bag`` over the channel vectors, all threads, autograd for the backward):
  torchvision's values up to float rounding (about 1e-6), 4-7x faster forward and backward.
- :func:`topk`: a 1-D ``topk`` (torch runs it on one thread) as one ``topk`` per thread
  over slices, then one over their results: the same values.
- :func:`batched_nms`: torchvision's own large-input path (one ``nms`` per group, above
  1000 boxes on the CPU) with the groups shared out over a small thread pool (the kernel
  releases the GIL); the kept indices, in the same order, equal
  ``torchvision.ops.batched_nms``'s.

On a GPU, while tracing/exporting/compiling (torchvision's ops are the ones exporters know),
or after ``set_cpu_ops(False)`` (benchmarks' baseline), both call torchvision; the NMS also
does with one thread or for small inputs.
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

from .gather_roi_align import gather_roi_align

NMS_VANILLA_MIN_NUMEL = 4000  # torchvision loops over groups above this many box values
MIN_TOPK_SLICE = 1 << 16  # values per thread below which one topk call is as fast

_enabled = True  # set_cpu_ops(False) restores torchvision's serial ops (benchmarks)
_pool_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None
_pool_key: Tuple[int, int] = (0, 0)  # (pid, workers): a forked child builds its own pool


def set_cpu_ops(enabled: bool) -> bool:
    """Turn this module's CPU kernels on or off process-wide (e.g. to time what they gain).

    Returns:
        bool: The previous setting.
    """
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def _use_cpu_kernels(tensor: Tensor) -> bool:
    """Whether ``tensor``'s op runs here rather than in torchvision."""
    if not _enabled or tensor.device.type != 'cpu':
        return False
    return not (torch.jit.is_scripting() or torch.jit.is_tracing()
                or torchvision._is_tracing() or torch.compiler.is_compiling()
                or torch.onnx.is_in_onnx_export())


def _threads_for(tensor: Tensor) -> int:
    """How many threads to split a CPU op over: 1 where splitting does not apply."""
    if not _use_cpu_kernels(tensor):
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


def roi_align(feats: Tensor, rois: Tensor, output_size: Tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 0,
              aligned: bool = True) -> Tensor:
    """``torchvision.ops.roi_align``; on a CPU the weighted-gather kernel, forward and
    backward. Arguments and result: :func:`~.gather_roi_align.gather_roi_align`'s (feats
    [B, C, H, W], rois [K, 5] -> [K, C, out_h, out_w]); bf16/fp16 features are pooled in
    float32 and the result cast back, as torchvision's autocast kernel does.
    """
    if not _use_cpu_kernels(feats):
        return torchvision.ops.roi_align(feats, rois, output_size, spatial_scale,
                                         sampling_ratio, aligned)
    args = (tuple(output_size), float(spatial_scale), int(sampling_ratio), bool(aligned))
    if feats.dtype in (torch.float16, torch.bfloat16):
        # as torchvision's autocast kernel: pool in float32, return the input's dtype
        return gather_roi_align(feats.float(), rois.float(), *args).to(feats.dtype)
    return gather_roi_align(feats, rois.to(feats.dtype), *args)


def topk(values: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """``values.topk(k)`` of a 1-D tensor, on a CPU split over torch's threads.

    torch's CPU topk parallelises over rows only, so a 1-D one (a dense head's N * C
    scores of one level: 4.6M for RetinaNet's P3 at 640x640) runs on one thread. Here each
    thread takes the top ``k`` of one slice, and the top ``k`` of those are the result:
    the same values, in the same order (ties between equal scores may be ordered
    differently).

    Args:
        values (Tensor): [N].
        k (int): 0 < k <= N.

    Returns:
        tuple[Tensor, Tensor]: The ``k`` largest values [k], highest first, and their
        indices [k] into ``values``.
    """
    threads = _threads_for(values)
    rows = values.numel() // max(k, MIN_TOPK_SLICE)
    threads = min(threads, rows)
    if threads < 2:
        return values.topk(k)
    row_len = values.numel() // threads
    head = values[:threads * row_len].view(threads, row_len)
    head_values, head_idxs = head.topk(k, dim=1)                       # [T, k] in parallel
    head_idxs = head_idxs + torch.arange(threads, device=values.device)[:, None] * row_len
    tail_idxs = torch.arange(threads * row_len, values.numel(), device=values.device)
    cand_values = torch.cat([head_values.flatten(), values[tail_idxs]])
    cand_idxs = torch.cat([head_idxs.flatten(), tail_idxs])
    top_values, order = cand_values.topk(k)
    return top_values, cand_idxs[order]


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


__all__ = ['roi_align', 'batched_nms', 'topk', 'set_cpu_ops']
