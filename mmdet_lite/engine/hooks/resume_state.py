"""The state a checkpoint needs, beyond mmengine's, for a resumed run to match an
uninterrupted one bit for bit: the random number generators of every rank, and where in the
data stream the checkpoint stopped.

mmengine restores the model, optimizer, schedulers, message hub and iteration counter, but
not the RNG streams, and it positions the data differently per loop:

- ``IterBasedTrainLoop`` re-fetches the first ``iter`` batches ("Advance dataloader"), so
  the sampler (``InfiniteSampler`` or ``DefaultSampler``) and the workers' RNG streams end up
  where they were; but the pipeline's random transforms in the main process consume the
  RNGs on the way, so they have to be restored after that advance, not at load time.
- ``EpochBasedTrainLoop`` restarts the interrupted epoch at its first batch; a checkpoint
  written mid-epoch (``CheckpointHook(by_epoch=False)``) would train those batches twice.

:class:`ExactResume` (owned by :class:`~mmdet_lite.engine.hooks.CheckpointHook`) records
each rank's RNG states with every checkpoint, and on resume puts them back right before the
first batch the checkpoint had not trained, skipping the batches it had. Validation runs
see a saved-and-restored RNG, so they do not shift the training stream either (a resumed
run does not repeat the validation that followed its checkpoint).

Exactness also needs the same world size, ``num_workers == 0`` or workers that are not
persistent across epochs, and ``randomness=dict(seed=..., deterministic=True)`` for
bitwise-equal kernels.
"""
import logging
import random
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

# Key of the extra state in a checkpoint dict, next to mmengine's 'meta', 'state_dict', ...
RESUME_STATE_KEY = 'resume_state'


def capture_rng_state() -> Dict[str, Any]:
    """The state of Python's, numpy's and torch's (CPU and CUDA) global generators.

    Returns:
        dict: Plain ints, lists and tensors, so that a weights-only ``torch.load`` reads it.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(python=random.getstate(),
                 numpy=(kind, keys.tolist(), pos, has_gauss, cached),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Set the global generators to a state from :func:`capture_rng_state`."""
    random.setstate(_as_tuples(state['python']))
    kind, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _as_tuples(value):
    # random.setstate wants tuples; a checkpoint round trip may hand back lists
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class _RestoreAfterAdvance:
    """Stands in for ``IterBasedTrainLoop.dataloader_iterator`` while a run resumes.

    mmengine's loop fetches ``num_trained`` batches to advance the data stream; right
    before the next fetch (the first batch to train) this restores the RNG states and
    hands the loop its own iterator back.
    """

    def __init__(self, loop: IterBasedTrainLoop, num_trained: int,
                 on_resumed: Callable[[], None]) -> None:
        self.loop = loop
        self.iterator = loop.dataloader_iterator
        self.num_left = num_trained
        self.on_resumed = on_resumed

    def __iter__(self) -> '_RestoreAfterAdvance':
        return self

    def __next__(self):
        if self.num_left == 0:
            self.on_resumed()
            self.loop.dataloader_iterator = self.iterator
        self.num_left -= 1
        return next(self.iterator)


def _run_resumed_epoch(loop: EpochBasedTrainLoop, num_trained: int,
                       on_resumed: Callable[[], None]) -> None:
    """``EpochBasedTrainLoop.run_epoch`` for the epoch a mid-epoch checkpoint stopped in.

    The first ``num_trained`` batches are fetched but not trained: fetching keeps the
    sampler order and the workers' RNG streams as they were, and batch indices stay those
    of the uninterrupted epoch (hooks use them to find the epoch's last batch).
    """
    runner = loop.runner
    runner.call_hook('before_train_epoch')
    runner.model.train()
    batches: Iterator = iter(loop.dataloader)
    for _ in range(num_trained):
        next(batches)
    on_resumed()
    for idx, data_batch in enumerate(batches, start=num_trained):
        loop.run_iter(idx, data_batch)
    runner.call_hook('after_train_epoch')
    loop._epoch += 1
    del loop.run_epoch  # back to the class's run_epoch for the following epochs


class ExactResume:
    """Saves the RNG states of every rank in checkpoints and restores them on resume.

    Driven by ``CheckpointHook``: :meth:`gather` on every rank before a checkpoint is
    written, :meth:`load` after one is read, :meth:`install` in ``before_train``, and
    :meth:`before_val` / :meth:`after_val` around validation.
    """

    def __init__(self) -> None:
        self._loaded: Optional[dict] = None
        self._loaded_meta: Optional[dict] = None
        self._rng_before_val: Optional[Dict[str, Any]] = None

    def gather(self) -> Dict[str, List[Dict[str, Any]]]:
        """Collect every rank's RNG states; all ranks must call it together.

        Returns:
            dict: ``{'rng': [state of rank 0, state of rank 1, ...]}``.
        """
        # during validation (a best checkpoint re-saves the last one) the training stream
        # is the one saved before validation started
        state = self._rng_before_val or capture_rng_state()
        return dict(rng=all_gather_object(state))

    def before_val(self) -> None:
        self._rng_before_val = capture_rng_state()

    def after_val(self) -> None:
        if self._rng_before_val is not None:
            restore_rng_state(self._rng_before_val)
            self._rng_before_val = None

    def load(self, checkpoint: dict) -> None:
        """Keep the resume state of a checkpoint that was just read."""
        self._loaded = checkpoint.get(RESUME_STATE_KEY)
        self._loaded_meta = checkpoint.get('meta', {})

    def install(self, runner) -> None:
        """If the runner resumed from the loaded checkpoint, arrange for the RNG states to
        be restored right before its first untrained batch (and skip trained batches)."""
        meta, loaded = self._loaded_meta, self._loaded
        self._loaded = self._loaded_meta = None
        # load_from (fine-tuning) also reads a checkpoint, but leaves the iteration at 0
        if meta is None or meta.get('iter', 0) == 0 or runner.iter != meta['iter']:
            return
        rng_state = self._rank_rng_state(loaded)
        loop = runner.train_loop

        def on_resumed() -> None:
            if rng_state is not None:
                restore_rng_state(rng_state)

        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreAfterAdvance(loop, runner.iter, on_resumed)
            return
        num_trained = 0
        if isinstance(loop, EpochBasedTrainLoop):
            num_trained = runner.iter - runner.epoch * len(loop.dataloader)
        if num_trained > 0:
            print_log(f'Resuming in the middle of epoch {runner.epoch + 1}: skipping its '
                      f'{num_trained} batches trained before the checkpoint',
                      logger='current')
            loop.run_epoch = lambda: _run_resumed_epoch(loop, num_trained, on_resumed)
        else:
            on_resumed()

    @staticmethod
    def _rank_rng_state(loaded: Optional[dict]) -> Optional[Dict[str, Any]]:
        rank, world_size = get_rank(), get_world_size()
        states = (loaded or {}).get('rng')
        if not states:
            print_log('The checkpoint holds no RNG states (written before mmdet_lite saved '
                      'them?): the resumed run draws different random numbers than an '
                      'uninterrupted one would', logger='current', level=logging.WARNING)
            return None
        if len(states) != world_size:
            print_log(f'The checkpoint was written by {len(states)} processes, this run has '
                      f'{world_size}: data order and random numbers differ from an '
                      'uninterrupted run', logger='current', level=logging.WARNING)
        return states[rank] if rank < len(states) else None
