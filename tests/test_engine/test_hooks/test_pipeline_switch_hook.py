"""PipelineSwitchHook: the new pipeline from switch_epoch on, also with persistent workers,
logged at INFO level with the epoch and the new transforms."""
import logging
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.model import BaseModel
from torch import nn
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


def test_logs_the_epoch_and_the_new_pipeline_at_info(caplog):
    hook = PipelineSwitchHook(switch_epoch=2, switch_pipeline=[
        dict(type='RandomFlip', prob=1.0), dict(type='PackDetInputs')])
    loader = DataLoader(RowDataset(), batch_size=None)
    with caplog.at_level(logging.INFO, logger='pipeline_switch_test'):
        hook.before_train_epoch(_runner(loader, 1))
        assert caplog.records == []  # nothing before the switch
        hook.before_train_epoch(_runner(loader, 2))
        hook.before_train_epoch(_runner(loader, 3))  # once only
    (record, ) = caplog.records
    assert record.levelno == logging.INFO
    # the epoch as the training log counts it (1-based): epoch index 2 is "Epoch(train) [3]"
    assert record.getMessage() == ('Switch pipeline now! From epoch 3 (switch_epoch=2) the '
                                   'training pipeline is: RandomFlip -> PackDetInputs')


class PixelModel(BaseModel):
    """Records the first pixels of each training batch; its loss is a dummy weight's."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.batches = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.batches.append(list(inputs))
        return dict(loss=(self.weight - 1).pow(2).sum())


def test_switch_happens_in_a_runner_and_is_in_its_log(tmp_path):
    from mmengine.runner import Runner
    model = PixelModel()
    loader = DataLoader(RowDataset(), batch_size=2, collate_fn=lambda batch: dict(inputs=batch))
    runner = Runner(
        model=model, work_dir=str(tmp_path), train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=3),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type='PipelineSwitchHook', switch_epoch=1, switch_pipeline=FLIP)],
        default_scope='mmdet_lite', experiment_name=f'pipeline_switch_{tmp_path.name}')
    runner.train()
    assert model.batches == [[0, 0], [3, 3], [3, 3]]  # flipped from the 2nd epoch on
    log = (Path(runner.log_dir) / f'{runner.timestamp}.log').read_text().splitlines()
    (switch, ) = [i for i, line in enumerate(log) if 'Switch pipeline now!' in line]
    assert log[switch].endswith(' - INFO - Switch pipeline now! From epoch 2 (switch_epoch=1) '
                                'the training pipeline is: RandomFlip')
    epoch_lines = [i for i, line in enumerate(log) if 'Epoch(train)' in line]
    assert len(epoch_lines) == 3
    # after epoch 1's log line, before epoch 2's
    assert 'Epoch(train) [1]' in log[epoch_lines[0]] and epoch_lines[0] < switch
    assert 'Epoch(train) [2]' in log[epoch_lines[1]] and switch < epoch_lines[1]
