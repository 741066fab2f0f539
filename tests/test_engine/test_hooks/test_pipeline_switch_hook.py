"""PipelineSwitchHook: the new pipeline from switch_epoch on, also with persistent workers."""
import logging
import types

import numpy as np
import pytest
from mmcv.transforms import Compose
from torch.utils.data import DataLoader, Dataset

from mmdet_lite.datasets.transforms import RandomFlip
from mmdet_lite.engine.hooks import PipelineSwitchHook
from mmdet_lite.registry import HOOKS

FLIP = [dict(type='RandomFlip', prob=1.0)]


class RowDataset(Dataset):
    """Two 1x4 images [0, 1, 2, 3]; an item is its pipeline output's first pixel."""

    def __init__(self):
        self.pipeline = Compose([])

    def __len__(self):
        return 2

    def __getitem__(self, idx):
        img = np.arange(4, dtype=np.uint8).reshape(1, 4, 1).repeat(3, axis=2)
        return int(self.pipeline(dict(img=img, img_shape=(1, 4)))['img'][0, 0, 0])


def _runner(loader, epoch):
    return types.SimpleNamespace(train_dataloader=loader, epoch=epoch,
                                 logger=logging.getLogger('pipeline_switch_test'))


def test_builds_the_pipeline_from_the_registry_at_switch_epoch():
    hook = HOOKS.build(dict(type='PipelineSwitchHook', switch_epoch=2, switch_pipeline=FLIP))
    assert isinstance(hook, PipelineSwitchHook)
    loader = DataLoader(RowDataset(), batch_size=None)
    hook.before_train_epoch(_runner(loader, 1))
    assert list(loader) == [0, 0]
    hook.before_train_epoch(_runner(loader, 2))
    (flip, ) = loader.dataset.pipeline.transforms
    assert isinstance(flip, RandomFlip) and flip.prob == 1.0
    assert list(loader) == [3, 3]  # the last pixel comes first


def test_switches_once_even_when_resumed_after_switch_epoch():
    hook = PipelineSwitchHook(switch_epoch=2, switch_pipeline=FLIP)
    loader = DataLoader(RowDataset(), batch_size=None)
    hook.before_train_epoch(_runner(loader, 5))  # a run resumed at epoch 5 switches at once
    switched = loader.dataset.pipeline
    assert len(switched.transforms) == 1
    hook.before_train_epoch(_runner(loader, 6))
    assert loader.dataset.pipeline is switched  # not rebuilt


def test_stand_in_loader_flags_for_persistent_workers():
    hook = PipelineSwitchHook(switch_epoch=1, switch_pipeline=FLIP)
    loader = types.SimpleNamespace(dataset=RowDataset(), persistent_workers=True,
                                   _iterator=object())
    hook.before_train_epoch(_runner(loader, 0))
    assert not hasattr(loader, '_DataLoader__initialized')
    hook.before_train_epoch(_runner(loader, 1))
    assert loader._DataLoader__initialized is False and loader._iterator is None
    hook.before_train_epoch(_runner(loader, 2))
    assert loader._DataLoader__initialized is True


@pytest.mark.slow
def test_persistent_workers_see_the_new_pipeline():
    loader = DataLoader(RowDataset(), batch_size=None, num_workers=1, persistent_workers=True)
    hook = PipelineSwitchHook(switch_epoch=1, switch_pipeline=FLIP)
    for epoch, expected in ((0, [0, 0]), (1, [3, 3]), (2, [3, 3])):
        hook.before_train_epoch(_runner(loader, epoch))
        assert list(loader) == expected, epoch
