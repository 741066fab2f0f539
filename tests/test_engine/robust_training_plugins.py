"""Hooks that break a training run on purpose, for the robustness tests.

The tests start ``tools/train.py`` in a subprocess with this folder on ``PYTHONPATH`` and
``custom_imports = dict(imports=['robust_training_plugins'])`` in a config deriving from
``tests/data/configs/tiny_faster-rcnn_shapes.py``.
"""
import errno
import multiprocessing
import os
import os.path as osp
import signal
from typing import Dict, Optional, Sequence

import torch
from mmengine.dist import get_rank
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet_lite.evaluation.metrics import CocoMetric
from mmdet_lite.registry import HOOKS, METRICS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _save_model_state(runner, name: str) -> None:
    model = _unwrap(runner.model)
    state = dict(parameters={k: v.detach().cpu().clone() for k, v in model.named_parameters()},
                 buffers={k: v.detach().cpu().clone() for k, v in model.named_buffers()})
    torch.save(state, osp.join(runner.work_dir, name))


@HOOKS.register_module()
class SaveModelStateHook(Hook):
    """Save this rank's model parameters and buffers (``{'parameters': {name: tensor},
    'buffers': {name: tensor}}``) to ``work_dir/rank{r}.pth`` after training, and to
    ``work_dir/iter{i}_rank{r}.pth`` after each 1-based iteration in ``iterations``."""

    def __init__(self, iterations: Sequence[int] = ()) -> None:
        self.iterations = tuple(iterations)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 in self.iterations:
            _save_model_state(runner, f'iter{runner.iter + 1}_rank{get_rank()}.pth')

    def after_train(self, runner) -> None:
        _save_model_state(runner, f'rank{get_rank()}.pth')


@METRICS.register_module()
class ImageCountCocoMetric(CocoMetric):
    """``CocoMetric`` that also reports how many results (and distinct images) it got to
    evaluate after mmengine gathered them from every rank."""

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        metrics['num_results'] = len(results)
        metrics['num_images'] = len({pred['img_id'] for _, pred in results})
        return metrics


@HOOKS.register_module()
class BreakImageFileHook(Hook):
    """After the 1-based ``iteration``, break a training image not loaded yet this epoch.

    The broken file's path is written to ``work_dir/broken_image.txt``.

    Args:
        iteration (int): Iteration after which the file is broken.
        mode (str): ``'missing'`` deletes it, ``'corrupt'`` truncates it to 10 bytes.
    """

    def __init__(self, iteration: int, mode: str = 'corrupt') -> None:
        if mode not in ('missing', 'corrupt'):
            raise ValueError(f"mode must be 'missing' or 'corrupt', got {mode!r}")
        self.iteration = iteration
        self.mode = mode
        self.loaded = set()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.loaded.update(sample.img_path for sample in data_batch['data_samples'])
        if runner.iter + 1 != self.iteration:
            return
        dataset = runner.train_dataloader.dataset
        paths = sorted(dataset.get_data_info(i)['img_path'] for i in range(len(dataset)))
        path = next(p for p in paths if p not in self.loaded)
        if self.mode == 'missing':
            os.remove(path)
        else:
            with open(path, 'r+b') as f:
                f.truncate(10)
        with open(osp.join(runner.work_dir, 'broken_image.txt'), 'w') as f:
            f.write(path)


@HOOKS.register_module()
class InjectNaNLossHook(Hook):
    """Make the loss term ``term`` NaN at the 1-based training ``iteration``.

    Args:
        iteration (int): Iteration whose loss is poisoned, as the log counts them.
        term (str): Loss name, e.g. ``'loss_bbox'``.
        ranks (Sequence[int], optional): Only on these ranks (default: all).
    """

    def __init__(self, iteration: int, term: str = 'loss_bbox',
                 ranks: Optional[Sequence[int]] = None) -> None:
        self.iteration = iteration
        self.term = term
        self.ranks = ranks

    def before_train(self, runner) -> None:
        model = _unwrap(runner.model)
        compute_losses = model.loss

        def poisoned_loss(*args, **kwargs):
            losses = compute_losses(*args, **kwargs)
            if runner.iter + 1 == self.iteration and (self.ranks is None
                                                      or get_rank() in self.ranks):
                value = losses[self.term]
                losses[self.term] = (value * float('nan') if torch.is_tensor(value) else
                                     [v * float('nan') for v in value])
            return losses

        model.loss = poisoned_loss


@HOOKS.register_module()
class BreakCheckpointWriteHook(Hook):
    """Interrupt the write of the checkpoint ``filename`` half-way through its bytes.

    mmengine writes checkpoints with ``LocalBackend.put``; this replaces it in the training
    process so that writing ``filename`` (or its temporary ``filename + '.tmp'``) writes half
    of the bytes and then

    - ``action='kill'``: the process SIGKILLs itself (a crash or an OOM kill mid-write);
    - ``action='enospc'``: raises ``OSError(ENOSPC)``, as a full disk does.
    """

    def __init__(self, filename: str, action: str = 'kill') -> None:
        if action not in ('kill', 'enospc'):
            raise ValueError(f"action must be 'kill' or 'enospc', got {action!r}")
        self.filename = filename
        self.action = action

    def before_train(self, runner) -> None:
        put = LocalBackend.put
        hook = self

        def breaking_put(backend, obj, filepath):
            if osp.basename(str(filepath)) in (hook.filename, hook.filename + '.tmp'):
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                if hook.action == 'kill':
                    os.kill(os.getpid(), signal.SIGKILL)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return put(backend, obj, filepath)

        LocalBackend.put = breaking_put


@HOOKS.register_module()
class KillAfterEpochHook(Hook):
    """SIGKILL the training process and its DataLoader workers at the end of the 1-based
    ``epoch``, after every other ``after_train_epoch`` hook (so the epoch's checkpoint and
    ``last_checkpoint`` are written), as a job scheduler kills a whole job.

    Args:
        epoch (int): The epoch after which the run is killed.
    """

    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW)

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_train_epoch(self, runner) -> None:
        if runner.epoch + 1 != self.epoch:
            return
        # the workers too: orphaned, they would hold the test's output pipes open until
        # they notice that their parent is gone
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
