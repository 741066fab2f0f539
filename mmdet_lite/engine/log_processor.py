"""mmengine's ``LogProcessor`` that also reports memory when training on a CPU."""
import re
import resource
import sys
from typing import Tuple

import torch
from mmengine.runner import LogProcessor as MMEngineLogProcessor

from mmdet_lite.registry import LOG_PROCESSORS


def peak_rss_mb() -> int:
    """Peak resident memory of this process in MB (``ru_maxrss`` is KB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak / 1024 if sys.platform != 'darwin' else peak / 1024 / 1024)


@LOG_PROCESSORS.register_module()
class LogProcessor(MMEngineLogProcessor):
    """Same log lines as mmengine's, with ``memory`` (MB) on CPU-only machines too.

    mmengine logs ``memory`` (peak CUDA memory) only when a GPU is present; on a CPU run this
    logs the process's peak resident memory instead, in the same place of the line and
    under the same ``memory`` key of the json log.
    """

    def get_log_after_iter(self, runner, batch_idx: int, mode: str) -> Tuple[dict, str]:
        tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        if mode == 'train' and not torch.cuda.is_available() and 'memory' not in tag:
            memory = peak_rss_mb()
            tag['memory'] = memory
            log_str = re.sub(r'(data_time: \S+  )', rf'\1memory: {memory}  ', log_str,
                             count=1)
        return tag, log_str
