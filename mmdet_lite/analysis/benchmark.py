"""Helpers of ``tools/analysis_tools/benchmark.py``: timing, peak memory, synthetic ground truth,
and the feature-map sizes and reference points of the deformable-attention benchmark.

Kept out of the tool so that the tool reads as "what is measured" and this module as "how".
Nothing here imports torchvision or builds a model.
"""
import ctypes
import math
import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

_CLEAR_REFS = '/proc/self/clear_refs'
_STATUS = '/proc/self/status'


def reset_peak_rss() -> bool:
    """Reset the process's peak resident memory (Linux ``VmHWM``) to its current RSS.

    After a reset, :func:`peak_rss_mb` reports the peak of the phase that follows instead
    of the peak since the process started.

    Returns:
        bool: Whether the reset worked (False where ``/proc/self/clear_refs`` is missing or
        not writable, e.g. on macOS); the peak is then the process-wide peak so far.
    """
    try:
        with open(_CLEAR_REFS, 'w') as f:
            f.write('5')  # "5" resets the peak RSS, see proc(5)
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (since the last reset, where possible)."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kB on Linux but in bytes on macOS.
    return peak / 1024 / (1024 if platform.system() == 'Darwin' else 1)


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (nan where ``/proc`` is missing)."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        pass
    return float('nan')


def trim_heap() -> None:
    """Give memory that glibc's allocator keeps after ``free`` back to the system.

    Freed tensors smaller than glibc's mmap threshold stay in the heap and so in the RSS;
    trimming before a phase lets its peak RSS, less the RSS at its start, show what the
    phase itself needs. A no-op where glibc is missing.
    """
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_average() -> str:
    """The 1/5/15-minute load averages as a string, or 'n/a' where unsupported."""
    try:
        return ' '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'n/a'


@dataclass
class PhaseResult:
    """Wall-clock and CPU times (seconds) of the repeats of one phase of one model.

    CPU time (all threads of the process) counts the work done, so on a machine shared with
    other jobs it varies much less than wall time, which also counts the waits for a core.

    Args:
        phase (str): e.g. 'inference' or 'train_step'.
        model (str): e.g. 'mmdet_lite' or 'torchvision'.
        times (list[float]): Wall time of each timed repeat, warm-up excluded.
        cpu_times (list[float]): CPU time of each timed repeat.
        peak_rss_mb (float): Peak resident memory during the phase, in MiB.
        start_rss_mb (float): Resident memory just before the phase, in MiB: the phase's own
            peak is ``peak_rss_mb - start_rss_mb``.
        peak_cuda_mb (float): ``torch.cuda.max_memory_allocated`` over the phase, in MiB
            (nan unless measured on a CUDA device).
        output (object): What the last call returned.
    """
    phase: str
    model: str
    times: List[float] = field(default_factory=list)
    cpu_times: List[float] = field(default_factory=list)
    peak_rss_mb: float = float('nan')
    start_rss_mb: float = float('nan')
    peak_cuda_mb: float = float('nan')
    output: object = field(default=None, repr=False)

    @property
    def median_ms(self) -> float:
        """Median wall time in ms."""
        return statistics.median(self.times) * 1000

    @property
    def cpu_ms(self) -> float:
        """Median CPU time in ms."""
        return statistics.median(self.cpu_times) * 1000

    @property
    def min_ms(self) -> float:
        return min(self.times) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.times) * 1000


def measure(fn: Callable[[], object], phase: str, model: str, repeat: int,
            warmup: int, device: Optional[torch.device] = None) -> PhaseResult:
    """Call ``fn`` ``warmup`` times untimed, then ``repeat`` times timed.

    Args:
        fn (callable): The work of one repeat, without arguments.
        phase (str): Phase name for the report.
        model (str): Model name for the report.
        repeat (int): Timed calls (>= 1).
        warmup (int): Untimed calls first (>= 0): they absorb one-off costs such as
            allocator growth and lazily built caches.
        device (torch.device, optional): Where ``fn`` computes. On a CUDA device every call
            is followed by a synchronisation (kernels run asynchronously) and the peak of
            ``torch.cuda.max_memory_allocated`` is recorded.

    Returns:
        PhaseResult: The durations, the peak RSS over warm-up and timed calls and the
        last call's output.
    """
    if repeat < 1:
        raise ValueError(f'repeat must be >= 1, got {repeat}')
    if warmup < 0:
        raise ValueError(f'warmup must be >= 0, got {warmup}')
    on_cuda = device is not None and torch.device(device).type == 'cuda'

    def call():
        out = fn()
        if on_cuda:
            torch.cuda.synchronize(device)
        return out

    result = PhaseResult(phase=phase, model=model, start_rss_mb=current_rss_mb())
    reset_peak_rss()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        call()
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        result.output = call()
        result.times.append(time.perf_counter() - start)
        result.cpu_times.append(time.process_time() - cpu_start)
    result.peak_rss_mb = peak_rss_mb()
    if on_cuda:
        result.peak_cuda_mb = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def measure_interleaved(fns: Dict[str, Callable[[], object]], phase: str, repeat: int,
                        warmup: int) -> List[PhaseResult]:
    """Time several closures round-robin: repeat ``i`` of every one, then repeat ``i + 1``.

    On a shared machine the speed drifts over minutes (other jobs, the allocator and page
    cache warming up after the models are built); timed one after the other, the closure
    measured first pays for it and the ratios between them move by 10-20%. Round-robin,
    every closure sees the same conditions. CPU time only.

    Args:
        fns (dict[str, callable]): Model name -> the work of one repeat.
        phase (str): Phase name for the report.
        repeat (int): Timed rounds (>= 1).
        warmup (int): Untimed rounds first (>= 0).

    Returns:
        list[PhaseResult]: One per closure, in ``fns``' order; ``peak_rss_mb`` is the peak
        over all of them (they run in one process, side by side).
    """
    if repeat < 1:
        raise ValueError(f'repeat must be >= 1, got {repeat}')
    if warmup < 0:
        raise ValueError(f'warmup must be >= 0, got {warmup}')
    results = {name: PhaseResult(phase=phase, model=name, start_rss_mb=current_rss_mb())
               for name in fns}
    reset_peak_rss()
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for _ in range(repeat):
        for name, fn in fns.items():
            result = results[name]
            start, cpu_start = time.perf_counter(), time.process_time()
            result.output = fn()
            result.times.append(time.perf_counter() - start)
            result.cpu_times.append(time.process_time() - cpu_start)
    peak = peak_rss_mb()
    for result in results.values():
        result.peak_rss_mb = peak
    return list(results.values())


def format_results(results: Sequence[PhaseResult]) -> str:
    """A fixed-width table, one row per (phase, model); times are in ms."""
    lines = [f'{"phase":<12}{"model":<19}{"median_ms":>11}{"min_ms":>10}{"max_ms":>10}'
             f'{"cpu_ms":>10}{"peak_rss_mb":>13}']
    for r in results:
        lines.append(f'{r.phase:<12}{r.model:<19}{r.median_ms:>11.1f}{r.min_ms:>10.1f}'
                     f'{r.max_ms:>10.1f}{r.cpu_ms:>10.1f}{r.peak_rss_mb:>13.0f}')
    return '\n'.join(lines)


def synthetic_gt(num_images: int, num_boxes: int, img_shape: Tuple[int, int],
                 num_classes: int, seed: int = 0) -> List[Tuple[Tensor, Tensor]]:
    """Random but reproducible ground-truth boxes and labels.

    Box sides are 1/8 to 1/2 of the image side, so that both the RPN and the RoI head
    find positive samples, as with real objects.

    Args:
        num_images (int): Number of images.
        num_boxes (int): Boxes per image.
        img_shape (tuple[int, int]): (h, w) of the images.
        num_classes (int): Labels are drawn from [0, num_classes).
        seed (int): Seed of the generator (the global RNG is left alone).

    Returns:
        list[tuple[Tensor, Tensor]]: Per image ``bboxes`` float32 [num_boxes, 4] (x1, y1,
        x2, y2) and ``labels`` int64 [num_boxes].
    """
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    h, w = img_shape
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_images):
        size = torch.rand(num_boxes, 2, generator=gen) * 0.375 + 0.125  # [N, 2] in (w, h)
        size = size * torch.tensor([w, h], dtype=torch.float32)
        top_left = torch.rand(num_boxes, 2, generator=gen) * (
            torch.tensor([w, h], dtype=torch.float32) - size)
        bboxes = torch.cat([top_left, top_left + size], dim=1)  # [N, 4]
        labels = torch.randint(0, num_classes, (num_boxes, ), generator=gen)
        out.append((bboxes, labels))
    return out


def box_masks(bboxes: Tensor, img_shape: Tuple[int, int]) -> np.ndarray:
    """Filled-rectangle instance masks of boxes.

    Args:
        bboxes (Tensor): [N, 4] (x1, y1, x2, y2) pixels.
        img_shape (tuple[int, int]): (h, w).

    Returns:
        np.ndarray: uint8 [N, h, w], 1 inside each box.
    """
    h, w = img_shape
    masks = np.zeros((len(bboxes), h, w), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, bboxes.round().long().tolist()):
        mask[y1:y2, x1:x2] = 1
    return masks


def machine_summary(threads: Optional[int] = None) -> str:
    """One line: OS, CPU count, torch version and the number of torch threads."""
    threads = torch.get_num_threads() if threads is None else threads
    return (f'{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, '
            f'python {platform.python_version()}, torch {torch.__version__}, '
            f'{threads} threads')


# Output strides of DINO-4scale's levels: ResNet C3-C5 and one extra stride-2 conv on C5.
DINO_STRIDES = (8, 16, 32, 64)


def level_shapes(img_shape: Tuple[int, int],
                 strides: Sequence[int] = DINO_STRIDES) -> List[Tuple[int, int]]:
    """(h, w) of the feature maps a ResNet + ChannelMapper neck gives for an input size.

    Every stride-2 layer on the way (stem conv, max-pool, stage convs, the extra conv, all
    with padding) outputs ``ceil(size / 2)``, so a level of stride ``s`` is
    ``ceil(size / s)``: 800x1333 gives 100x167, 50x84, 25x42 and 13x21.

    Args:
        img_shape (tuple[int, int]): Input (h, w), after padding.
        strides (Sequence[int]): Output stride of each level.

    Returns:
        list[tuple[int, int]]: One (h, w) per level.
    """
    h, w = img_shape
    return [(math.ceil(h / s), math.ceil(w / s)) for s in strides]


def encoder_reference_points(shapes: Sequence[Tuple[int, int]], batch: int) -> Tensor:
    """The reference points of a deformable encoder without padding: the pixel centres.

    Each query (a pixel of some level) samples every level around the same normalised
    location, its own centre, as mmdetection's encoder does when no image is padded.

    Args:
        shapes (Sequence[tuple[int, int]]): (h, w) per level.
        batch (int): Batch size B.

    Returns:
        Tensor: [B, sum(h * w), num_levels, 2] normalised (x, y).
    """
    centres = []
    for h, w in shapes:
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w,
                                indexing='ij')
        centres.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], -1))
    points = torch.cat(centres)  # [N, 2]
    return points[None, :, None].expand(batch, -1, len(shapes), -1).contiguous()


def deform_attn_inputs(shapes: Sequence[Tuple[int, int]], batch: int, queries: int,
                       device: torch.device, embed_dims: int = 256,
                       seed: int = 0) -> Dict[str, Tuple[Tensor, Tensor, Tensor]]:
    """Inputs of the two uses of deformable attention in DINO, reproducible.

    Args:
        shapes (Sequence[tuple[int, int]]): (h, w) per level.
        batch (int): Batch size B.
        queries (int): The decoder's queries Q.
        device (torch.device): Where the tensors go.
        embed_dims (int): Channels C.
        seed (int): Seed of the generator (the global RNG is left alone).

    Returns:
        dict: ``'decoder_cross'``: query [B, Q, C], value [B, N, C] (N = sum(h * w)) and box
        references [B, Q, levels, 4] (cx, cy, w, h), as the decoder refines boxes;
        ``'encoder_self'``: the value as query and value, with the pixel-centre references
        [B, N, levels, 2]. The two cases share one value tensor.
    """
    gen = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, sum(h * w for h, w in shapes), embed_dims, generator=gen)
    query = torch.randn(batch, queries, embed_dims, generator=gen)
    boxes = torch.rand(batch, queries, 1, 4, generator=gen) * torch.tensor([1., 1., .5, .5])
    boxes = boxes.expand(-1, -1, len(shapes), -1)
    centres = encoder_reference_points(shapes, batch)
    value = value.to(device)
    return {
        'decoder_cross': (query.to(device), value, boxes.to(device)),
        'encoder_self': (value, value, centres.to(device)),
    }


def format_deform_attn_rows(rows: Sequence[Tuple[int, PhaseResult]],
                            device: torch.device) -> str:
    """The deformable-attention table, one row per (case, batch, phase); times in ms.

    The memory column is ``max_memory_allocated`` on CUDA, and on CPU the phase's peak RSS
    above the RSS at its start (``extra_rss_mb``).
    """
    cuda = torch.device(device).type == 'cuda'
    memory = 'peak_cuda_mb' if cuda else 'extra_rss_mb'
    lines = [f'{"case":<15}{"batch":>6}  {"phase":<9}{"median_ms":>11}{"min_ms":>10}'
             f'{"max_ms":>10}{"cpu_ms":>10}{memory:>14}']
    for batch, r in rows:
        peak = r.peak_cuda_mb if cuda else r.peak_rss_mb - r.start_rss_mb
        lines.append(f'{r.model:<15}{batch:>6}  {r.phase:<9}{r.median_ms:>11.1f}'
                     f'{r.min_ms:>10.1f}{r.max_ms:>10.1f}{r.cpu_ms:>10.1f}{peak:>14.0f}')
    return '\n'.join(lines)

