"""mmengine's ``LogProcessor`` that also reports memory on a CPU, and training throughput."""
import re
import resource
import sys
from typing import Optional, Tuple

import torch
from mmengine.dist import get_world_size
from mmengine.runner import BaseLoop
from mmengine.runner import LogProcessor as MMEngineLogProcessor

from mmdet_lite.registry import LOG_PROCESSORS

# The json log key of the throughput (images per second), next to mmengine's 'time'.
THROUGHPUT_KEY = 'img_per_sec'


def peak_rss_mb() -> int:
    """Peak resident memory of this process in MB (``ru_maxrss`` is KB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak / 1024 if sys.platform != 'darwin' else peak / 1024 / 1024)


def train_batch_size(runner) -> Optional[int]:
    """Images per training iteration in one process, or None when unknown.

    A dataloader built with a batch sampler (mmdetection's ``AspectRatioBatchSampler``)
    has ``batch_size=None``; the sampler holds it then.
    """
    loop = runner._train_loop  # the attribute: ``runner.train_loop`` would build the loop
    if not isinstance(loop, BaseLoop):
        return None
    loader = loop.dataloader
    batch_size = getattr(loader, 'batch_size', None)
    if batch_size is None:
        batch_size = getattr(getattr(loader, 'batch_sampler', None), 'batch_size', None)
    return batch_size if isinstance(batch_size, int) and batch_size > 0 else None


@LOG_PROCESSORS.register_module()
class LogProcessor(MMEngineLogProcessor):
    """Same log lines as mmengine's, with ``memory`` (MB) on CPU-only machines too and
    the training throughput ``img/s``.

    mmengine logs ``memory`` (peak CUDA memory) only when a GPU is present; on a CPU run this
    logs the process's peak resident memory instead, in the same place of the line and
    under the same ``memory`` key of the json log.

    Training lines also get ``img/s``, right after ``data_time``: batch size x world size /
    ``time``, where ``time`` is the iteration time smoothed over the log window, the value
    the line prints. It is the nominal batch size, so a last, smaller batch of an epoch
    counts as full. The json log gets it as ``img_per_sec`` (a key added, none changed).
    """

    def get_log_after_iter(self, runner, batch_idx: int, mode: str) -> Tuple[dict, str]:
        tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        if mode != 'train':
            return tag, log_str
        if not torch.cuda.is_available() and 'memory' not in tag:
            memory = peak_rss_mb()
            tag['memory'] = memory
            log_str = re.sub(r'(data_time: \S+  )', rf'\1memory: {memory}  ', log_str,
                             count=1)
        prefix = f'{mode}/' if self.log_with_hierarchy else ''
        iter_time = tag.get(f'{prefix}time')
        batch_size = train_batch_size(runner)
        if iter_time and batch_size:  # no IterTimerHook, or no time measured yet: none
            throughput = batch_size * get_world_size() / iter_time
            tag[f'{prefix}{THROUGHPUT_KEY}'] = throughput
            # inserted before memory (added above or by mmengine), after data_time
            log_str = re.sub(r'(data_time: \S+  )', rf'\1img/s: {throughput:.2f}  ', log_str,
                             count=1)
        return tag, log_str
