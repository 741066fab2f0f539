"""Data-parallel training on CPU: 2 processes, gloo, through torchrun (issue 7).

One run of ``tools/train.py --launcher pytorch`` on the tiny shapes config (8 training
images, batch 2 per rank: 2 iterations; 4 validation images), with plugins that save each
rank's weights after training, poison ``loss_bbox`` at iteration 2 on rank 1 only (with
``skip_nonfinite=True``: both ranks must skip together or DDP would hang), and report how
many validation results the metric received.
"""
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from robust_training_helpers import describe, files, load, torchrun_train, write_config

from mmdet_lite.apis.cli import check_no_sync_bn_on_cpu

DDP_PLUGINS = '''
default_hooks = dict(
    save_state=dict(type='SaveModelStateHook'),
    inject_nan=dict(type='InjectNaNLossHook', iteration=2, term='loss_bbox', ranks=[1]))
val_evaluator = dict(type='ImageCountCocoMetric')
'''


@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ddp')
    config = write_config(folder, 'ddp', DDP_PLUGINS)
    work_dir = folder / 'work'
    result = torchrun_train(config, work_dir, folder / 'data',
                            ['env_cfg.dist_cfg.backend=gloo',
                             'custom_hooks.1.skip_nonfinite=True'])
    assert result.returncode == 0, describe(result)
    return work_dir, result.stdout + result.stderr


@pytest.mark.slow
def test_both_ranks_end_with_identical_parameters(ddp_run):
    work_dir, _ = ddp_run
    rank0 = torch.load(work_dir / 'rank0.pth')['parameters']
    rank1 = torch.load(work_dir / 'rank1.pth')['parameters']
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # BN running statistics stay per rank (broadcast_buffers=False, as in mmdetection);
    # the checkpoint holds rank 0's parameters
    checkpoint = load(work_dir / 'epoch_1.pth')['state_dict']
    assert all(torch.equal(checkpoint[k], rank0[k]) for k in rank0)


@pytest.mark.slow
def test_only_rank_0_writes_checkpoints_and_logs(ddp_run):
    work_dir, _ = ddp_run
    checkpoints = [n for n in files(work_dir) if '.pth' in n and not n.startswith('rank')]
    assert checkpoints == ['best_coco_bbox_mAP_epoch_1.pth', 'epoch_1.pth']
    (run_dir, ) = [d for d in os.listdir(work_dir) if osp.isdir(work_dir / d)]
    assert [n for n in os.listdir(work_dir / run_dir) if n.endswith('.log')] == [f'{run_dir}.log']
    # the DistributedSampler splits 8 images between 2 ranks: 2 iterations of batch 2 each
    scalars = [json.loads(line) for line in
               (work_dir / run_dir / 'vis_data' / 'scalars.json').read_text().splitlines()]
    assert [s['iter'] for s in scalars if 'loss' in s] == [1, 2]


@pytest.mark.slow
def test_metric_evaluates_every_rank_results_once(ddp_run):
    work_dir, output = ddp_run
    (run_dir, ) = [d for d in os.listdir(work_dir) if osp.isdir(work_dir / d)]
    scalars = [json.loads(line) for line in
               (work_dir / run_dir / 'vis_data' / 'scalars.json').read_text().splitlines()]
    (val, ) = [s for s in scalars if 'coco/bbox_mAP' in s]
    assert val['coco/num_results'] == 4 and val['coco/num_images'] == 4


@pytest.mark.slow
def test_nonfinite_loss_on_one_rank_is_skipped_on_all(ddp_run):
    _, output = ddp_run
    # rank 0 logs, naming rank 1's term; both ranks skipped, or DDP would have hung
    assert ('non-finite loss at iteration 2 (epoch 1): loss_bbox=nan on rank 1: skipped the '
            'optimizer step (1 skipped so far)') in output, output[-3000:]


def test_sync_bn_on_cpu_is_refused_naming_the_config_key():
    # torch's SyncBatchNorm has no CPU kernels, so a CPU (gloo) run cannot use it; the
    # check runs in tools/train.py before DDP wraps the model
    cfg = Config(dict(model=dict(backbone=dict(norm_cfg=dict(type='SyncBN')),
                                 roi_head=dict(bbox_head=[dict(norm_cfg=dict(type='BN'))]))))
    with pytest.raises(ValueError, match=r"model.backbone.norm_cfg asks for SyncBN, which "
                       r"needs CUDA GPUs.*--cfg-options model.backbone.norm_cfg.type=BN"):
        check_no_sync_bn_on_cpu(cfg)
    check_no_sync_bn_on_cpu(Config(dict(model=dict(backbone=dict(norm_cfg=dict(type='BN'))))))
