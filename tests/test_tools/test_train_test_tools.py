"""tools/train.py and tools/test.py run end to end, in subprocesses, on the tiny config.

One short training (module fixture) feeds the resume, test and drawing checks; the AMP run
trains on two images only. The launch scripts are checked with stand-ins for python/srun.
"""
import json
import math
import os
import pickle
import re
import stat
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_tools import REPO_ROOT, TINY_CONFIG, run_tool, tiny_data_cfg_options

from mmengine.config import Config

from mmdet_lite.engine import load_local_checkpoint

LOSS_KEYS = ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox')
_TINY = Config.fromfile(str(TINY_CONFIG))
BASE_LR = _TINY.optim_wrapper.optimizer.lr  # from faster-rcnn_r18_fpn_shapes.py
BASE_BATCH = _TINY.auto_scale_lr.base_batch_size  # the total batch BASE_LR is meant for


def _run_dirs(work_dir: Path) -> list:
    """The timestamped folders of each run in ``work_dir``, oldest first."""
    return sorted(p for p in work_dir.iterdir() if p.is_dir() and p.name[:8].isdigit())


def _scalars(run_dir: Path):
    """(train records, val records) of a run's ``vis_data/scalars.json``."""
    records = [json.loads(line) for line in
               (run_dir / 'vis_data' / 'scalars.json').read_text().splitlines()]
    train = [r for r in records if 'loss' in r]
    val = [r for r in records if 'coco/bbox_mAP' in r]
    return train, val


def _assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f'stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('shapes_tiny')


@pytest.fixture(scope='module')
def first_run(tmp_path_factory, data_root):
    """One epoch of training into a work dir that already holds a user's file."""
    work_dir = tmp_path_factory.mktemp('work')
    (work_dir / 'keep_me.txt').write_text('user notes')
    proc = run_tool('train', [TINY_CONFIG, '--work-dir', work_dir,
                              '--cfg-options', *tiny_data_cfg_options(data_root)])
    _assert_ok(proc)
    (run_dir, ) = _run_dirs(work_dir)
    # read now: the resume test moves the pointer on
    last_checkpoint = (work_dir / 'last_checkpoint').read_text()
    return work_dir, run_dir, last_checkpoint


@pytest.mark.slow
def test_train_writes_logs_and_checkpoints_and_keeps_work_dir(first_run):
    work_dir, run_dir, last_checkpoint = first_run
    assert (work_dir / 'keep_me.txt').read_text() == 'user notes'
    assert (work_dir / 'epoch_1.pth').is_file()
    assert last_checkpoint == str(work_dir / 'epoch_1.pth')
    assert (work_dir / 'best_coco_bbox_mAP_epoch_1.pth').is_file()  # save_best='auto'

    train, val = _scalars(run_dir)
    iters = [r['iter'] for r in train]
    assert iters == list(range(1, len(iters) + 1)) and len(iters) >= 4  # logger interval 1
    for record in train:
        for key in ('lr', 'time', 'data_time', 'loss', *LOSS_KEYS):
            assert math.isfinite(record[key]), (key, record)
        # per-level RPN losses arrive as one summed scalar; 'loss' is the sum of all
        assert record['loss'] == pytest.approx(sum(record[k] for k in LOSS_KEYS), rel=1e-4)
    assert len(val) == 1 and 0 <= val[0]['coco/bbox_mAP'] <= 1

    log = next(run_dir.glob('*.log')).read_text()
    for field in ('Epoch(train) [1][1/', 'eta: ', 'lr: ', 'loss_rpn_cls: ', 'time: ',
                  'memory: '):  # memory: peak RSS in MB on CPU (LogProcessor)
        assert field in log, field
    assert 'Epoch(val) [1][1/2]' in log  # validation progress, one line per batch

    checkpoint = load_local_checkpoint(str(work_dir / 'epoch_1.pth'))  # weights_only=True
    assert checkpoint['meta']['iter'] == len(iters)
    assert {'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(checkpoint)


@pytest.mark.slow
def test_resume_restores_counter_message_hub_optimizer_and_scheduler(first_run, data_root):
    work_dir, first_dir, _ = first_run
    first_train, _ = _scalars(first_dir)
    n = len(first_train)
    proc = run_tool('train', [TINY_CONFIG, '--work-dir', work_dir, '--resume',
                              '--cfg-options', *tiny_data_cfg_options(data_root),
                              'train_cfg.max_epochs=2', '+train_cfg.val_begin=3'])
    _assert_ok(proc)
    resumed_dir = [d for d in _run_dirs(work_dir) if d != first_dir][-1]
    log = next(resumed_dir.glob('*.log')).read_text()
    assert f'Auto resumed from the latest checkpoint {work_dir / "epoch_1.pth"}' in log

    train, _ = _scalars(resumed_dir)
    assert [r['iter'] for r in train] == list(range(n + 1, 2 * n + 1))
    # warm-up (4 iterations) ended in the first run: a restored scheduler does not restart it
    assert first_train[-1]['lr'] == pytest.approx(BASE_LR)
    assert train[0]['lr'] == pytest.approx(BASE_LR)

    checkpoint = load_local_checkpoint(str(work_dir / 'epoch_2.pth'))
    assert (checkpoint['meta']['epoch'], checkpoint['meta']['iter']) == (2, 2 * n)
    # the message hub kept the first run's history: n losses restored + n new ones
    assert len(checkpoint['message_hub']['log_scalars']['train/loss'].data[0]) == 2 * n
    warmup, steps = checkpoint['param_schedulers']
    assert steps['last_step'] == 2  # MultiStepLR stepped once per epoch, across both runs
    state = checkpoint['optimizer']['state']
    assert len(state) == len(checkpoint['optimizer']['param_groups'][0]['params'])
    # AdamW's per-parameter moments were restored and then advanced by the resumed epoch
    assert all({'exp_avg', 'exp_avg_sq', 'step'} <= set(s) for s in state.values())
    assert all(int(s['step']) == 2 * n for s in state.values())
    assert (work_dir / 'keep_me.txt').is_file()


@pytest.mark.slow
def test_test_tool_evaluates_dumps_predictions_and_draws(first_run, data_root, tmp_path):
    work_dir, _, _ = first_run
    out = tmp_path / 'results.pkl'
    proc = run_tool('test', [TINY_CONFIG, work_dir / 'epoch_1.pth', '--work-dir',
                             tmp_path / 'test_work', '--out', out, '--show-dir', 'drawn',
                             '--cfg-options', *tiny_data_cfg_options(data_root),
                             '+default_hooks.visualization.score_thr=0.0'])
    _assert_ok(proc)
    assert re.search(r'\] 2/2, [0-9.]+ task/s', proc.stdout)  # EvalProgressBarHook, 2 batches
    assert 'coco/bbox_mAP: ' in proc.stdout
    assert 'Epoch(test) [1/2]' in proc.stdout  # progress, one line per batch

    with open(out, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 4  # one dict per val image
    for result in results:
        pred = result['pred_instances']
        num = len(pred['scores'])
        assert tuple(pred['bboxes'].shape) == (num, 4) and tuple(pred['labels'].shape) == (num,)
        assert Path(result['img_path']).is_file()

    (run_dir, ) = _run_dirs(tmp_path / 'test_work')
    drawn = sorted((run_dir / 'drawn').iterdir())
    assert [p.name for p in drawn] == sorted(Path(r['img_path']).name for r in results)
    best = max(results, key=lambda r: float(r['pred_instances']['scores'].max()))
    image = cv2.imread(best['img_path']).astype(np.int32)  # [96, 96, 3]
    canvas = cv2.imread(str(run_dir / 'drawn' / Path(best['img_path']).name)).astype(np.int32)
    height, width = image.shape[:2]
    assert canvas.shape == (height, 2 * width, 3)  # ground truth | predictions
    changed = np.abs(canvas[:, width:] - image).sum(-1) > 60  # [96, 96]
    top = int(best['pred_instances']['scores'].argmax())
    x1, y1, x2, y2 = best['pred_instances']['bboxes'][top].round().int().tolist()
    x1, y1, x2, y2 = max(x1, 1), max(y1, 1), min(x2, width - 2), min(y2, height - 2)
    # the box outline (a line ~1-2 px wide around each edge) is drawn in a contrasting colour
    edges = np.concatenate([changed[y - 1:y + 2, x1:x2 + 1].any(0) for y in (y1, y2)] +
                           [changed[y1:y2 + 1, x - 1:x + 2].any(1) for x in (x1, x2)])
    assert edges.mean() > 0.5


@pytest.mark.slow
def test_test_tool_fast_path_gives_the_plain_predictions(first_run, data_root, tmp_path):
    """tools/test.py folds BN, runs channels-last under inference_mode by default;
    --no-fast-path runs the model as built: the same predictions and metrics."""
    work_dir, _, _ = first_run
    results, logs = {}, {}
    for name, flags in (('fast', []), ('plain', ['--no-fast-path'])):
        out = tmp_path / f'{name}.pkl'
        proc = run_tool('test', [TINY_CONFIG, work_dir / 'epoch_1.pth', '--work-dir',
                                 tmp_path / name, '--out', out, *flags, '--cfg-options',
                                 *tiny_data_cfg_options(data_root)])
        _assert_ok(proc)
        logs[name] = proc.stdout
        with open(out, 'rb') as f:
            results[name] = pickle.load(f)
    assert 'fast inference path: fuse_bn True, channels_last True' in logs['fast']
    assert 'fast inference path' not in logs['plain']
    mAP = [re.search(r'coco/bbox_mAP: ([0-9.]+)', logs[k]).group(1) for k in ('fast', 'plain')]
    assert mAP[0] == mAP[1]
    total = 0
    for fast, plain in zip(results['fast'], results['plain']):
        fast, plain = fast['pred_instances'], plain['pred_instances']
        assert torch.equal(fast['labels'], plain['labels'])
        torch.testing.assert_close(fast['bboxes'], plain['bboxes'], atol=1e-2, rtol=0)
        torch.testing.assert_close(fast['scores'], plain['scores'], atol=1e-4, rtol=0)
        total += len(plain['labels'])
    assert total > 0


@pytest.mark.slow
def test_amp_on_cpu_trains_in_bf16_channels_last_and_auto_scale_lr_scales(data_root,
                                                                           tmp_path):
    # a hook records conv1's output dtype; the config trains on 2 images (one iteration)
    (tmp_path / 'dtype_probe.py').write_text(
        'import json, os.path as osp\n'
        'from mmengine.hooks import Hook\n'
        'from mmdet_lite.registry import HOOKS\n\n\n'
        '@HOOKS.register_module()\n'
        'class ConvDtypeProbeHook(Hook):\n'
        '    def before_train(self, runner):\n'
        '        self.dtypes = []\n'
        '        runner.model.backbone.conv1.register_forward_hook(\n'
        '            lambda module, args, out: self.dtypes.append(str(out.dtype)))\n\n'
        '    def after_train(self, runner):\n'
        "        with open(osp.join(runner.work_dir, 'dtypes.json'), 'w') as f:\n"
        '            json.dump(self.dtypes, f)\n')
    config = tmp_path / 'amp_probe_cfg.py'
    config.write_text(
        f'_base_ = {TINY_CONFIG!r}\n'
        "custom_imports = dict(imports=['dtype_probe'], allow_failed_imports=False)\n"
        "custom_hooks = [dict(type='ConvDtypeProbeHook')]\n"
        'train_dataloader = dict(dataset=dict(indices=2))\n'
        'train_cfg = dict(val_begin=2)\n')
    work_dir = tmp_path / 'work'
    proc = run_tool('train', [config, '--work-dir', work_dir, '--amp', '--auto-scale-lr',
                              '--channels-last',
                              '--cfg-options', *tiny_data_cfg_options(data_root)],
                    env=dict(PYTHONPATH=f'{REPO_ROOT}{os.pathsep}{tmp_path}'))
    _assert_ok(proc)
    assert 'CPUAmpOptimWrapper' in proc.stdout
    assert 'channels-last memory format: parameters and backbone input' in proc.stdout

    dtypes = json.loads((work_dir / 'dtypes.json').read_text())
    assert dtypes and set(dtypes) == {'torch.bfloat16'}
    (run_dir, ) = _run_dirs(work_dir)
    train, _ = _scalars(run_dir)
    assert all(math.isfinite(r[k]) for r in train for k in ('loss', *LOSS_KEYS))
    # lr x (2 images per batch / base batch), x 0.1 for the first warm-up iteration
    assert train[0]['lr'] == pytest.approx(BASE_LR * 2 / BASE_BATCH * 0.1)


def _stand_in(path: Path, log: Path) -> str:
    """An executable that writes its arguments, one per line, to ``log``."""
    path.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_dist_scripts_pass_launch_settings_to_torchrun(tmp_path):
    log = tmp_path / 'args.txt'
    env = dict(os.environ, PYTHON=_stand_in(tmp_path / 'python', log), NNODES='2',
               NODE_RANK='1', PORT='29555', MASTER_ADDR='10.0.0.7')
    tools = Path(REPO_ROOT) / 'tools'
    subprocess.run(['bash', tools / 'dist_train.sh', 'cfg.py', '4', '--amp'], env=env,
                   check=True)
    assert log.read_text().splitlines() == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
        '--master_addr=10.0.0.7', '--nproc_per_node=4', '--master_port=29555',
        str(tools / 'train.py'), 'cfg.py', '--amp', '--launcher', 'pytorch']

    subprocess.run(['bash', tools / 'dist_test.sh', 'cfg.py', 'model.pth', '2', '--out',
                    'r.pkl'], env=env, check=True)
    assert log.read_text().splitlines()[-7:] == [
        str(tools / 'test.py'), 'cfg.py', 'model.pth', '--out', 'r.pkl', '--launcher',
        'pytorch']


def test_slurm_train_script_runs_srun_with_one_task_per_gpu(tmp_path):
    log = tmp_path / 'args.txt'
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    _stand_in(bin_dir / 'srun', log)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', GPUS='16',
               GPUS_PER_NODE='8', SRUN_ARGS='--quotatype=auto --time=1:00', PYTHON='python3')
    tools = Path(REPO_ROOT) / 'tools'
    subprocess.run(['bash', tools / 'slurm_train.sh', 'dev', 'frcnn', 'cfg.py', 'work_dirs/x',
                    '--amp'], env=env, check=True)
    assert log.read_text().splitlines() == [
        '-p', 'dev', '--job-name=frcnn', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1', '--quotatype=auto', '--time=1:00',
        'python3', '-u', str(tools / 'train.py'), 'cfg.py', '--work-dir=work_dirs/x', '--amp',
        '--launcher=slurm']


def test_slurm_test_script_passes_checkpoint_and_options_to_test_py(tmp_path):
    log = tmp_path / 'args.txt'
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    _stand_in(bin_dir / 'srun', log)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', GPUS='4',
               GPUS_PER_NODE='4', CPUS_PER_TASK='2')
    env.pop('SRUN_ARGS', None)
    env.pop('PYTHON', None)
    tools = Path(REPO_ROOT) / 'tools'
    subprocess.run(['bash', tools / 'slurm_test.sh', 'dev', 'eval', 'cfg.py', 'model.pth',
                    '--out', 'r.pkl'], env=env, check=True)
    assert log.read_text().splitlines() == [
        '-p', 'dev', '--job-name=eval', '--gres=gpu:4', '--ntasks=4', '--ntasks-per-node=4',
        '--cpus-per-task=2', '--kill-on-bad-exit=1', 'python', '-u', str(tools / 'test.py'),
        'cfg.py', 'model.pth', '--out', 'r.pkl', '--launcher=slurm']


@pytest.mark.parametrize('script, nargs', [('dist_train.sh', 2), ('dist_test.sh', 3),
                                           ('slurm_train.sh', 4), ('slurm_test.sh', 4)])
def test_launch_scripts_print_usage_when_arguments_are_missing(script, nargs):
    proc = subprocess.run(['bash', Path(REPO_ROOT) / 'tools' / script, *['x'] * (nargs - 1)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith('usage: ') and script in proc.stderr
