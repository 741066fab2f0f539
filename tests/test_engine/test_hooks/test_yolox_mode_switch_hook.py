"""YOLOXModeSwitchHook: skip the mixing transforms and turn on the L1 loss, once, and log
both at INFO level with the epoch."""
import logging
import types
from pathlib import Path

import torch
from mmengine.model import BaseModel
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmdet_lite.engine.hooks import YOLOXModeSwitchHook
from mmdet_lite.registry import HOOKS


class MixDataset:
    """Records update_skip_type_keys calls, as MultiImageMixDataset receives them."""

    def __init__(self):
        self.calls = []

    def update_skip_type_keys(self, keys):
        self.calls.append(keys)


class Detector(nn.Module):

    def __init__(self):
        super().__init__()
        self.bbox_head = nn.Module()
        self.bbox_head.use_l1 = False


def _runner(model, epoch, max_epochs=10, persistent_workers=False):
    loader = types.SimpleNamespace(dataset=MixDataset(), persistent_workers=persistent_workers,
                                   _iterator=object())
    return types.SimpleNamespace(model=model, epoch=epoch, max_epochs=max_epochs,
                                 train_dataloader=loader,
                                 logger=logging.getLogger('yolox_switch_test'))


def test_registered_with_mmdetection_defaults():
    hook = HOOKS.build(dict(type='YOLOXModeSwitchHook'))
    assert isinstance(hook, YOLOXModeSwitchHook)
    assert hook.num_last_epochs == 15
    assert tuple(hook.skip_type_keys) == ('Mosaic', 'RandomAffine', 'MixUp')


def test_switches_at_epoch_index_max_minus_last_minus_one():
    # max_epochs=10, num_last_epochs=3: epoch + 1 >= 7, i.e. from epoch index 6
    model = Detector()
    hook = YOLOXModeSwitchHook(num_last_epochs=3, skip_type_keys=('Mosaic', ))
    runner = _runner(model, epoch=5)
    hook.before_train_epoch(runner)
    assert runner.train_dataloader.dataset.calls == [] and not model.bbox_head.use_l1
    runner.epoch = 6
    hook.before_train_epoch(runner)
    assert runner.train_dataloader.dataset.calls == [('Mosaic', )]
    assert model.bbox_head.use_l1 is True
    runner.epoch = 7
    hook.before_train_epoch(runner)
    assert runner.train_dataloader.dataset.calls == [('Mosaic', )]  # only once


def test_resumed_run_switches_at_its_first_epoch_and_restarts_persistent_workers():
    model = Detector()
    hook = YOLOXModeSwitchHook(num_last_epochs=3)
    runner = _runner(model, epoch=8, persistent_workers=True)
    hook.before_train_epoch(runner)
    loader = runner.train_dataloader
    assert loader.dataset.calls == [('Mosaic', 'RandomAffine', 'MixUp')]
    assert loader._DataLoader__initialized is False and loader._iterator is None
    runner.epoch = 9
    hook.before_train_epoch(runner)
    assert loader._DataLoader__initialized is True


def test_semi_supervised_wrapper_switches_its_detector():
    wrapper = nn.Module()
    wrapper.detector = Detector()
    YOLOXModeSwitchHook(num_last_epochs=3).before_train_epoch(_runner(wrapper, epoch=9))
    assert wrapper.detector.bbox_head.use_l1 is True


def test_logs_the_epoch_the_skipped_transforms_and_the_l1_loss(caplog):
    hook = YOLOXModeSwitchHook(num_last_epochs=3)
    runner = _runner(Detector(), epoch=5)
    with caplog.at_level(logging.INFO, logger='yolox_switch_test'):
        hook.before_train_epoch(runner)
        assert caplog.records == []
        for epoch in (6, 7):  # switches at index 6, once
            runner.epoch = epoch
            hook.before_train_epoch(runner)
    assert [r.levelno for r in caplog.records] == [logging.INFO, logging.INFO]
    # epoch index 6 is the 7th epoch of 10: 4 epochs are left
    assert [r.getMessage() for r in caplog.records] == [
        'No mosaic and mixup aug now! From epoch 7 (the last 4 of 10 epochs) the training '
        'pipeline skips Mosaic, RandomAffine, MixUp',
        'Add additional L1 loss now! From epoch 7 bbox_head.use_l1 = True']


class SkipAwareDataset(Dataset):
    """Items are 1 once update_skip_type_keys was called (as a MultiImageMixDataset skips)."""

    def __init__(self):
        self.skip_type_keys = None

    def update_skip_type_keys(self, keys):
        self.skip_type_keys = tuple(keys)

    def __len__(self):
        return 2

    def __getitem__(self, idx):
        return int(self.skip_type_keys is not None)


class L1AwareDetector(BaseModel):
    """Records (items, bbox_head.use_l1) of each training batch."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.bbox_head = nn.Module()
        self.bbox_head.use_l1 = False
        self.batches = []

    def forward(self, inputs, data_samples=None, mode='tensor'):
        self.batches.append((list(inputs), self.bbox_head.use_l1))
        return dict(loss=(self.weight - 1).pow(2).sum())


def test_switch_happens_in_a_runner_and_is_in_its_log(tmp_path):
    from mmengine.runner import Runner
    model = L1AwareDetector()
    loader = DataLoader(SkipAwareDataset(), batch_size=2,
                        collate_fn=lambda batch: dict(inputs=batch))
    runner = Runner(
        model=model, work_dir=str(tmp_path), train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=4),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(checkpoint=None),
        custom_hooks=[dict(type='YOLOXModeSwitchHook', num_last_epochs=2, priority=48)],
        default_scope='mmdet_lite', experiment_name=f'yolox_switch_{tmp_path.name}')
    runner.train()
    # epoch + 1 >= 4 - 2: from the 2nd epoch (index 1) on
    assert model.batches == [([0, 0], False), ([1, 1], True), ([1, 1], True), ([1, 1], True)]
    assert loader.dataset.skip_type_keys == ('Mosaic', 'RandomAffine', 'MixUp')
    log = (Path(runner.log_dir) / f'{runner.timestamp}.log').read_text().splitlines()
    switch = [i for i, line in enumerate(log) if ' - INFO - No mosaic and mixup aug now! ' in line]
    l1 = [i for i, line in enumerate(log) if ' - INFO - Add additional L1 loss now! ' in line]
    assert len(switch) == len(l1) == 1
    assert log[switch[0]].endswith('From epoch 2 (the last 3 of 4 epochs) the training '
                                   'pipeline skips Mosaic, RandomAffine, MixUp')
    assert log[l1[0]].endswith('From epoch 2 bbox_head.use_l1 = True')
    epoch_lines = [i for i, line in enumerate(log) if 'Epoch(train)' in line]
    assert 'Epoch(train) [1]' in log[epoch_lines[0]] and 'Epoch(train) [2]' in log[epoch_lines[1]]
    assert epoch_lines[0] < switch[0] < l1[0] < epoch_lines[1]
