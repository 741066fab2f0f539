"""YOLOXModeSwitchHook: skip the mixing transforms and turn on the L1 loss, once."""
import logging
import types

from torch import nn

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
