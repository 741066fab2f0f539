"""A neck defined outside the package, loaded with ``custom_imports``, trains via tools/train.py.

This is the plugin example of docs/customize_models.md: ``tests/data/plugins/my_neck.py``
registers ``MyNeck`` in mmdet_lite's MODELS; the config imports it by module name, with its
folder on PYTHONPATH.
"""
import json
import os
import os.path as osp
import sys

import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, run_tool, tiny_data_cfg_options
from mmengine.config import Config

from mmdet_lite.engine import load_local_checkpoint

PLUGIN_DIR = osp.join(REPO_ROOT, 'tests', 'data', 'plugins')


@pytest.fixture
def plugin_config(tmp_path):
    """The tiny Faster R-CNN with its FPN replaced by the plugin neck."""
    path = tmp_path / 'tiny_my-neck.py'
    path.write_text(
        f'_base_ = {TINY_CONFIG!r}\n'
        "custom_imports = dict(imports=['my_neck'], allow_failed_imports=False)\n"
        "model = dict(neck=dict(_delete_=True, type='MyNeck', in_channels=[8, 16, 32, 64],\n"
        '                       out_channels=32, num_outs=5))\n')
    return str(path)


@pytest.mark.slow
def test_plugin_neck_trains_from_a_config(plugin_config, tmp_path):
    work_dir = tmp_path / 'work'
    proc = run_tool('train', [plugin_config, '--work-dir', work_dir, '--cfg-options',
                              *tiny_data_cfg_options(tmp_path / 'data'),
                              'train_dataloader.dataset.num_images=4'],
                    env={'PYTHONPATH': os.pathsep.join([PLUGIN_DIR, REPO_ROOT])})
    assert proc.returncode == 0, proc.stderr[-3000:]

    ckpt = load_local_checkpoint(str(work_dir / 'epoch_1.pth'), map_location='cpu')
    neck_keys = sorted(k for k in ckpt['state_dict'] if k.startswith('neck.'))
    # MyNeck's own layout: plain 1x1 convs, no FPN output convs
    assert neck_keys == [f'neck.lateral_convs.{i}.{p}' for i in range(4)
                         for p in ('bias', 'weight')]
    assert ckpt['state_dict']['neck.lateral_convs.3.weight'].shape == (32, 64, 1, 1)

    log_files = [osp.join(root, name) for root, _, names in os.walk(work_dir)
                 for name in names if name.endswith('.json') and 'scalars' not in name]
    with open(log_files[0]) as f:
        train_lines = [line for line in map(json.loads, f) if 'loss' in line]
    assert len(train_lines) == 2  # 4 images, batch size 2, one epoch
    assert all(torch.isfinite(torch.tensor(line['loss'])) for line in train_lines)


def test_without_the_plugin_folder_on_the_path_the_import_fails(plugin_config, monkeypatch):
    monkeypatch.setattr(sys, 'path', [p for p in sys.path if osp.abspath(p) != PLUGIN_DIR])
    with pytest.raises(ImportError, match=r"(?s)Failed to import custom modules from "
                       r"\{'imports': \['my_neck'\].*set `PYTHONPATH`"):
        Config.fromfile(plugin_config)
