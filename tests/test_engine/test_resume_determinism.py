"""Deterministic training, exact resume, and crash safety of checkpoints (issue 7).

Runs ``tools/train.py`` in subprocesses on variants of the tiny shapes config:

- iteration-based (``InfiniteSampler``, checkpoint + validation every 3 of 7 iterations):
  run A goes straight through; run B is SIGKILLed while writing the checkpoint of iteration 6;
  run C resumes B's work dir with ``--resume``;
- epoch-based with checkpoints mid-epoch: run D goes straight through two epochs; run E
  resumes from D's checkpoint after 3 of the 4 batches of epoch 1;
- epoch-based with a persistent DataLoader worker (the shapes configs' setting): a straight
  2-epoch run; a finished 1-epoch run extended to 2 epochs with ``--resume``; a run killed
  right after its epoch-1 checkpoint, resumed; a resume in the middle of epoch 2.
"""
import os.path as osp
import random
import signal

import numpy as np
import pytest
import torch
from robust_training_helpers import (ITER_BASED, assert_same_tensors, describe, files, load,
                                     losses, train, train_scalars, write_config)

from mmdet_lite.engine.hooks.checkpoint_hook import write_text_atomically
from mmdet_lite.engine.hooks.resume_state import capture_rng_state, restore_rng_state

# Epoch-based, one persistent worker, epoch checkpoints, no validation (val_begin > 2).
PERSISTENT_WORKERS = '''
train_dataloader = dict(num_workers=1, persistent_workers=True)
train_cfg = dict(max_epochs=2, val_interval=1, val_begin=100)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
'''
KILL_AFTER_EPOCH_1 = '''
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='NonFiniteLossHook'),
                dict(type='KillAfterEpochHook', epoch=1)]
'''
# what a resumed run must reproduce bit for bit (the message hub holds times)
EXACT_KEYS = ('state_dict', 'optimizer', 'param_schedulers', 'resume_state')

KILL_WHILE_WRITING_ITER_6 = '''
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='NonFiniteLossHook'),
                dict(type='BreakCheckpointWriteHook', filename='iter_6.pth', action='kill')]
'''


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp('shapes_tiny')


@pytest.fixture(scope='module')
def iter_runs(tmp_path_factory, data_root):
    """Work dirs of runs A (straight), B (killed mid-write) and C (B resumed)."""
    folder = tmp_path_factory.mktemp('iter_runs')
    config = write_config(folder, 'iter_based', ITER_BASED)
    killing_config = write_config(folder, 'iter_based_killed', ITER_BASED +
                                  KILL_WHILE_WRITING_ITER_6)
    straight, killed = folder / 'straight', folder / 'killed'
    result = train(config, straight, data_root)
    assert result.returncode == 0, describe(result)
    result = train(killing_config, killed, data_root)
    assert result.returncode == -signal.SIGKILL, describe(result)
    files_after_kill = files(killed)
    scalars_after_kill = train_scalars(killed)
    result = train(config, killed, data_root, resume='auto')
    assert result.returncode == 0, describe(result)
    return dict(straight=straight, killed=killed, files_after_kill=files_after_kill,
                scalars_after_kill=scalars_after_kill, resume_output=result.stdout + result.stderr)


@pytest.mark.slow
def test_two_runs_of_a_deterministic_config_log_identical_losses(iter_runs):
    straight = train_scalars(iter_runs['straight'])
    second = iter_runs['scalars_after_kill']  # run B up to its kill, same config otherwise
    assert sorted(straight) == list(range(1, 8))
    assert sorted(second) == list(range(1, 7))
    for it in second:
        assert losses(second[it]) == losses(straight[it]), f'iteration {it}'
        assert second[it]['lr'] == straight[it]['lr']


@pytest.mark.slow
def test_kill_while_writing_leaves_the_previous_checkpoint_as_latest(iter_runs):
    killed = iter_runs['killed']
    # at the kill: iter_3 complete, iter_6 only as a partial .tmp, last_checkpoint -> iter_3
    assert {'iter_3.pth', 'iter_6.pth.tmp'} <= set(iter_runs['files_after_kill'])
    assert 'iter_6.pth' not in iter_runs['files_after_kill']
    output = iter_runs['resume_output']
    assert f'resumed from the latest checkpoint {osp.join(killed, "iter_3.pth")}' in output
    assert 'resumed epoch: 0, iter: 3' in output
    assert 'Removing iter_6.pth.tmp' in output
    assert not any(name.endswith('.tmp') for name in files(killed))
    with open(osp.join(killed, 'last_checkpoint')) as f:
        assert f.read() == osp.join(killed, 'iter_7.pth')


@pytest.mark.slow
def test_resume_after_kill_matches_the_straight_run_bitwise(iter_runs):
    straight, resumed = train_scalars(iter_runs['straight']), train_scalars(iter_runs['killed'])
    for it in range(4, 8):  # trained by the resumed run
        assert losses(resumed[it]) == losses(straight[it]), f'iteration {it}'
    expected = load(osp.join(iter_runs['straight'], 'iter_7.pth'))
    actual = load(osp.join(iter_runs['killed'], 'iter_7.pth'))
    for key in ('state_dict', 'optimizer', 'param_schedulers', 'resume_state'):
        assert_same_tensors(actual[key], expected[key], key)
    assert actual['meta']['iter'] == 7


@pytest.mark.slow
def test_mid_epoch_resume_of_an_epoch_based_run_is_exact(tmp_path, data_root):
    config = write_config(tmp_path, 'epoch_based', '''
train_cfg = dict(max_epochs=2, val_interval=1)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=-1))
randomness = dict(seed=3, deterministic=True)
''')
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    result = train(config, straight, data_root)
    assert result.returncode == 0, describe(result)
    # 4 batches per epoch: iter_3.pth stopped before the last batch of epoch 1
    result = train(config, resumed, data_root, resume=str(straight / 'iter_3.pth'))
    assert result.returncode == 0, describe(result)
    assert 'Resuming in the middle of epoch 1: skipping its 3 batches' in result.stdout
    expected, actual = train_scalars(straight), train_scalars(resumed)
    assert sorted(actual) == [4, 5, 6, 7, 8]
    for it in actual:
        assert losses(actual[it]) == losses(expected[it]), f'iteration {it}'
    assert_same_tensors(load(resumed / 'iter_8.pth')['state_dict'],
                        load(straight / 'iter_8.pth')['state_dict'], 'state_dict')


def test_rng_state_round_trip():
    state = capture_rng_state()
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    restore_rng_state(state)
    second = (random.random(), np.random.rand(3).tolist(), torch.rand(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_rng_state_survives_a_weights_only_checkpoint(tmp_path):
    path = str(tmp_path / 'rng.pth')
    torch.save(dict(resume_state=dict(rng=[capture_rng_state()])), path)
    expected = torch.rand(4)
    loaded = torch.load(path, weights_only=True)  # no pickled globals needed
    restore_rng_state(loaded['resume_state']['rng'][0])
    assert torch.equal(torch.rand(4), expected)


def test_write_text_atomically_replaces_the_file(tmp_path):
    path = str(tmp_path / 'last_checkpoint')
    write_text_atomically(path, 'old')
    write_text_atomically(path, 'new')
    assert open(path).read() == 'new'
    assert files(tmp_path) == ['last_checkpoint']


@pytest.fixture(scope='module')
def epoch_runs(tmp_path_factory, data_root):
    """The config with a persistent worker, and the work dir of its straight 2-epoch run."""
    folder = tmp_path_factory.mktemp('epoch_runs')
    config = write_config(folder, 'persistent_workers', PERSISTENT_WORKERS)
    result = train(config, folder / 'straight', data_root)
    assert result.returncode == 0, describe(result)
    return dict(folder=folder, config=config, straight=folder / 'straight')


def _assert_same_checkpoint(actual_path, expected_path) -> None:
    actual, expected = load(actual_path), load(expected_path)
    for key in EXACT_KEYS:
        assert_same_tensors(actual[key], expected[key], key)
    assert actual['meta']['iter'] == expected['meta']['iter']


@pytest.mark.slow
def test_extending_a_finished_run_by_an_epoch_is_bitwise_exact(epoch_runs, data_root):
    config, extended = epoch_runs['config'], epoch_runs['folder'] / 'extended'
    result = train(config, extended, data_root, cfg_options=['train_cfg.max_epochs=1'])
    assert result.returncode == 0, describe(result)
    result = train(config, extended, data_root, resume='auto')
    assert result.returncode == 0, describe(result)
    assert 'resumed epoch: 1, iter: 4' in result.stdout
    _assert_same_checkpoint(extended / 'epoch_1.pth', epoch_runs['straight'] / 'epoch_1.pth')
    _assert_same_checkpoint(extended / 'epoch_2.pth', epoch_runs['straight'] / 'epoch_2.pth')


@pytest.mark.slow
def test_resume_after_a_kill_right_after_an_epoch_checkpoint_is_bitwise_exact(
        epoch_runs, data_root):
    folder = epoch_runs['folder']
    killing_config = write_config(folder, 'killed_after_epoch_1',
                                  PERSISTENT_WORKERS + KILL_AFTER_EPOCH_1)
    killed = folder / 'killed'
    result = train(killing_config, killed, data_root)
    assert result.returncode == -signal.SIGKILL, describe(result)
    assert 'epoch_1.pth' in files(killed) and 'epoch_2.pth' not in files(killed)
    result = train(epoch_runs['config'], killed, data_root, resume='auto')
    assert result.returncode == 0, describe(result)
    assert f'resumed from the latest checkpoint {killed / "epoch_1.pth"}' in result.stdout
    assert 'resumed epoch: 1, iter: 4' in result.stdout
    assert sorted(train_scalars(killed)) == list(range(1, 9))
    _assert_same_checkpoint(killed / 'epoch_2.pth', epoch_runs['straight'] / 'epoch_2.pth')


@pytest.mark.slow
def test_mid_epoch_resume_with_a_persistent_worker_is_exact(tmp_path, data_root):
    config = write_config(tmp_path, 'mid_epoch_2', PERSISTENT_WORKERS + (
        'default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3, '
        'max_keep_ckpts=-1))\n'))
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    result = train(config, straight, data_root)
    assert result.returncode == 0, describe(result)
    # iter_6.pth: 2 of the 4 batches of epoch 2 trained, by a worker that loaded epoch 1
    result = train(config, resumed, data_root, resume=str(straight / 'iter_6.pth'))
    assert result.returncode == 0, describe(result)
    assert 'Resuming in the middle of epoch 2: skipping its 2 batches' in result.stdout
    assert sorted(train_scalars(resumed)) == [7, 8]
    _assert_same_checkpoint(resumed / 'iter_8.pth', straight / 'iter_8.pth')
