"""Bad input to tools/train.py and tools/test.py: one clear line on stderr, exit status 2.

Subprocesses run the real tools for a missing config and a deleted image (the latter
through a real Runner; hostile checkpoints are in tests/test_robustness/); the other cases fail before torch would
be imported, so their ``main`` is called in-process. The last tests cover
``mmdet_lite.apis.cli`` directly.
"""
import json
from pathlib import Path

import pytest
from helpers_tools import (REPO_ROOT, TINY_CONFIG, assert_one_line_error, run_tool,
                           tiny_data_cfg_options)
from mmengine.config import Config

from mmdet_lite.apis.cli import load_config, one_line_message

TOOLS_DIR = Path(REPO_ROOT) / 'tools'


@pytest.mark.slow
def test_missing_config_in_a_real_subprocess(tmp_path):
    proc = run_tool('train', [tmp_path / 'nope.py'])
    assert_one_line_error(proc, 'config file not found', 'nope.py')


def test_missing_checkpoint_for_test_and_resume(call_tool, tmp_path):
    proc = call_tool('test', [TINY_CONFIG, tmp_path / 'missing.pth'])
    assert_one_line_error(proc, 'checkpoint not found', 'missing.pth')
    proc = call_tool('train', [TINY_CONFIG, '--resume', tmp_path / 'gone.pth'])
    assert_one_line_error(proc, '--resume: checkpoint not found', 'gone.pth')


def test_unknown_cfg_option_key_is_added_with_a_warning_naming_the_nearest_key():
    with pytest.warns(UserWarning, match=r"did you mean the existing key "
                      r"'train_cfg\.max_epochs', i\.e\. train_cfg\.max_epochs=2\?"):
        cfg = load_config(TINY_CONFIG, ['train_cfg.max_epoch=2'])
    assert cfg.train_cfg.max_epoch == 2 and cfg.train_cfg.max_epochs == 1


def test_out_must_be_a_pickle(call_tool, tmp_path):
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    proc = call_tool('test', [TINY_CONFIG, checkpoint, '--out', tmp_path / 'r.json'])
    assert_one_line_error(proc, '--out must be a .pkl/.pickle file', 'r.json')


@pytest.mark.slow
def test_deleted_image_names_the_file(tmp_path):
    from mmdet_lite.datasets import ShapesDataset
    dataset_cfg = Config.fromfile(TINY_CONFIG).train_dataloader.dataset
    dataset_cfg.pop('type')
    dataset_cfg.update(data_root=f'{tmp_path}/', pipeline=[])
    ShapesDataset(**dataset_cfg)  # generate the split, as the tool would
    ann = json.loads((tmp_path / 'annotations' / 'instances_train.json').read_text())
    deleted = tmp_path / 'train' / ann['images'][0]['file_name']
    deleted.unlink()

    work_dir = tmp_path / 'work'
    proc = run_tool('train', [TINY_CONFIG, '--work-dir', work_dir, '--cfg-options',
                              *tiny_data_cfg_options(tmp_path), '+train_cfg.val_begin=2'])
    line = assert_one_line_error(proc, str(deleted))
    assert 'not found' in line or 'No such file' in line


def test_new_keys_are_added_with_or_without_the_plus_prefix():
    cfg = load_config(TINY_CONFIG, ['model.backbone.init_cfg.type=Pretrained',
                                    'train_cfg.max_epochs=3'])
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.train_cfg.max_epochs == 3
    cfg = load_config(TINY_CONFIG, ['+model.backbone.init_cfg.type=Pretrained'])
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    with pytest.raises(ValueError, match="expects KEY=VALUE, got 'max_epochs'"):
        load_config(TINY_CONFIG, ['max_epochs'])


def test_one_line_message_of_a_dataloader_worker_error():
    err = FileNotFoundError(
        'Caught FileNotFoundError in DataLoader worker process 0.\n'
        'Original Traceback (most recent call last):\n'
        '  File "loading.py", line 10, in transform\n'
        "FileNotFoundError: [Errno 2] No such file or directory: 'data/x.jpg'\n")
    assert one_line_message(err) == \
        "FileNotFoundError: [Errno 2] No such file or directory: 'data/x.jpg'"
    assert one_line_message(KeyError("unknown key 'a'")) == "unknown key 'a'"
    assert one_line_message(ValueError('first\n  second')) == 'first second'


def test_tiny_config_points_at_a_data_root_given_on_the_command_line(tmp_path):
    cfg = load_config(TINY_CONFIG, tiny_data_cfg_options(tmp_path))
    root = f'{tmp_path}/'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == root
        assert cfg[loader].batch_size == 2 and cfg[loader].num_workers == 0
    assert cfg.val_evaluator.ann_file == str(Path(root) / 'annotations' / 'instances_val.json')
    assert cfg.test_evaluator.ann_file == cfg.val_evaluator.ann_file
    assert cfg.train_dataloader.dataset.num_images == 8
    assert cfg.val_dataloader.dataset.num_images == 4
    assert cfg.model.neck.in_channels == [8, 16, 32, 64]
