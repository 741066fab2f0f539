"""configs/shapes/retinanet_r18_fpn_mosaic-mixup_shapes.py end to end: train, test, browse.

The config runs as shipped (CachedMosaic ... CachedMixUp pipeline, model, schedule) on 8
small training images for one epoch with a validation pass; only the dataset size, batch
size and workers are shrunk on the command line.
"""
import json
from pathlib import Path

import cv2
import pytest
from helpers_tools import REPO_ROOT, load_script, run_tool, tiny_data_cfg_options

CONFIG = Path(REPO_ROOT) / 'configs' / 'shapes' / 'retinanet_r18_fpn_mosaic-mixup_shapes.py'


def _small_options(data_root: Path) -> list:
    """8 train / 4 val images of 128 px, batch 2, no workers, one epoch."""
    options = tiny_data_cfg_options(data_root)
    for split, num_images in (('train', 8), ('val', 4)):
        loader = f'{split}_dataloader'
        options += [f'{loader}.batch_size=2', f'{loader}.num_workers=0',
                    f'{loader}.persistent_workers=False',
                    f'+{loader}.dataset.num_images={num_images}',
                    f'+{loader}.dataset.image_size=128']
    return options + ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                      'default_hooks.logger.interval=1']


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('shapes_mix')


@pytest.mark.slow
def test_mosaic_mixup_config_trains_then_tests(data_root, tmp_path):
    work_dir = tmp_path / 'work'
    proc = run_tool('train', [CONFIG, '--work-dir', work_dir, '--cfg-options',
                              *_small_options(data_root)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir, ) = [p for p in work_dir.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    records = [json.loads(line) for line in
               (run_dir / 'vis_data' / 'scalars.json').read_text().splitlines()]
    train = [r for r in records if 'loss' in r]
    assert len(train) == 4 and all(r['loss'] > 0 for r in train)
    assert {'loss_cls', 'loss_bbox'} <= set(train[0])
    assert any('coco/bbox_mAP' in r for r in records)

    proc = run_tool('test', [CONFIG, work_dir / 'epoch_1.pth', '--work-dir',
                             tmp_path / 'test_work', '--cfg-options',
                             *_small_options(data_root)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (test_run, ) = [p for p in (tmp_path / 'test_work').iterdir()
                    if p.is_dir() and p.name[:8].isdigit()]
    metrics = json.loads((test_run / f'{test_run.name}.json').read_text())
    assert 0 <= metrics['coco/bbox_mAP'] <= 1


@pytest.mark.slow
def test_browse_dataset_draws_every_sample_through_the_mixing_pipeline(data_root, tmp_path):
    browse = load_script('tools/analysis_tools/browse_dataset.py')
    out_dir = tmp_path / 'browse'
    browse.main([str(CONFIG), '--output-dir', str(out_dir), '--not-show', '--cfg-options',
                 *_small_options(data_root)])
    with open(data_root / 'annotations' / 'instances_train.json') as f:
        coco = json.load(f)
    with_objects = {ann['image_id'] for ann in coco['annotations']}
    num_samples = sum(img['id'] in with_objects for img in coco['images'])
    drawings = sorted(out_dir.iterdir())
    assert len(drawings) == num_samples >= 5  # enough for CachedMosaic's cache to fill
    assert {d.suffix for d in drawings} == {'.png'}
    for drawing in drawings:
        # 128-px images come out as the pipeline's 256 x 256 crops
        assert cv2.imread(str(drawing)).shape == (256, 256, 3)
