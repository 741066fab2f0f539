"""tools/dataset_converters/shapes_to_voc.py and the shapes VOC config, end to end."""
import json
import os.path as osp

import pytest
from helpers_tools import REPO_ROOT, load_script, run_tool

from mmdet_lite.datasets import SHAPES_CLASSES, VOCDataset, generate_shapes_split

VOC_CONFIG = osp.join(REPO_ROOT, 'configs', 'shapes', 'faster-rcnn_r18_fpn_shapes-voc.py')


@pytest.fixture
def shapes_voc(tmp_path):
    src, out = tmp_path / 'shapes', tmp_path / 'shapes_voc'
    generate_shapes_split(str(src), 'train', num_images=6, image_size=96, size_range=(16, 40),
                          max_objects=3, seed=0)
    generate_shapes_split(str(src), 'val', num_images=3, image_size=96, size_range=(16, 40),
                          max_objects=3, seed=1)
    load_script('tools/dataset_converters/shapes_to_voc.py').main([str(src), str(out)])
    return src, out


def test_converted_boxes_read_back_as_voc_pixels(shapes_voc):
    src, out = shapes_voc
    assert (out / 'ImageSets' / 'Main' / 'train.txt').read_text().split() == [
        f'train_{i:06d}' for i in range(6)]
    assert len(list((out / 'JPEGImages').iterdir())) == 9
    coco = json.loads((src / 'annotations' / 'instances_val.json').read_text())
    dataset = VOCDataset(data_root=str(out), ann_file='ImageSets/Main/val.txt',
                         data_prefix=dict(sub_data_root=''),
                         metainfo=dict(classes=SHAPES_CLASSES), test_mode=True)
    assert len(dataset) == 3
    for index, image in enumerate(coco['images']):
        info = dataset.get_data_info(index)
        assert (info['width'], info['height']) == (image['width'], image['height'])
        anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        expected = [[round(x), round(y), round(x + w) - 1, round(y + h) - 1]
                    for x, y, w, h in (a['bbox'] for a in anns)]
        assert [inst['bbox'] for inst in info['instances']] == expected
        names = {c['id']: c['name'] for c in coco['categories']}
        assert [SHAPES_CLASSES[inst['bbox_label']] for inst in info['instances']] == [
            names[a['category_id']] for a in anns]


def test_missing_split_is_a_one_line_error(tmp_path, call_tool):
    proc = call_tool('tools/dataset_converters/shapes_to_voc.py', [tmp_path, tmp_path / 'o'])
    assert proc.returncode == 2
    assert "no shapes split 'train'" in proc.stderr and '--generate' in proc.stderr


@pytest.mark.slow
def test_voc_config_trains_and_tests(shapes_voc, tmp_path):
    _, out = shapes_voc
    root = osp.join(str(out), '')
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={root}',
               f'val_dataloader.dataset.data_root={root}',
               f'test_dataloader.dataset.data_root={root}', 'train_cfg.max_epochs=1',
               'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
               'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
               'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
               'test_dataloader.persistent_workers=False', 'default_hooks.logger.interval=1']
    work_dir = tmp_path / 'work'
    proc = run_tool('train', [VOC_CONFIG, '--work-dir', work_dir, *options])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work_dir / 'epoch_1.pth').is_file()
    log = proc.stdout + proc.stderr
    assert '| class     | gts | dets | recall | ap    |' in log
    assert 'pascal_voc/mAP' in log
    proc = run_tool('test', [VOC_CONFIG, work_dir / 'epoch_1.pth', '--work-dir',
                             tmp_path / 'test', *options])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'pascal_voc/mAP:' in proc.stdout + proc.stderr
