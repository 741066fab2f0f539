"""The RetinaNet, DETR, RTMDet, Cascade R-CNN, FCOS and ATSS shapes configs train and
evaluate through tools/train.py.

Each runs as shipped (model, schedule, pipeline) on 8 small training images for one epoch,
with a validation pass; only the dataset size, batch size and workers are shrunk on the
command line. DETR's config starts from a backbone checkpoint: here one the test writes.
"""
import json
from pathlib import Path

import pytest
import torch
from helpers_tools import REPO_ROOT, run_tool, tiny_data_cfg_options

from mmdet_lite.engine import load_local_checkpoint
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

SHAPES = Path(REPO_ROOT) / 'configs' / 'shapes'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('shapes_small')


def _small_run_options(config: Path, data_root: Path) -> list:
    """8 train / 4 val images of 128 px, batch 2, no workers, one epoch with validation."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(config))
    options = tiny_data_cfg_options(data_root)
    for split, num_images in (('train', 8), ('val', 4)):
        loader = f'{split}_dataloader'
        dataset = cfg[loader].dataset
        new = {key: '' if key in dataset else '+' for key in ('num_images', 'image_size')}
        options += [f'{loader}.batch_size=2', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False',
                    f'{new["num_images"]}{loader}.dataset.num_images={num_images}',
                    f'{new["image_size"]}{loader}.dataset.image_size=128']
    return options + ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                      'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1']


def _train(config: Path, work_dir: Path, options: list) -> tuple:
    proc = run_tool('train', [config, '--work-dir', work_dir, '--cfg-options', *options])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir, ) = [p for p in work_dir.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    records = [json.loads(line) for line in
               (run_dir / 'vis_data' / 'scalars.json').read_text().splitlines()]
    train = [r for r in records if 'loss' in r]
    val = [r for r in records if 'coco/bbox_mAP' in r]
    return train, val, proc


@pytest.mark.slow
def test_retinanet_shapes_config_trains_and_evaluates(data_root, tmp_path):
    config = SHAPES / 'retinanet_r18_fpn_shapes.py'
    train, val, _ = _train(config, tmp_path, _small_run_options(config, data_root))
    assert len(train) == 4 and all(r['loss'] > 0 for r in train)
    assert {'loss_cls', 'loss_bbox'} <= set(train[0])
    assert len(val) == 1 and 0 <= val[0]['coco/bbox_mAP'] <= 1
    assert (tmp_path / 'epoch_1.pth').is_file()


@pytest.mark.slow
def test_detr_shapes_config_fine_tunes_the_given_backbone(data_root, tmp_path):
    # The backbone checkpoint a Faster R-CNN shapes run would leave (its backbone keys).
    register_all_modules()
    from mmengine.config import Config
    frcnn = Config.fromfile(str(SHAPES / 'faster-rcnn_r18_fpn_shapes.py'))
    torch.manual_seed(0)
    frcnn_model = MODELS.build(frcnn.model)
    frcnn_model.init_weights()
    backbone_ckpt = tmp_path / 'frcnn.pth'
    torch.save({'state_dict': frcnn_model.state_dict()}, backbone_ckpt)

    work_dir = tmp_path / 'detr'
    config = SHAPES / 'detr_r18_shapes.py'
    options = _small_run_options(config, data_root) + [
        f'model.backbone.init_cfg.checkpoint={backbone_ckpt}']
    train, val, proc = _train(config, work_dir, options)
    assert len(train) == 4 and all(r['loss'] > 0 for r in train)
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'd1.loss_cls', 'd1.loss_iou'} <= set(train[0])
    assert len(val) == 1 and 0 <= val[0]['coco/bbox_mAP'] <= 1

    detr = load_local_checkpoint(str(work_dir / 'epoch_1.pth'), 'cpu')['state_dict']
    pretrained = frcnn_model.state_dict()
    # stem and layer1 are frozen (frozen_stages=1): exactly the checkpoint's values
    for key in ('conv1.weight', 'bn1.running_mean', 'layer1.0.conv1.weight'):
        torch.testing.assert_close(detr[f'backbone.{key}'], pretrained[f'backbone.{key}'],
                                   rtol=0, atol=0)
    # layers 2-3 started there and moved a little (backbone lr x 0.1). The shortcut conv:
    # a fresh ResNet zero-initializes each block's last BN, so its convs get no gradient.
    assert not any(k.startswith('backbone.layer4') for k in detr)
    key = 'backbone.layer3.0.downsample.0.weight'
    delta = (detr[key] - pretrained[key]).abs().max()
    assert 0 < delta < 0.05 * pretrained[key].abs().max()


@pytest.mark.slow
@pytest.mark.parametrize('name, metrics, losses', [
    ('rtmdet_tiny_shapes.py', ['coco/bbox_mAP'], {'loss_cls', 'loss_bbox'}),
    ('rtmdet-ins_tiny_shapes.py', ['coco/bbox_mAP', 'coco/segm_mAP'],
     {'loss_cls', 'loss_bbox', 'loss_mask'}),
])
def test_rtmdet_shapes_configs_switch_pipeline_and_keep_ema(name, metrics, losses, data_root,
                                                           tmp_path):
    """Two epochs with the pipeline switch moved to the end of the first: the switch is
    logged, both epochs validate, and the checkpoints carry the EMA weights."""
    config = SHAPES / name
    options = _small_run_options(config, data_root) + [
        'train_cfg.max_epochs=2', 'custom_hooks.1.switch_epoch=1',
        'param_scheduler.1.begin=1', 'param_scheduler.1.end=2', 'param_scheduler.1.T_max=1']
    train, val, proc = _train(config, tmp_path, options)
    assert len(train) == 8 and losses <= set(train[0])
    assert len(val) == 2 and all(0 <= v[m] <= 1 for v in val for m in metrics)
    log = proc.stdout + proc.stderr
    assert 'Switch pipeline now! From epoch 2 (switch_epoch=1)' in log
    ckpt = load_local_checkpoint(str(tmp_path / 'epoch_2.pth'), 'cpu')
    # EMAHook saves the averaged weights as the model's and the raw ones beside them
    assert 'ema_state_dict' in ckpt
    ema_keys = {k[len('module.'):] for k in ckpt['ema_state_dict'] if k.startswith('module.')}
    assert ema_keys == set(ckpt['state_dict'])


@pytest.mark.slow
@pytest.mark.parametrize('name, losses', [
    ('cascade-rcnn_r18_fpn_shapes.py',
     {'loss_rpn_cls', 's0.loss_cls', 's1.loss_bbox', 's2.loss_cls', 's2.loss_bbox'}),
    ('fcos_r18_fpn_shapes.py', {'loss_cls', 'loss_bbox', 'loss_centerness'}),
    ('atss_r18_fpn_shapes.py', {'loss_cls', 'loss_bbox', 'loss_centerness'}),
])
def test_classic_zoo_shapes_configs_train_and_evaluate(name, losses, data_root, tmp_path):
    """The Cascade R-CNN, FCOS and ATSS shapes configs as shipped (their schedules cut to
    one epoch) train with their loss terms and evaluate."""
    config = SHAPES / name
    train, val, _ = _train(config, tmp_path, _small_run_options(config, data_root))
    assert len(train) == 4 and all(r['loss'] > 0 for r in train)
    assert losses <= set(train[0])
    assert len(val) == 1 and 0 <= val[0]['coco/bbox_mAP'] <= 1
    assert (tmp_path / 'epoch_1.pth').is_file()
