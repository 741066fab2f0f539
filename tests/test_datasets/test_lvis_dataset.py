"""LVISV05Dataset / LVISV1Dataset: parsing a tiny LVIS json, class names from the file,
image path rules, filters and the missing-package error."""
import sys

import pytest
from helpers_lvis import CLASSES, tiny_lvis_v1, write_json

from mmdet_lite.datasets import CocoDataset, LVISDataset, LVISV05Dataset, LVISV1Dataset
from mmdet_lite.registry import DATASETS


@pytest.fixture
def v1_file(tmp_path) -> str:
    return write_json(tiny_lvis_v1(), tmp_path / 'lvis_v1_tiny.json')


def test_registered_names_and_classes():
    assert DATASETS.get('LVISV05Dataset') is LVISV05Dataset
    assert DATASETS.get('LVISDataset') is LVISV05Dataset  # mmdetection's alias of v0.5
    assert LVISDataset is LVISV05Dataset
    assert DATASETS.get('LVISV1Dataset') is LVISV1Dataset
    assert issubclass(LVISV1Dataset, LVISV05Dataset)
    assert issubclass(LVISV05Dataset, CocoDataset)


@pytest.mark.slow
def test_v1_data_list(v1_file):
    dataset = LVISV1Dataset(ann_file=v1_file, data_prefix=dict(img='data/coco/'),
                            pipeline=[])
    assert len(dataset) == 3
    first, second, third = (dataset.get_data_info(i) for i in range(3))
    # v1 paths come from coco_url, split folder included
    assert first['img_path'] == 'data/coco/val2017/000000000001.jpg'
    assert second['img_path'] == 'data/coco/train2017/000000000002.jpg'
    assert (first['img_id'], first['height'], first['width']) == (1, 80, 100)
    # labels follow the file's category order: apple 0, banana 1, cherry 2, durian 3
    assert [(i['bbox'], i['bbox_label']) for i in first['instances']] == [
        ([10, 10, 40, 30], 0), ([50, 40, 70, 60], 2)]
    assert [(i['bbox'], i['bbox_label']) for i in second['instances']] == [
        ([5, 5, 45, 55], 1), ([60, 10, 110, 70], 0)]
    assert first['instances'][0]['mask'] == [[10, 10, 40, 10, 40, 30, 10, 30]]
    assert all(i['ignore_flag'] == 0 for i in first['instances'] + second['instances'])
    assert third['instances'] == []


@pytest.mark.slow
def test_classes_come_from_the_annotation_file(v1_file):
    dataset = LVISV1Dataset(ann_file=v1_file, pipeline=[])
    assert dataset.metainfo['classes'] == CLASSES
    palette = dataset.metainfo['palette']
    assert len(palette) == len(CLASSES)
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in palette)
    # generated, but the same on every build
    again = LVISV1Dataset(ann_file=v1_file, pipeline=[])
    assert again.metainfo['palette'] == palette


def test_metainfo_classes_select_by_name(v1_file):
    dataset = LVISV1Dataset(ann_file=v1_file, pipeline=[],
                            metainfo=dict(classes=('cherry', 'apple')))
    labels = [[i['bbox_label'] for i in dataset.get_data_info(k)['instances']]
              for k in range(3)]
    # image 1: apple -> 1, cherry -> 0; image 2: banana dropped, apple -> 1
    assert labels == [[1, 0], [1], []]
    assert dataset.metainfo['classes'] == ('cherry', 'apple')
    with pytest.raises(ValueError, match='kiwi'):
        LVISV1Dataset(ann_file=v1_file, pipeline=[], metainfo=dict(classes=('kiwi',)))


@pytest.mark.slow
def test_filter_empty_gt(v1_file):
    dataset = LVISV1Dataset(ann_file=v1_file, pipeline=[], test_mode=False,
                            filter_cfg=dict(filter_empty_gt=True))
    assert [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))] == [1, 2]
    # only banana selected: image 2 is the only one left with an instance
    banana_only = LVISV1Dataset(ann_file=v1_file, pipeline=[], test_mode=False,
                                metainfo=dict(classes=('banana',)),
                                filter_cfg=dict(filter_empty_gt=True))
    assert [banana_only.get_data_info(i)['img_id'] for i in range(len(banana_only))] == [2]
    # test mode keeps every image
    kept = LVISV1Dataset(ann_file=v1_file, pipeline=[], test_mode=True,
                         filter_cfg=dict(filter_empty_gt=True))
    assert len(kept) == 3


def test_v05_file_names(tmp_path):
    data = tiny_lvis_v1()
    for img in data['images']:
        del img['coco_url']
    data['images'][0]['file_name'] = 'COCO_val2014_000000000001.jpg'  # 2014 name
    data['images'][1]['file_name'] = 'val2017/000000000002.jpg'
    data['images'][2]['file_name'] = 'x.jpg'
    ann_file = write_json(data, tmp_path / 'lvis_v0.5_tiny.json')
    dataset = LVISDataset(ann_file=ann_file, data_prefix=dict(img='imgs/'), pipeline=[])
    assert [dataset.get_data_info(i)['img_path'] for i in range(3)] == [
        'imgs/000000000001.jpg', 'imgs/val2017/000000000002.jpg', 'imgs/x.jpg']


def test_duplicate_annotation_ids_are_an_assertion_error(tmp_path):
    data = tiny_lvis_v1()
    data['annotations'][1]['id'] = data['annotations'][0]['id']
    ann_file = write_json(data, tmp_path / 'dup.json')
    with pytest.raises(AssertionError, match='not unique'):
        LVISV1Dataset(ann_file=ann_file, pipeline=[])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.json'):
        LVISV1Dataset(ann_file=str(tmp_path / 'nope.json'), pipeline=[])


@pytest.mark.parametrize('cls', [LVISV05Dataset, LVISV1Dataset])
def test_missing_lvis_package(cls, v1_file, monkeypatch):
    monkeypatch.setitem(sys.modules, 'lvis', None)  # makes `import lvis` fail
    with pytest.raises(ImportError, match='pip install lvis'):
        cls(ann_file=v1_file, pipeline=[], lazy_init=True)
