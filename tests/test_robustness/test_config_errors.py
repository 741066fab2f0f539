"""A broken config or a mistyped ``--cfg-options`` value: one line naming the file and line,
or the key and the value, instead of a traceback or a silently wrong config. A key the
config lacks is added, as in mmdetection; one that looks like a typo gets a warning.

The tools' cases call ``tools/train.py``'s ``main`` in-process (they fail before torch is
imported), through the ``call_tool`` fixture of ``tests/conftest.py``.
"""
import warnings

import pytest
from helpers_tools import TINY_CONFIG, assert_one_line_error
from mmengine.config import Config

from mmdet_lite.apis.cli import UserInputError, load_config

TINY_LR = Config.fromfile(TINY_CONFIG).optim_wrapper.optimizer.lr


def _write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_syntax_error_names_the_config_file_and_line(call_tool, tmp_path):
    config = _write(tmp_path / 'bad.py', "# a comment\nmodel = dict(type='X',\n")
    proc = call_tool('train', [config])
    line = assert_one_line_error(proc, f'{config}:2: syntax error in config',
                                  "'(' was never closed", "(`model = dict(type='X',`)")
    assert '<unknown>' not in line


def test_syntax_error_in_a_base_names_the_base_and_the_chain(call_tool, tmp_path):
    base = _write(tmp_path / 'bases' / 'broken.py', 'a = 1\nb = 2 +\nc = 3\n')
    _write(tmp_path / 'bases' / 'fine.py', 'd = 4\n')
    child = _write(tmp_path / 'bases' / 'child.py',
                   "_base_ = ['./fine.py', './broken.py']\nx = 1\n")
    top = _write(tmp_path / 'top.py', "_base_ = './bases/child.py'\n")
    proc = call_tool('train', [top])
    assert_one_line_error(proc, f'{base}:2: syntax error in config', '(`b = 2 +`)',
                           f'reached through _base_ from {top} -> {child}')


def test_a_config_line_that_raises_is_named(call_tool, tmp_path):
    base = _write(tmp_path / 'base.py', 'width = 8\nmodel = dict(type=Detector, width=width)\n')
    child = _write(tmp_path / 'child.py', "_base_ = './base.py'\n")
    proc = call_tool('train', [child])
    assert_one_line_error(proc, f"{base}:2: error in config: NameError: name 'Detector' "
                           'is not defined')


def test_init_detector_reports_the_same_syntax_error(tmp_path):
    from mmdet_lite.apis import init_detector
    base = _write(tmp_path / 'base.py', 'model = dict(\n    type="X"\n    depth=1)\n')
    config = _write(tmp_path / 'cfg.py', "_base_ = './base.py'\n")
    with pytest.raises(UserInputError) as info:
        init_detector(config)
    message = str(info.value)
    assert message.startswith(f'{base}:2: syntax error in config: ')
    assert f'reached through _base_ from {config}' in message
    assert '\n' not in message


def test_a_number_given_a_non_number_names_key_value_and_type(call_tool):
    proc = call_tool('train', [TINY_CONFIG, '--cfg-options',
                               'optim_wrapper.optimizer.lr=1e-3x'])
    line = assert_one_line_error(
        proc, f"--cfg-options optim_wrapper.optimizer.lr=1e-3x: expected a number (the "
        f"config has {TINY_LR!r}), got '1e-3x'")
    assert line.startswith('error: --cfg-options')
    # an int, and a number inside a list (param_scheduler.0.end)
    proc = call_tool('train', [TINY_CONFIG, '--cfg-options', 'train_cfg.max_epochs=two'])
    assert_one_line_error(proc, '--cfg-options train_cfg.max_epochs=two: expected a number '
                           "(the config has 1), got 'two'")
    proc = call_tool('train', [TINY_CONFIG, '--cfg-options', 'param_scheduler.0.end=[4]'])
    assert_one_line_error(proc, "param_scheduler.0.end=[4]: expected a number", "got '[4]'")


def test_numbers_none_strings_and_plus_keys_still_go_through():
    cfg = load_config(TINY_CONFIG, ['optim_wrapper.optimizer.lr=1e-3', 'train_cfg.max_epochs=3',
                                    'optim_wrapper.optimizer.weight_decay=0',
                                    'param_scheduler.0.end=2.5',
                                    'default_hooks.checkpoint.interval=None',
                                    'default_hooks.checkpoint.save_best=coco/bbox_mAP',
                                    '+optim_wrapper.optimizer.lr_note=fast'])
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.optim_wrapper.optimizer.weight_decay == 0
    assert cfg.param_scheduler[0].end == 2.5
    assert cfg.default_hooks.checkpoint.interval is None
    assert cfg.default_hooks.checkpoint.save_best == 'coco/bbox_mAP'
    assert cfg.optim_wrapper.optimizer.lr_note == 'fast'
    # a + key is not checked, even where the config has a number
    cfg = load_config(TINY_CONFIG, ['+optim_wrapper.optimizer.lr=auto'])
    assert cfg.optim_wrapper.optimizer.lr == 'auto'


def _cfg_option_warnings(caught) -> list:
    return [str(w.message) for w in caught if '--cfg-options' in str(w.message)]


def test_a_new_key_is_added_without_plus_and_without_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = load_config(TINY_CONFIG, ['train_dataloader.dataset.indices=8',
                                        'model.backbone.init_cfg.type=Pretrained'])
    assert cfg.train_dataloader.dataset.indices == 8
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained')
    assert _cfg_option_warnings(caught) == []


def test_a_key_close_to_an_existing_one_warns_naming_it_and_is_added():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = load_config(TINY_CONFIG, ['optim_wrapper.optimzer.lr=0.1'])
    assert _cfg_option_warnings(caught) == [
        "--cfg-options optim_wrapper.optimzer.lr=0.1: the config has no "
        "'optim_wrapper.optimzer', so 'optim_wrapper.optimzer.lr' is added as a new key; did "
        "you mean the existing key 'optim_wrapper.optimizer', i.e. "
        "optim_wrapper.optimizer.lr=0.1?"]
    assert cfg.optim_wrapper.optimzer == dict(lr=0.1)
    assert cfg.optim_wrapper.optimizer.lr == TINY_LR  # the existing key is untouched
    # a plus key skips the check
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        load_config(TINY_CONFIG, ['+optim_wrapper.optimzer.lr=0.1'])
    assert _cfg_option_warnings(caught) == []


def test_find_key_walks_dicts_and_list_indices():
    from mmdet_lite.apis.config_loading import check_key_exists, find_key
    cfg = load_config(TINY_CONFIG)
    found = find_key(cfg, 'param_scheduler.0.end')
    assert found.found and found.value == cfg.param_scheduler[0].end
    missing = find_key(cfg, 'train_cfg.max_epoch')
    assert (missing.found, missing.prefix, missing.missing) == (False, 'train_cfg', 'max_epoch')
    assert missing.near == ['train_cfg.max_epochs']
    assert find_key(cfg, 'param_scheduler.7.end').missing == '7'
    with pytest.raises(KeyError, match='nearest keys: train_cfg.max_epochs'):
        check_key_exists(cfg, 'train_cfg.max_epoch')


def test_the_train_tool_takes_a_new_key(call_tool, tmp_path):
    """mmdetection's ``train_dataloader.dataset.indices=N`` goes through the tool's
    option parsing (here up to the first error: a missing --resume checkpoint)."""
    proc = call_tool('train', [TINY_CONFIG, '--work-dir', tmp_path / 'work',
                               '--resume', tmp_path / 'gone.pth', '--cfg-options',
                               'train_dataloader.dataset.indices=4'])
    assert_one_line_error(proc, '--resume: checkpoint not found')
