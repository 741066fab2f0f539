"""``--resume`` without a path when ``last_checkpoint`` points nowhere (issue 13).

The work dir of a run copied from another machine names that machine's paths in
``last_checkpoint``; a deleted checkpoint leaves the pointer dangling. Either way a bare
``--resume`` continues from the newest checkpoint file in the work dir, and says so.
"""
import importlib.util
import os
import os.path as osp

import pytest
from helpers_tools import TRAIN_TOOL
from mmengine.config import Config
from robust_training_helpers import describe, train, write_config

from mmdet_lite.engine import resume_checkpoint
from mmdet_lite.engine.resume_checkpoint import find_resume_checkpoint, newest_checkpoint_file


def _train_tool():
    spec = importlib.util.spec_from_file_location('train_tool', TRAIN_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, content: bytes = b'weights', mtime=None) -> str:
    path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return str(path)


def _pointer(work_dir, target: str) -> None:
    (work_dir / 'last_checkpoint').write_text(target)


@pytest.fixture
def logged(monkeypatch):
    """The messages find_resume_checkpoint logs (mmengine's logger keeps the stream it
    started with, which capsys does not see)."""
    messages = []
    monkeypatch.setattr(resume_checkpoint, 'print_log',
                        lambda msg, *args, **kwargs: messages.append(msg))
    return messages


@pytest.fixture
def work_dir(tmp_path):
    """epoch_2.pth, epoch_10.pth (the newest: numbers, not names, compare) and an empty
    epoch_11.pth (what a full disk leaves) and a partial write."""
    for name in ('epoch_2.pth', 'epoch_10.pth'):
        _write(tmp_path / name)
    _write(tmp_path / 'epoch_11.pth', b'')
    _write(tmp_path / 'epoch_12.pth.tmp')
    return tmp_path


@pytest.mark.parametrize('named', ['/elsewhere/epoch_3.pth', 'deleted'])
def test_auto_resume_falls_back_to_the_newest_checkpoint(work_dir, named, logged):
    if named == 'deleted':
        named = _write(work_dir / 'epoch_3.pth')
        os.remove(named)
    _pointer(work_dir, named)
    cfg = Config(dict(work_dir=str(work_dir), resume=False, load_from=None))
    _train_tool().apply_resume(cfg, 'auto')
    newest = str(work_dir / 'epoch_10.pth')
    assert cfg.resume is True and cfg.load_from == newest
    (message, ) = logged
    assert f'names {named}, which does not exist' in message
    assert f'resuming from the newest checkpoint in the work dir instead: {newest}' in message


def test_a_valid_pointer_is_left_to_mmengine(work_dir):
    _pointer(work_dir, str(work_dir / 'epoch_2.pth'))  # older than epoch_10, but named
    cfg = Config(dict(work_dir=str(work_dir), resume=False, load_from='pretrained.pth'))
    _train_tool().apply_resume(cfg, 'auto')
    # mmengine's Runner reads the same file from last_checkpoint, and logs that it did
    assert cfg.resume is True and cfg.load_from is None
    assert find_resume_checkpoint(str(work_dir)) == str(work_dir / 'epoch_2.pth')


def test_no_pointer_or_an_empty_target_falls_back_too(work_dir):
    assert find_resume_checkpoint(str(work_dir)) == str(work_dir / 'epoch_10.pth')
    _pointer(work_dir, str(work_dir / 'epoch_11.pth'))  # 0 bytes
    assert find_resume_checkpoint(str(work_dir)) == str(work_dir / 'epoch_10.pth')


def test_without_checkpoints_training_starts_from_scratch(tmp_path, logged):
    _pointer(tmp_path, '/elsewhere/epoch_3.pth')
    cfg = Config(dict(work_dir=str(tmp_path), resume=False, load_from=None))
    _train_tool().apply_resume(cfg, 'auto')
    # not resume=True: mmengine would try to load the dangling pointer's file
    assert cfg.resume is False and cfg.load_from is None
    (message, ) = logged
    assert 'holds no epoch_*.pth or iter_*.pth checkpoint: training from the start' in message


def test_newest_is_the_highest_number_and_mtime_decides_between_kinds(tmp_path):
    assert newest_checkpoint_file(str(tmp_path / 'missing')) is None
    _write(tmp_path / 'iter_9.pth', mtime=1000)
    _write(tmp_path / 'iter_12.pth', mtime=900)  # the highest iteration, whatever its mtime
    assert newest_checkpoint_file(str(tmp_path)) == str(tmp_path / 'iter_12.pth')
    _write(tmp_path / 'epoch_1.pth', mtime=2000)  # another kind: the later file
    assert newest_checkpoint_file(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')
    os.utime(tmp_path / 'epoch_1.pth', (800, 800))
    assert newest_checkpoint_file(str(tmp_path)) == str(tmp_path / 'iter_12.pth')
    _write(tmp_path / 'best_coco_bbox_mAP_epoch_5.pth', mtime=3000)  # not a resume point
    assert newest_checkpoint_file(str(tmp_path)) == str(tmp_path / 'iter_12.pth')


@pytest.mark.slow
def test_train_resumes_past_a_pointer_from_another_machine(tmp_path):
    data_root = tmp_path / 'data'
    config = write_config(tmp_path, 'one_epoch')
    work_dir = tmp_path / 'work'
    result = train(config, work_dir, data_root)
    assert result.returncode == 0, describe(result)
    _pointer(work_dir, '/elsewhere/work/epoch_1.pth')
    result = train(config, work_dir, data_root, resume='auto',
                   cfg_options=['train_cfg.max_epochs=2', '+train_cfg.val_begin=3'])
    assert result.returncode == 0, describe(result)
    output = result.stdout + result.stderr
    assert (f'--resume: {osp.join(work_dir, "last_checkpoint")} names '
            '/elsewhere/work/epoch_1.pth, which does not exist') in output
    assert f'instead: {work_dir / "epoch_1.pth"}' in output
    assert 'resumed epoch: 1, iter: 4' in output
    assert (work_dir / 'epoch_2.pth').is_file()
