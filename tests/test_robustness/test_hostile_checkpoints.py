"""A checkpoint never runs code: every entry point refuses a pickle with a payload.

The hostile file is a real checkpoint of the tiny Faster R-CNN (so it would load and
evaluate) plus an object whose unpickling creates a marker file. Each entry point a user
has (``--resume`` with and without a path, ``load_from``, ``init_cfg=Pretrained``,
``tools/test.py``, ``init_detector``, ``demo/image_demo.py``) must refuse it with a message
naming the offending global and the explicit opt-in, and the marker must never appear.
Only ``--trust-checkpoint FILE`` (naming that one file) loads it.

Our own checkpoints (optimizer, param schedulers, message hub, EMA) round-trip under the
allow-list with nothing trusted.
"""
import subprocess
from pathlib import Path

import pytest
import torch
from helpers_tools import TINY_CONFIG, run_tool, tiny_data_cfg_options
from mmengine.config import Config

from mmdet_lite.engine.checkpoint import checkpoint_safe_globals


class _TouchOnLoad:
    """Unpickling this creates ``path``: shows whether a file's code ran."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (Path(self.path), )


@pytest.fixture(scope='module')
def tiny_state_dict():
    from mmdet_lite.registry import MODELS
    from mmdet_lite.utils import register_all_modules
    register_all_modules()
    return MODELS.build(Config.fromfile(TINY_CONFIG).model).state_dict()


@pytest.fixture
def hostile(tmp_path, tiny_state_dict):
    """``(checkpoint, marker)``: a fitting Runner-style checkpoint carrying a payload."""
    marker = tmp_path / 'code_ran'
    checkpoint = tmp_path / 'downloaded' / 'epoch_3.pth'
    checkpoint.parent.mkdir()
    torch.save(dict(meta=dict(epoch=3, iter=12), state_dict=tiny_state_dict,
                    payload=_TouchOnLoad(marker)), checkpoint)
    return checkpoint, marker


def _assert_refused(proc: subprocess.CompletedProcess, checkpoint: Path, marker: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    for fragment in (checkpoint.name, 'pickled objects of types pathlib.', 'weights_only=True',
                     'arbitrary code', f'--trust-checkpoint {checkpoint}'):
        assert fragment in line, (fragment, line)
    assert not marker.exists()


@pytest.mark.slow
def test_resume_refuses_a_file_planted_in_the_work_dir(tmp_path, hostile):
    """The reported attack: a crafted epoch_3.pth dropped into a shared work dir."""
    checkpoint, marker = hostile
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    planted = work_dir / 'epoch_3.pth'
    planted.write_bytes(checkpoint.read_bytes())
    (work_dir / 'last_checkpoint').write_text(str(planted))
    before = {path.name: path.read_bytes() for path in work_dir.iterdir()}
    proc = run_tool('train', [TINY_CONFIG, '--work-dir', work_dir, '--resume',
                              '--cfg-options', *tiny_data_cfg_options(tmp_path / 'data')])
    _assert_refused(proc, planted, marker)
    after = {path.name: path.read_bytes() for path in work_dir.iterdir() if path.is_file()}
    assert {name: after.get(name) for name in before} == before  # nothing lost or rewritten
    assert not any(name.endswith('.pth') for name in set(after) - set(before))


@pytest.mark.slow
@pytest.mark.parametrize('how', ['resume_path', 'load_from', 'pretrained_init_cfg'])
def test_train_refuses_it_from_every_option(call_tool, tmp_path, hostile, how):
    checkpoint, marker = hostile
    options = {
        'resume_path': ['--resume', checkpoint, '--cfg-options'],
        'load_from': ['--cfg-options', f'load_from={checkpoint}'],
        'pretrained_init_cfg': ['--cfg-options', '+model.backbone.init_cfg.type=Pretrained',
                                f'+model.backbone.init_cfg.checkpoint={checkpoint}',
                                '+model.backbone.init_cfg.prefix=backbone.'],
    }[how]
    proc = call_tool('train', [TINY_CONFIG, '--work-dir', tmp_path / 'work', *options,
                                        *tiny_data_cfg_options(tmp_path / 'data')])
    _assert_refused(proc, checkpoint, marker)


def test_test_tool_refuses_it(call_tool, tmp_path, hostile):
    checkpoint, marker = hostile
    proc = call_tool('test', [TINY_CONFIG, checkpoint, '--work-dir', tmp_path / 'work',
                                       '--cfg-options', *tiny_data_cfg_options(tmp_path / 'data')])
    _assert_refused(proc, checkpoint, marker)


def test_init_detector_refuses_it(hostile):
    from mmdet_lite.apis import init_detector
    from mmdet_lite.engine import UntrustedCheckpointError
    checkpoint, marker = hostile
    with pytest.raises(UntrustedCheckpointError, match='--trust-checkpoint'):
        init_detector(TINY_CONFIG, str(checkpoint))
    assert not marker.exists()


def test_demo_refuses_it_and_loads_it_only_when_that_file_is_trusted(call_tool, tmp_path, hostile):
    import cv2
    import numpy as np
    checkpoint, marker = hostile
    image = tmp_path / 'img.png'
    cv2.imwrite(str(image), np.full((64, 64, 3), 127, np.uint8))
    argv = [image, TINY_CONFIG, '--weights', checkpoint, '--out-dir', tmp_path / 'out']
    _assert_refused(call_tool('demo/image_demo.py', argv), checkpoint, marker)

    other = tmp_path / 'other.pth'  # trusting another file does not trust this one
    torch.save({}, other)
    proc = call_tool('demo/image_demo.py', [*argv, '--trust-checkpoint', other])
    _assert_refused(proc, checkpoint, marker)

    proc = call_tool('demo/image_demo.py', [*argv, '--trust-checkpoint', checkpoint])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert marker.exists()  # the user asked for exactly this file to be unpickled
    assert (tmp_path / 'out' / 'preds' / 'img.json').is_file()


@pytest.mark.slow
def test_our_own_checkpoints_resume_under_the_allow_list(tmp_path):
    """Optimizer, two param schedulers, message hub and EMA state: nothing else needed."""
    config = tmp_path / 'tiny_ema.py'
    config.write_text(f"_base_ = '{TINY_CONFIG}'\n"
                      "custom_hooks = [dict(type='NumClassCheckHook'), dict(type='EMAHook')]\n")
    data = tiny_data_cfg_options(tmp_path / 'data')
    work_dir = tmp_path / 'work'
    proc = run_tool('train', [config, '--work-dir', work_dir, '--cfg-options',
                              'train_cfg.val_interval=2', *data])
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint = work_dir / 'epoch_1.pth'
    allowed = {name for _, name in checkpoint_safe_globals()}
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint))) <= allowed
    saved = torch.load(checkpoint, weights_only=False)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers',
            'ema_state_dict', 'resume_state'} <= set(saved)
    assert len(saved['param_schedulers']) == 2

    proc = run_tool('train', [config, '--work-dir', work_dir, '--resume', '--cfg-options',
                              'train_cfg.max_epochs=2', 'train_cfg.val_interval=2', *data])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'resumed epoch: 1' in proc.stdout + proc.stderr
    assert 'unpickling it fully' not in proc.stdout + proc.stderr
    assert (work_dir / 'epoch_2.pth').is_file()


def test_the_allow_list_holds_no_callable_that_runs_code():
    """Every allowed global is a class, a numpy reconstructor or our getattr stand-in."""
    import numpy as np
    names = {name for _, name in checkpoint_safe_globals()}
    for name in names:
        assert name.split('.')[0] in ('numpy', 'collections', 'mmengine', 'builtins'), name
    assert [name for name in names if name.startswith('builtins')] == ['builtins.getattr']
    getattr_standin = dict((name, obj) for obj, name in checkpoint_safe_globals())[
        'builtins.getattr']
    assert getattr_standin is not getattr
    with pytest.raises(Exception, match='only HistoryBuffer statistic methods'):
        getattr_standin(np, 'load')
    assert 'numpy.dtypes.ObjectDType' not in names
