"""Run ``tools/train.py`` on configs derived from the tiny shapes config, and read what the
runs leave behind (scalar logs, checkpoints), for the robustness tests."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import torch
from helpers_tools import (REPO_ROOT, TINY_CONFIG, TRAIN_TOOL, run_tool, tiny_data_cfg_options,
                           tool_env)

from mmdet_lite.engine import load_local_checkpoint

PLUGIN_DIR = osp.dirname(osp.abspath(__file__))
PLUGIN_ENV = {'PYTHONPATH': os.pathsep.join([REPO_ROOT, PLUGIN_DIR])}

# Iteration-based variant of the tiny config: InfiniteSampler, a checkpoint and a
# validation every 3 iterations (so checkpoints fall mid data-epoch: 4 batches per epoch),
# deterministic kernels.
ITER_BASED = '''
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=7, val_interval=3)
train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=-1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=3, deterministic=True)
'''


def write_config(folder: str, name: str, body: str = '') -> str:
    """Write ``folder/name.py``: the tiny config, this folder's plugins, then ``body``."""
    path = osp.join(str(folder), f'{name}.py')
    with open(path, 'w') as f:
        f.write(f'_base_ = {TINY_CONFIG!r}\n'
                "custom_imports = dict(imports=['robust_training_plugins'], "
                'allow_failed_imports=False)\n' + body)
    return path


def train(config: str, work_dir, data_root, cfg_options: Sequence[str] = (),
          resume: Optional[str] = None) -> subprocess.CompletedProcess:
    """``tools/train.py config --work-dir work_dir [--resume [resume]] --cfg-options ...``.

    ``resume='auto'`` passes a bare ``--resume``.
    """
    args = [config, '--work-dir', str(work_dir)]
    if resume is not None:
        args += ['--resume'] + ([] if resume == 'auto' else [resume])
    args += ['--cfg-options', *tiny_data_cfg_options(data_root), *cfg_options]
    return run_tool('train', args, env=PLUGIN_ENV)


def torchrun_train(config: str, work_dir, data_root, cfg_options: Sequence[str] = (),
                   nproc: int = 2) -> subprocess.CompletedProcess:
    """``tools/train.py --launcher pytorch`` in ``nproc`` CPU processes through torchrun."""
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc),
           '--master_port', str(port), TRAIN_TOOL, config, '--launcher', 'pytorch',
           '--work-dir', str(work_dir), '--cfg-options', *tiny_data_cfg_options(data_root),
           *cfg_options]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=tool_env(PLUGIN_ENV), capture_output=True,
                          text=True, timeout=300)


def describe(result: subprocess.CompletedProcess) -> str:
    """The end of a run's output, for assertion messages."""
    return f'exit {result.returncode}\n{(result.stdout + result.stderr)[-3000:]}'


def train_scalars(work_dir) -> Dict[int, dict]:
    """Training log entries of every run in ``work_dir`` (``scalars.json`` lines with a
    loss), by iteration; a resumed run's entries follow and overwrite the first run's."""
    entries: Dict[int, dict] = {}
    runs = sorted(d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d)))
    for run in runs:
        path = osp.join(work_dir, run, 'vis_data', 'scalars.json')
        if not osp.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if 'loss' in entry:
                    entries[entry['iter']] = entry
    return entries


def losses(entry: dict) -> Dict[str, float]:
    """The loss terms of a log entry (no times, which differ between runs)."""
    return {k: v for k, v in entry.items() if k.startswith('loss')}


def load(path: str) -> dict:
    """A checkpoint, read the way ``--resume`` reads it (weights-only unpickling)."""
    return load_local_checkpoint(str(path), map_location='cpu')


def assert_same_tensors(a, b, what: str) -> None:
    """Bitwise equality of nested dicts/lists of tensors and plain values."""
    if torch.is_tensor(a):
        assert torch.equal(a, b), f'{what} differs'
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f'{what}: keys differ'
        for key in a:
            assert_same_tensors(a[key], b[key], f'{what}[{key!r}]')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f'{what}: lengths differ'
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f'{what}[{i}]')
    else:
        assert a == b, f'{what}: {a!r} != {b!r}'


def files(work_dir) -> List[str]:
    """Names of the plain files directly in ``work_dir``."""
    return sorted(n for n in os.listdir(work_dir) if osp.isfile(osp.join(work_dir, n)))
