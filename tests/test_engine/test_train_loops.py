"""mmdet_lite's train loops (registered under mmengine's names) and epoch-seeded workers."""
import random

import numpy as np
import pytest
import torch
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from torch.utils.data import DataLoader, Dataset

from mmdet_lite.engine.runner import (EpochBasedTrainLoop, EpochSeededWorkers,
                                      IterBasedTrainLoop, seed_worker)


@pytest.mark.parametrize('name, loop', [('EpochBasedTrainLoop', EpochBasedTrainLoop),
                                        ('IterBasedTrainLoop', IterBasedTrainLoop)])
def test_configs_in_the_mmdet_lite_scope_get_our_loops(name, loop):
    # what Runner.build_train_loop does for train_cfg = dict(type=name, ...)
    with MMENGINE_LOOPS.switch_scope_and_registry('mmdet_lite') as registry:
        assert registry.get(name) is loop


class _RandomDraws(Dataset):
    """Each sample is a draw of Python's, numpy's and torch's generators."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, idx):
        return random.random(), float(np.random.rand()), float(torch.rand(()))


def _draws(epochs, persistent: bool):
    loader = DataLoader(_RandomDraws(), batch_size=2, num_workers=1,
                        persistent_workers=persistent, collate_fn=list)
    workers = EpochSeededWorkers(loader, seed=5, rank=0)
    draws = {}
    for epoch in epochs:
        workers.set_epoch(epoch)
        draws[epoch] = [sample for batch in loader for sample in batch]
    return draws


def test_worker_draws_depend_on_the_epoch_only():
    straight = _draws(range(3), persistent=True)
    assert straight[0] != straight[1] != straight[2]
    # a resumed run's fresh persistent worker, and workers started every epoch
    assert _draws([2], persistent=True) == {2: straight[2]}
    assert _draws([1, 2], persistent=False) == {1: straight[1], 2: straight[2]}


def test_creating_the_worker_iterator_leaves_the_global_rng_alone():
    loader = DataLoader(_RandomDraws(), batch_size=2, num_workers=1, collate_fn=list)
    EpochSeededWorkers(loader, seed=5, rank=0)
    state = torch.get_rng_state()
    iterator = iter(loader)  # draws the workers' base seed from loader.generator
    assert torch.equal(torch.get_rng_state(), state)
    del iterator


def test_seed_worker_mixes_every_argument():
    def draws(*args):
        seed_worker(*args)
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    base = draws(0, 0, 0, 0)
    assert draws(0, 0, 0, 0) == base
    others = {draws(1, 0, 0, 0), draws(0, 1, 0, 0), draws(0, 0, 1, 0), draws(0, 0, 0, 1)}
    assert base not in others and len(others) == 4
