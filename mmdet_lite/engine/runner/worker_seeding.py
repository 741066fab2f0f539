"""Random streams of DataLoader workers that depend on the epoch, not on the worker's past.

mmengine seeds each worker once, when it starts (``worker_init_fn``: seed, rank and worker
id). Workers that are not persistent start again every epoch, so every epoch replays the
same random draws in each worker; persistent workers (``persistent_workers=True``, the
default of mmdetection's configs) go on drawing from where the previous epoch stopped. A
run resumed at epoch ``e`` starts fresh workers, which draw what a first epoch draws, so
its augmentations, hence its weights, differ from the uninterrupted run's, and the state
of the worker processes cannot be saved in a checkpoint.

:class:`EpochSeededWorkers` removes that history: each worker reseeds Python's, numpy's and
torch's generators from ``(seed, rank, worker id, epoch)`` before the first sample it loads
in an epoch. An epoch's random draws are then the same whether its workers are new or
persistent, and differ from epoch to epoch.

The main process has a share in it too: creating the loader's iterator draws the workers'
base seed from torch's global generator. With persistent workers that happens at the
first ``iter(dataloader)`` only, so a run resumed at a later epoch draws once more than the
uninterrupted one did at that point, and every random number after it differs. The loader
gets its own ``generator`` for that draw (the workers reseed anyway, so the value of the
base seed does not matter).

The epoch reaches the worker processes through a shared integer, set by the main process
while the workers are idle (between two epochs, before ``iter(dataloader)``), and read
when the worker loads a batch. The check sits in ``__getitems__`` of the worker's own copy
of the dataset, the batch entry point of torch's map-style fetcher, set from the
``worker_init_fn`` (torch's documented hook for configuring that copy). Loaders with
``batch_size=None`` (no batch fetch) keep mmengine's seeding.
"""
import multiprocessing
import random
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

# every seed value is reduced to 64 bits before it enters the SeedSequence
_MASK64 = (1 << 64) - 1


def seed_worker(seed: int, rank: int, worker_id: int, epoch: int) -> None:
    """Seed the global generators of this process for ``epoch`` of one worker.

    Args:
        seed (int): The run's seed (``runner.seed``).
        rank (int): The process's distributed rank.
        worker_id (int): The DataLoader worker id.
        epoch (int): The 0-based epoch.
    """
    # SeedSequence mixes the four numbers, so neighbouring (worker, epoch) pairs do not get
    # overlapping streams as seed + worker_id + epoch would
    words = np.random.SeedSequence(
        [seed & _MASK64, rank, worker_id, epoch]).generate_state(4, dtype=np.uint32)
    random.seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(words)
    torch.manual_seed(int(words[2]) << 32 | int(words[3]))


class _ReseedingGetItems:
    """``__getitems__`` of a worker's dataset copy: reseed when the epoch changed, then load
    the samples as torch's fetcher would have."""

    def __init__(self, dataset, getitems: Optional[Callable], epoch, seed: int, rank: int,
                 worker_id: int) -> None:
        self.dataset = dataset
        self.getitems = getitems  # the dataset's own __getitems__, if it has one
        self.epoch = epoch
        self.seed, self.rank, self.worker_id = seed, rank, worker_id
        self.seeded_epoch: Optional[int] = None

    def __call__(self, indices: Sequence[int]) -> List:
        epoch = self.epoch.value
        if epoch != self.seeded_epoch:
            seed_worker(self.seed, self.rank, self.worker_id, epoch)
            self.seeded_epoch = epoch
        if self.getitems is not None:
            return self.getitems(indices)
        return [self.dataset[idx] for idx in indices]


class _WorkerInit:
    """The ``worker_init_fn`` that installs :class:`_ReseedingGetItems` after running the
    loader's own ``worker_init_fn`` (which may configure more than the seeds)."""

    def __init__(self, init_fn: Optional[Callable], epoch, seed: int, rank: int) -> None:
        self.init_fn = init_fn
        self.epoch = epoch
        self.seed, self.rank = seed, rank

    def __call__(self, worker_id: int) -> None:
        if self.init_fn is not None:
            self.init_fn(worker_id)
        dataset = get_worker_info().dataset  # this worker's copy
        dataset.__getitems__ = _ReseedingGetItems(
            dataset, getattr(dataset, '__getitems__', None), self.epoch, self.seed,
            self.rank, worker_id)


class EpochSeededWorkers:
    """Make the workers of ``dataloader`` seed themselves per epoch.

    Call :meth:`set_epoch` before each ``iter(dataloader)``. Sets the loader's
    ``worker_init_fn`` and, if it has none, its ``generator``. Without workers
    (``num_workers=0``) this does nothing: the pipeline then draws from the main process's
    generators, which a checkpoint saves, and each epoch creates a new iterator.

    Args:
        dataloader (DataLoader): Its workers must not have started yet.
        seed (int): The run's seed (``runner.seed``).
        rank (int): The process's distributed rank.
    """

    def __init__(self, dataloader: DataLoader, seed: int, rank: int) -> None:
        self._epoch = None
        if not isinstance(dataloader, DataLoader) or dataloader.num_workers == 0:
            return
        if dataloader.generator is None:
            # iter(dataloader) draws the base seed from this, not from torch's global RNG
            dataloader.generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([seed & _MASK64, rank]).generate_state(1)[0]))
        context = dataloader.multiprocessing_context or multiprocessing
        # lock-free: only the main process writes it, and only while the workers are idle
        self._epoch = context.RawValue('q', 0)
        dataloader.worker_init_fn = _WorkerInit(dataloader.worker_init_fn, self._epoch,
                                                seed, rank)

    def set_epoch(self, epoch: int) -> None:
        """Announce the 0-based ``epoch`` that the next ``iter(dataloader)`` loads.

        Args:
            epoch (int): The epoch.
        """
        if self._epoch is not None:
            self._epoch.value = epoch
