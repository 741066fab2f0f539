"""mmengine's training loops, extended so that a resumed run matches an uninterrupted one.

Registered under mmengine's names in mmdet_lite's ``LOOPS``. mmengine's ``Runner`` builds
``train_cfg = dict(type='EpochBasedTrainLoop', ...)`` with ``LOOPS.build``; with
``default_scope = 'mmdet_lite'`` (every config's runtime) the build switches to the
registry of that scope, :data:`mmdet_lite.registry.LOOPS`, and looks the name up there
before its mmengine parent. So every config that names the loop by type gets these classes,
without a new name to learn. (``train_cfg = dict(by_epoch=True, ...)``, without ``type``,
makes mmengine instantiate its own classes directly; the configs here always name the type.)

What they add, used by :class:`~mmdet_lite.engine.hooks.CheckpointHook`
(:mod:`~mmdet_lite.engine.hooks.resume_state`), which restores the RNG states:

- :meth:`EpochBasedTrainLoop.restore_before_first_batch` /
  :meth:`IterBasedTrainLoop.restore_before_first_batch`: run a callback at the point of
  the loop where the checkpoint was taken, i.e. right before the first batch it had not
  trained. An epoch-based run resumed mid-epoch fetches the batches that the checkpoint had
  trained and drops them (mmengine would train them again); one resumed at an epoch
  boundary calls the callback before ``before_train_epoch`` and ``iter(dataloader)``, both
  of which the uninterrupted run also went through after its checkpoint (``iter`` draws
  the loader's base seed from torch's generator).
- The workers of an epoch-based loader seed themselves from the epoch
  (:mod:`.worker_seeding`), so persistent workers, whose state no checkpoint can hold, do
  not carry random state from one epoch into the next.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop as MMEngineEpochBasedTrainLoop
from mmengine.runner import IterBasedTrainLoop as MMEngineIterBasedTrainLoop
from torch.utils.data import DataLoader

from ...registry import LOOPS
from .worker_seeding import EpochSeededWorkers


@LOOPS.register_module()
class EpochBasedTrainLoop(MMEngineEpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` with epoch-seeded workers and exact resume.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): The loader or its config.
        max_epochs (int): Total training epochs.
        val_begin (int): The epoch that begins validating. Defaults to 1.
        val_interval (int): Validation interval. Defaults to 1.
        dynamic_intervals (list[tuple[int, int]], optional): ``(milestone, interval)``
            pairs, as mmengine's.
    """

    def __init__(self, runner, dataloader: Union[DataLoader, Dict], max_epochs: int,
                 val_begin: int = 1, val_interval: int = 1,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None) -> None:
        super().__init__(runner, dataloader, max_epochs, val_begin=val_begin,
                         val_interval=val_interval, dynamic_intervals=dynamic_intervals)
        # workers start at the first iter(dataloader), in run_epoch: not started yet here
        self._workers = EpochSeededWorkers(self.dataloader, runner.seed, get_rank())
        self._on_resumed: Optional[Callable[[], None]] = None

    def restore_before_first_batch(self, on_resumed: Callable[[], None]) -> None:
        """Call ``on_resumed`` where the resumed checkpoint was taken.

        Call it after the runner restored the epoch and iteration counters (in
        ``before_train``). The loop calls ``on_resumed`` at the start of the next epoch if
        the checkpoint was written at the end of an epoch, else after skipping the batches
        of the current epoch the checkpoint had trained.

        Args:
            on_resumed (Callable[[], None]): Restores what the checkpoint saved (the RNG
                states).
        """
        self._on_resumed = on_resumed

    def run_epoch(self) -> None:
        """Train one epoch; after a resume, from the first batch the checkpoint had not
        trained."""
        on_resumed, self._on_resumed = self._on_resumed, None
        num_trained = 0
        if on_resumed is not None:
            num_trained = self._iter - self._epoch * len(self.dataloader)
            if num_trained == 0:
                # an epoch checkpoint: the uninterrupted run went from it to here
                on_resumed()
                on_resumed = None
            else:
                print_log(f'Resuming in the middle of epoch {self._epoch + 1}: skipping '
                          f'its {num_trained} batches trained before the checkpoint',
                          logger='current')
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        self._workers.set_epoch(self._epoch)
        batches = iter(self.dataloader)
        # fetched, not trained: the sampler order and the workers' streams stay those of
        # the uninterrupted epoch, and so do the batch indices (hooks use them to find the
        # epoch's last batch)
        for _ in range(num_trained):
            next(batches)
        if on_resumed is not None:
            on_resumed()  # after the skipped fetches, which drew from the main process's RNG
        for idx, data_batch in enumerate(batches, start=num_trained):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


class _ResumableIterator:
    """The data iterator of :class:`IterBasedTrainLoop`: mmengine's, plus a callback that
    runs before a given fetch."""

    def __init__(self, iterator) -> None:
        self.iterator = iterator
        self._callback: Optional[Callable[[], None]] = None
        self._fetches_before_callback = 0

    def call_before_fetch(self, num_fetches: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, after ``num_fetches`` more fetches and before the next."""
        self._callback = callback
        self._fetches_before_callback = num_fetches

    def __iter__(self) -> '_ResumableIterator':
        return self

    def __next__(self) -> Sequence[dict]:
        if self._callback is not None:
            if self._fetches_before_callback == 0:
                callback, self._callback = self._callback, None
                callback()
            else:
                self._fetches_before_callback -= 1
        return next(self.iterator)


@LOOPS.register_module()
class IterBasedTrainLoop(MMEngineIterBasedTrainLoop):
    """mmengine's ``IterBasedTrainLoop`` with exact resume.

    mmengine's ``run`` re-fetches the ``iter`` batches trained before the checkpoint
    ("Advance dataloader"), so the sampler and the workers' streams end up where they were;
    the pipeline's random transforms in the main process draw from the RNGs on the way, so
    those are restored after that advance, before the first batch to train.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader or dict): The loader or its config.
        max_iters (int): Total training iterations.
        val_begin (int): The iteration that begins validating. Defaults to 1.
        val_interval (int): Validation interval. Defaults to 1000.
        dynamic_intervals (list[tuple[int, int]], optional): ``(milestone, interval)``
            pairs, as mmengine's.
    """

    def __init__(self, runner, dataloader: Union[DataLoader, Dict], max_iters: int,
                 val_begin: int = 1, val_interval: int = 1000,
                 dynamic_intervals: Optional[List[Tuple[int, int]]] = None) -> None:
        super().__init__(runner, dataloader, max_iters, val_begin=val_begin,
                         val_interval=val_interval, dynamic_intervals=dynamic_intervals)
        self.dataloader_iterator = _ResumableIterator(self.dataloader_iterator)

    def restore_before_first_batch(self, on_resumed: Callable[[], None]) -> None:
        """Call ``on_resumed`` right before the first batch the checkpoint had not trained.

        Call it after the runner restored the iteration counter (in ``before_train``).

        Args:
            on_resumed (Callable[[], None]): Restores what the checkpoint saved (the RNG
                states).
        """
        # mmengine's run() fetches self._iter batches first, to advance the data stream
        self.dataloader_iterator.call_before_fetch(self._iter, on_resumed)
