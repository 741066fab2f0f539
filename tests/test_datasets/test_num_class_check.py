"""num_classes check: every head must match len(dataset.metainfo['classes'])."""
from types import SimpleNamespace

import pytest
from torch import nn

from mmdet_lite.engine.hooks import NumClassCheckHook, check_num_classes
from mmdet_lite.engine.hooks import num_class_check_hook as hook_module
from mmdet_lite.registry import HOOKS

THREE = dict(classes=('circle', 'rectangle', 'triangle'))


def mask_rcnn_cfg(num_classes):
    return dict(
        type='MaskRCNN',
        backbone=dict(type='ResNet', depth=50, num_classes=1000),  # never a detection head
        rpn_head=dict(type='RPNHead', num_classes=1),
        roi_head=dict(
            type='StandardRoIHead',
            bbox_head=dict(type='Shared2FCBBoxHead', num_classes=num_classes),
            mask_head=dict(type='FCNMaskHead', num_classes=num_classes)))


@pytest.fixture
def logged(monkeypatch):
    """(message, level) of each print_log call of the hook module."""
    messages = []
    monkeypatch.setattr(hook_module, 'print_log',
                        lambda msg, logger=None, level=20: messages.append((msg, level)))
    return messages


def test_matching_config_passes_and_rpn_is_skipped(logged):
    # RPN (num_classes=1) and backbone (num_classes=1000) differ from 3, yet all pass.
    check_num_classes(mask_rcnn_cfg(3), THREE)
    assert logged == []  # no 'cannot check' warning: the check really ran
    # Only an RPN with exactly one class is skipped, and only the RPN: with 2 classes
    # it is a mismatch, and a non-RPN head with one class is one too.
    cfg = mask_rcnn_cfg(3)
    cfg['rpn_head']['num_classes'] = 2
    with pytest.raises(ValueError, match=r'model\.rpn_head\.num_classes=2'):
        check_num_classes(cfg, THREE)
    cfg = mask_rcnn_cfg(3)
    cfg['roi_head']['bbox_head']['num_classes'] = 1
    with pytest.raises(ValueError, match=r'model\.roi_head\.bbox_head\.num_classes=1\b'):
        check_num_classes(cfg, THREE)


def test_mismatch_names_both_numbers_and_config_keys():
    with pytest.raises(ValueError) as err:
        check_num_classes(mask_rcnn_cfg(80), THREE)
    message = str(err.value)
    assert 'has 3 classes' in message
    assert 'model.roi_head.bbox_head.num_classes=80' in message
    assert 'model.roi_head.mask_head.num_classes=80' in message
    assert 'model.rpn_head' not in message and 'backbone' not in message
    assert 'without background' in message


def test_background_counted_in_num_classes_is_caught():
    cfg = dict(type='RetinaNet', bbox_head=dict(type='RetinaHead', num_classes=4))
    with pytest.raises(ValueError, match=r'has 3 classes.*model\.bbox_head\.num_classes=4'):
        check_num_classes(cfg, THREE)


def test_list_of_heads_gets_indexed_keys():
    cfg = dict(roi_head=dict(bbox_head=[dict(num_classes=3), dict(num_classes=2)]))
    with pytest.raises(ValueError, match=r'model\.roi_head\.bbox_head\[1\]\.num_classes=2'):
        check_num_classes(cfg, THREE)


def test_classes_given_as_a_str():
    with pytest.raises(TypeError, match=r"\('circle',\)"):
        check_num_classes(mask_rcnn_cfg(1), dict(classes='circle'))


class Head(nn.Module):

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes


class TinyDetector(nn.Module):

    def __init__(self, num_classes):
        super().__init__()
        self.rpn_head = Head(1)
        self.roi_head = nn.Module()
        self.roi_head.bbox_head = nn.ModuleList([Head(num_classes)])
        self.roi_head.mask_head = Head(num_classes)


def fake_runner(num_classes, train_meta, val_meta=THREE):
    dataset = lambda meta: SimpleNamespace(metainfo=meta)  # noqa: E731
    return SimpleNamespace(
        model=TinyDetector(num_classes),
        train_dataloader=SimpleNamespace(dataset=dataset(train_meta)),
        val_dataloader=SimpleNamespace(dataset=dataset(val_meta)))


def test_hook_checks_the_built_model_before_each_epoch():
    hook = HOOKS.build(dict(type='NumClassCheckHook'))
    assert isinstance(hook, NumClassCheckHook)
    hook.before_train_epoch(fake_runner(3, THREE))
    hook.before_val_epoch(fake_runner(3, THREE))
    with pytest.raises(ValueError) as err:
        hook.before_train_epoch(fake_runner(80, THREE))
    assert 'has 3 classes' in str(err.value)
    assert 'model.roi_head.bbox_head[0].num_classes=80' in str(err.value)
    assert 'model.roi_head.mask_head.num_classes=80' in str(err.value)
    with pytest.raises(ValueError, match='has 2 classes'):
        hook.before_val_epoch(fake_runner(3, THREE, val_meta=dict(classes=('a', 'b'))))


def test_hook_without_classes_only_warns(logged):
    # An 80-class model fails against THREE (test above); with no class list it only warns.
    NumClassCheckHook().before_train_epoch(fake_runner(80, dict()))
    assert logged == [("SimpleNamespace has no metainfo['classes']; cannot check "
                       'num_classes of the heads', 30)]
    NumClassCheckHook().before_val_epoch(fake_runner(80, THREE, val_meta=dict(other=1)))
    assert len(logged) == 2 and logged[1][1] == 30
    assert "no metainfo['classes']" in logged[1][0]
