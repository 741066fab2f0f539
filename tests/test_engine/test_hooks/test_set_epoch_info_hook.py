"""SetEpochInfoHook passes the 0-based epoch to model.set_epoch, through a DDP-like wrapper."""
import types

from mmengine.model import MMDistributedDataParallel
from torch import nn

from mmdet_lite.engine.hooks import SetEpochInfoHook
from mmdet_lite.registry import HOOKS


class EpochAware(nn.Module):

    def __init__(self):
        super().__init__()
        self.epochs = []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def test_calls_set_epoch_before_each_train_epoch():
    hook = HOOKS.build(dict(type='SetEpochInfoHook'))
    assert isinstance(hook, SetEpochInfoHook)
    model = EpochAware()
    for epoch in (0, 1, 5):
        hook.before_train_epoch(types.SimpleNamespace(model=model, epoch=epoch))
    assert model.epochs == [0, 1, 5]


def test_unwraps_a_model_wrapper():
    model = EpochAware()
    # a wrapper instance without running DDP's constructor: is_model_wrapper checks the type
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    nn.Module.__init__(wrapper)
    wrapper.module = model
    SetEpochInfoHook().before_train_epoch(types.SimpleNamespace(model=wrapper, epoch=3))
    assert model.epochs == [3]
