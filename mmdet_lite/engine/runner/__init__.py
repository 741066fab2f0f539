"""mmengine's training loops, extended for exact resume (registered under mmengine's names
in mmdet_lite's ``LOOPS``)."""
from .loops import EpochBasedTrainLoop, IterBasedTrainLoop
from .worker_seeding import EpochSeededWorkers, seed_worker

__all__ = ['EpochBasedTrainLoop', 'IterBasedTrainLoop', 'EpochSeededWorkers', 'seed_worker']
