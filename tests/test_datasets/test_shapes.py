"""ShapesDataset and its generator: determinism, exact annotations, atomic publication."""
import json
import os
import warnings

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from mmdet_lite.datasets import SHAPES_CLASSES, ShapesDataset, generate_shapes_split
from mmdet_lite.datasets.shapes import prepare_shapes_split
from mmdet_lite.registry import DATASETS

# pycocotools' decode trips a numpy 2 deprecation notice; not ours to fix.
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

SMALL = dict(num_images=12, image_size=96, size_range=(16, 40), max_objects=3)


def read(path) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture(scope='module')
def split_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('shapes')
    generate_shapes_split(str(out), 'train', seed=3, **SMALL)
    return out


@pytest.fixture(scope='module')
def coco(split_dir):
    return json.loads(read(split_dir / 'annotations' / 'instances_train.json'))


def test_layout_and_categories(split_dir, coco):
    assert sorted(os.listdir(split_dir / 'train'))[:2] == ['.shapes_generated', '000000.jpg']
    assert len(coco['images']) == 12
    assert [c['name'] for c in coco['categories']] == list(SHAPES_CLASSES)
    assert coco['images'][0] == dict(id=1, file_name='000000.jpg', width=96, height=96)
    assert coco['info']['generator']['seed'] == 3


def test_same_seed_gives_identical_bytes(split_dir, tmp_path):
    generate_shapes_split(str(tmp_path), 'train', seed=3, **SMALL)
    json_name = 'annotations/instances_train.json'
    assert read(tmp_path / json_name) == read(split_dir / json_name)
    for name in ('000000.jpg', '000007.jpg', '000011.jpg'):
        assert read(tmp_path / 'train' / name) == read(split_dir / 'train' / name)


def test_other_seed_differs(split_dir, tmp_path):
    generate_shapes_split(str(tmp_path), 'train', seed=4, **SMALL)
    assert read(tmp_path / 'train' / '000000.jpg') != read(split_dir / 'train' / '000000.jpg')
    other = json.loads(read(tmp_path / 'annotations' / 'instances_train.json'))
    assert other['annotations'] != json.loads(
        read(split_dir / 'annotations' / 'instances_train.json'))['annotations']


def test_about_ten_percent_of_images_are_empty(coco):
    with_objects = {ann['image_id'] for ann in coco['annotations']}
    assert len(coco['images']) - len(with_objects) == 1  # round(12 * 0.1)
    per_image = [sum(ann['image_id'] == img['id'] for ann in coco['annotations'])
                 for img in coco['images']]
    assert max(per_image) <= 3


def test_boxes_are_tight_polygon_extents_and_masks_exact(coco):
    masks_per_image = {}
    for ann in coco['annotations']:
        polygon = np.array(ann['segmentation'][0]).reshape(-1, 2)
        x, y, w, h = ann['bbox']
        np.testing.assert_allclose([x, y], polygon.min(axis=0), atol=0.011)
        np.testing.assert_allclose([x + w, y + h], polygon.max(axis=0), atol=0.011)
        assert 16 * 0.4 - 1 <= max(w, h) <= 40 * 1.2  # within size_range (tilt, jitter)
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(
            ann['segmentation'], 96, 96)))
        ys, xs = np.nonzero(mask)
        assert xs.min() >= np.floor(x) and xs.max() <= np.ceil(x + w)
        assert ys.min() >= np.floor(y) and ys.max() <= np.ceil(y + h)
        assert abs(mask.sum() - ann['area']) <= 0.15 * ann['area']
        masks_per_image.setdefault(ann['image_id'], []).append(mask)
    # Shapes never cover each other, so every mask is the whole visible shape.
    for masks in masks_per_image.values():
        assert np.stack(masks).sum(axis=0).max() == 1


def test_drawn_shapes_are_flat_inside_their_masks(split_dir, coco):
    image = cv2.imread(str(split_dir / 'train' / '000000.jpg')).astype(np.float32)
    for ann in (a for a in coco['annotations'] if a['image_id'] == 1):
        mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(
            ann['segmentation'], 96, 96))).astype(bool)
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        # A flat colour plus noise inside the shape (std ~ noise), unlike the background.
        assert image[inner].std(axis=0).max() < 15


def test_dataset_generates_on_first_use(tmp_path):
    dataset = ShapesDataset(data_root=str(tmp_path), seed=3, **SMALL)
    assert dataset.split == 'train'
    assert len(dataset) == 12
    assert dataset.metainfo['classes'] == ('circle', 'rectangle', 'triangle')
    info = dataset.get_data_info(0)
    assert info['img_path'] == str(tmp_path / 'train' / '000000.jpg')
    assert os.path.isfile(info['img_path'])
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.tmp_shapes')]
    labels = {inst['bbox_label'] for i in range(12)
              for inst in dataset.get_data_info(i)['instances']}
    assert labels <= {0, 1, 2}


@pytest.mark.slow
def test_val_split_from_config_and_filter_in_train_mode(tmp_path):
    val = DATASETS.build(dict(
        type='ShapesDataset', data_root=str(tmp_path), test_mode=True,
        ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'), **SMALL))
    assert val.split == 'val' and val.generation_params['seed'] == 1
    assert (tmp_path / 'annotations' / 'instances_val.json').is_file()
    train = ShapesDataset(data_root=str(tmp_path), filter_cfg=dict(filter_empty_gt=True),
                          **SMALL)
    assert train.generation_params['seed'] == 0
    assert len(train) == 11  # the empty image is filtered out in train mode


@pytest.mark.slow
def test_existing_set_is_reused_not_regenerated(tmp_path):
    ShapesDataset(data_root=str(tmp_path), **SMALL)
    ann_file = tmp_path / 'annotations' / 'instances_train.json'
    image = tmp_path / 'train' / '000000.jpg'
    stamps = (ann_file.stat().st_mtime_ns, image.stat().st_mtime_ns)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # same parameters: reused silently
        assert not prepare_shapes_split(str(tmp_path / 'train'), str(ann_file),
                                        split='train', seed=0, empty_ratio=0.1, **SMALL)
        dataset = ShapesDataset(data_root=str(tmp_path), **SMALL)
    assert len(dataset) == 12
    assert (ann_file.stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps


@pytest.mark.slow
def test_reuse_with_other_parameters_warns(tmp_path):
    ShapesDataset(data_root=str(tmp_path), **SMALL)
    with pytest.warns(UserWarning, match='num_images: stored 12, requested 13'):
        dataset = ShapesDataset(data_root=str(tmp_path), **dict(SMALL, num_images=13))
    assert len(dataset) == 12


def test_leftover_temporary_folder_is_not_used(tmp_path):
    # A crashed run left a temporary folder with a bogus, complete-looking split.
    leftover = tmp_path / '.tmp_shapes_train_crashed'
    (leftover / 'annotations').mkdir(parents=True)
    (leftover / 'train').mkdir()
    (leftover / 'annotations' / 'instances_train.json').write_text('{"broken": ')
    dataset = ShapesDataset(data_root=str(tmp_path), **SMALL)
    assert len(dataset) == 12
    assert (leftover / 'annotations' / 'instances_train.json').read_text() == '{"broken": '


def test_images_without_json_are_regenerated(tmp_path):
    # Interrupted between moving the images and the json: the images are ours (marker).
    generate_shapes_split(str(tmp_path), 'train', seed=9, **SMALL)
    os.remove(tmp_path / 'annotations' / 'instances_train.json')
    stale = read(tmp_path / 'train' / '000000.jpg')
    dataset = ShapesDataset(data_root=str(tmp_path), seed=3, **SMALL)
    assert len(dataset) == 12
    assert read(tmp_path / 'train' / '000000.jpg') != stale


def test_user_folder_is_never_deleted(tmp_path):
    (tmp_path / 'train').mkdir()
    (tmp_path / 'train' / 'mine.txt').write_text('keep')
    with pytest.raises(FileExistsError, match='was not generated by it'):
        ShapesDataset(data_root=str(tmp_path), **SMALL)
    assert (tmp_path / 'train' / 'mine.txt').read_text() == 'keep'


def test_bad_generation_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_images >= 1'):
        generate_shapes_split(str(tmp_path), 'train', num_images=0)
    with pytest.raises(ValueError, match='size_range'):
        generate_shapes_split(str(tmp_path), 'train', num_images=2, image_size=64,
                              size_range=(10, 100))
    with pytest.raises(KeyError, match=r"data_prefix\['img'\]"):
        ShapesDataset(data_root=str(tmp_path), data_prefix=dict(seg='seg/'))
