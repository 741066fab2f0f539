"""The state a checkpoint needs, beyond mmengine's, for a resumed run to match an
uninterrupted one bit for bit: the random number generators of every rank, and where in the
data stream the checkpoint stopped.

mmengine restores the model, optimizer, schedulers, message hub and iteration counter, but
not the RNG streams, and its ``EpochBasedTrainLoop`` restarts an interrupted epoch at its
first batch (a checkpoint written mid-epoch, ``CheckpointHook(by_epoch=False)``, would
train those batches twice).

:class:`ExactResume` (owned by :class:`~mmdet_lite.engine.hooks.CheckpointHook`) records
each rank's RNG states with every checkpoint. On resume, mmdet_lite's train loops
(:mod:`mmdet_lite.engine.runner.loops`, which configs get under mmengine's loop names) put
them back at the point of the loop where the checkpoint was taken: at the start of the
next epoch, or right before the first batch the checkpoint had not trained, after skipping
the batches it had. Validation runs see a saved-and-restored RNG, so they do not shift the
training stream either (a resumed run does not repeat the validation that followed its
checkpoint).

Exactness also needs the same world size and ``randomness=dict(seed=..., deterministic=True)``
for bitwise-equal kernels. DataLoader workers, persistent or not, reseed from the epoch
(:mod:`mmdet_lite.engine.runner.worker_seeding`), so they hold no state to save.
"""
import logging
import random
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.logging import print_log

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
        """If the runner resumed from the loaded checkpoint, have its train loop restore
        the RNG states where the checkpoint was taken.

        Args:
            runner (Runner): The runner, in ``before_train`` (its counters restored).
        """
        meta, loaded = self._loaded_meta, self._loaded
        self._loaded = self._loaded_meta = None
        # load_from (fine-tuning) also reads a checkpoint, but leaves the iteration at 0
        if meta is None or meta.get('iter', 0) == 0 or runner.iter != meta['iter']:
            return
        rng_state = self._rank_rng_state(loaded)

        def on_resumed() -> None:
            if rng_state is not None:
                restore_rng_state(rng_state)

        loop = runner.train_loop
        if hasattr(loop, 'restore_before_first_batch'):
            loop.restore_before_first_batch(on_resumed)
            return
        # a loop of mmengine's (train_cfg without `type`) or a custom one: it resumes at
        # the start of the epoch (or advances the data stream) as it does
        print_log(f'{type(loop).__name__} is not one of mmdet_lite\'s train loops '
                  "(train_cfg = dict(type='EpochBasedTrainLoop' or 'IterBasedTrainLoop', "
                  '...)): the RNG states are restored now, and the resumed run may differ '
                  'from an uninterrupted one', logger='current', level=logging.WARNING)
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
