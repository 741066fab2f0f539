"""CocoDataset: parsing a tiny COCO json, category mapping, filters and bad-input errors."""
import json

import cv2
import mmengine
import numpy as np
import pytest

from mmdet_lite.datasets import COCO_CLASSES, COCO_PALETTE, CocoDataset
from mmdet_lite.registry import DATASETS

# The negative-box warning has its own test; elsewhere it is expected noise.
pytestmark = pytest.mark.filterwarnings('ignore:Dropped .* negative box:UserWarning')

CATEGORIES = [dict(id=1, name='cat'), dict(id=5, name='dog'), dict(id=9, name='bird')]
RLE = {'size': [80, 100], 'counts': [0, 50, 7950]}
POLYGON = [[10.0, 10.0, 30.0, 10.0, 30.0, 40.0, 10.0, 40.0]]


def tiny_coco() -> dict:
    """4 images: annotated, annotated (with 2 negative boxes), empty, and small (20x20)."""
    images = [
        dict(id=1, file_name='a.jpg', width=100, height=80),
        dict(id=2, file_name='b.jpg', width=60, height=40),
        dict(id=3, file_name='c.jpg', width=200, height=100),
        dict(id=4, file_name='d.jpg', width=20, height=20),
    ]
    anns = [
        dict(id=101, image_id=1, category_id=1, bbox=[10, 10, 20, 30], area=600,
             segmentation=POLYGON, iscrowd=0),
        dict(id=102, image_id=1, category_id=5, bbox=[0, 0, 50, 40], area=2000,
             segmentation=RLE, iscrowd=1),
        dict(id=103, image_id=1, category_id=9, bbox=[30, 20, 0.5, 10], area=5, iscrowd=0),
        dict(id=104, image_id=1, category_id=1, bbox=[5, 5, 10, 10], area=0, iscrowd=0),
        dict(id=105, image_id=1, category_id=1, bbox=[150, 150, 10, 10], area=100, iscrowd=0),
        dict(id=201, image_id=2, category_id=5, bbox=[1, 2, 3, 4], area=12, iscrowd=0),
        dict(id=202, image_id=2, category_id=9, bbox=[10, 10, -5, 5], area=25, iscrowd=0),
        dict(id=203, image_id=2, category_id=1, bbox=[10, 10, 5, -3], area=15, iscrowd=0),
        dict(id=401, image_id=4, category_id=9, bbox=[1, 1, 10, 10], area=100, iscrowd=0),
    ]
    return dict(images=images, annotations=anns, categories=CATEGORIES)


def write_json(path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def coco_root(tmp_path):
    write_json(tmp_path / 'annotations' / 'train.json', tiny_coco())
    return tmp_path


def build(root, **kwargs) -> CocoDataset:
    # serialize_data=False skips mmengine's gc.collect(), a tenth of a second per build.
    cfg = dict(data_root=str(root), ann_file='annotations/train.json',
               data_prefix=dict(img='images/'), metainfo=dict(classes=('cat', 'dog', 'bird')),
               serialize_data=False)
    cfg.update(kwargs)
    return CocoDataset(**cfg)


def test_default_metainfo_is_coco_80_classes():
    assert len(CocoDataset.METAINFO['classes']) == 80 == len(COCO_CLASSES)
    assert CocoDataset.METAINFO['classes'][0] == 'person'
    assert CocoDataset.METAINFO['classes'][-1] == 'toothbrush'
    assert len(COCO_PALETTE) == 80 and COCO_PALETTE[0] == (220, 20, 60)


def test_non_contiguous_category_ids_map_to_contiguous_labels(coco_root):
    dataset = build(coco_root, test_mode=True)
    assert dataset.cat_ids == [1, 5, 9]
    assert dataset.cat2label == {1: 0, 5: 1, 9: 2}
    assert dataset.metainfo['classes'] == ('cat', 'dog', 'bird')


def test_data_info_fields_and_instances(coco_root):
    dataset = build(coco_root, test_mode=True)
    assert len(dataset) == 4
    info = dataset.get_data_info(0)
    assert info['img_path'] == str(coco_root / 'images' / 'a.jpg')
    assert (info['img_id'], info['height'], info['width']) == (1, 80, 100)
    assert info['seg_map_path'] is None
    # 103 (w < 1), 104 (zero area) and 105 (outside the image) are dropped.
    assert info['instances'] == [
        dict(bbox=[10, 10, 30, 40], bbox_label=0, ignore_flag=0, mask=POLYGON),
        dict(bbox=[0, 0, 50, 40], bbox_label=1, ignore_flag=1, mask=RLE),
    ]
    assert dataset.get_cat_ids(0) == [0, 1]
    # Image 2: only the dog box survives; the two negative boxes are dropped.
    assert dataset.get_data_info(1)['instances'] == [
        dict(bbox=[1, 2, 4, 6], bbox_label=1, ignore_flag=0)]
    assert dataset.get_data_info(2)['instances'] == []


def test_negative_boxes_give_one_warning_with_count(coco_root):
    with pytest.warns(UserWarning, match='Dropped 2 annotation') as record:
        CocoDataset(data_root=str(coco_root), ann_file='annotations/train.json',
                    data_prefix=dict(img='images/'),
                    metainfo=dict(classes=('cat', 'dog', 'bird')), test_mode=True)
    assert len([r for r in record if 'negative' in str(r.message)]) == 1


def test_class_subset_and_order_follow_metainfo(coco_root):
    dataset = build(coco_root, metainfo=dict(classes=('dog', 'cat')), test_mode=True)
    assert dataset.cat_ids == [5, 1]
    assert dataset.cat2label == {5: 0, 1: 1}
    labels = [inst['bbox_label'] for inst in dataset.get_data_info(0)['instances']]
    assert labels == [1, 0]  # cat -> 1, crowd dog -> 0
    assert dataset.get_data_info(3)['instances'] == []  # its only box is a bird


@pytest.mark.parametrize('filter_cfg, img_ids', [
    (None, [1, 2, 3, 4]),
    (dict(filter_empty_gt=False, min_size=0), [1, 2, 3, 4]),
    (dict(filter_empty_gt=True, min_size=0), [1, 2, 4]),
    (dict(filter_empty_gt=False, min_size=32), [1, 2, 3]),
    (dict(filter_empty_gt=True, min_size=32), [1, 2]),
])
def test_filter_cfg_in_train_mode(coco_root, filter_cfg, img_ids):
    dataset = build(coco_root, filter_cfg=filter_cfg)
    assert [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))] == img_ids


def test_filter_cfg_is_ignored_in_test_mode(coco_root):
    dataset = build(coco_root, filter_cfg=dict(filter_empty_gt=True, min_size=32),
                    test_mode=True)
    assert len(dataset) == 4


def test_subset_filter_drops_images_without_selected_classes(coco_root):
    dataset = build(coco_root, metainfo=dict(classes=('bird',)),
                    filter_cfg=dict(filter_empty_gt=True))
    assert [dataset.get_data_info(i)['img_id'] for i in range(len(dataset))] == [4]
    assert dataset.get_data_info(0)['instances'][0]['bbox_label'] == 0


def test_lazy_init_and_unserialized_data(coco_root):
    dataset = build(coco_root, lazy_init=True, test_mode=True, serialize_data=True)
    assert not dataset._fully_initialized
    assert len(dataset) == 4  # triggers full_init
    assert dataset._fully_initialized
    plain = build(coco_root, serialize_data=False, test_mode=True, indices=2)
    assert len(plain) == 2 and plain.get_data_info(1)['img_id'] == 2


def test_backend_args_and_deprecated_file_client_args(coco_root):
    assert len(build(coco_root, backend_args=dict(backend='local'), test_mode=True)) == 4
    with pytest.warns(DeprecationWarning, match='backend_args'):
        dataset = CocoDataset(data_root=str(coco_root), ann_file='annotations/train.json',
                              metainfo=dict(classes=('cat', )), test_mode=True,
                              file_client_args=dict(backend='local'))
    assert dataset.backend_args == dict(backend='local')


def test_proposals_are_attached_by_folder_and_file_name(coco_root):
    proposals = {f'images/{name}': np.full((2, 5), i, np.float32)
                 for i, name in enumerate(['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg'])}
    mmengine.dump(proposals, str(coco_root / 'proposals.pkl'))
    dataset = build(coco_root, proposal_file='proposals.pkl', test_mode=True)
    np.testing.assert_array_equal(dataset.get_data_info(2)['proposals'], proposals['images/c.jpg'])
    del proposals['images/d.jpg']
    mmengine.dump(proposals, str(coco_root / 'partial.pkl'))
    with pytest.raises(KeyError, match="partial.pkl' has no entry 'images/d.jpg'"):
        build(coco_root, proposal_file='partial.pkl', test_mode=True)


def test_return_classes_adds_text(coco_root):
    dataset = build(coco_root, return_classes=True, test_mode=True)
    assert dataset.get_data_info(0)['text'] == ('cat', 'dog', 'bird')


def test_registry_build_and_pipeline_from_our_transforms(coco_root):
    (coco_root / 'images').mkdir()
    cv2.imwrite(str(coco_root / 'images' / 'a.jpg'), np.zeros((80, 100, 3), np.uint8))
    dataset = DATASETS.build(dict(
        type='CocoDataset', data_root=str(coco_root), ann_file='annotations/train.json',
        data_prefix=dict(img='images/'), metainfo=dict(classes=('cat', 'dog', 'bird')),
        test_mode=True, pipeline=[dict(type='LoadImageFromFile')]))
    assert dataset[0]['img'].shape == (80, 100, 3)
    # A missing image is reported by the loading transform, naming the file.
    with pytest.raises(FileNotFoundError, match='b.jpg'):
        dataset[1]


# ----------------------------------------------------------------------------- bad input
def test_missing_annotation_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.json'):
        CocoDataset(ann_file=str(tmp_path / 'missing.json'))


def test_malformed_json_is_named(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json' is not valid json"):
        CocoDataset(ann_file=str(path))


def test_unreadable_annotation_file_is_named(tmp_path):
    (tmp_path / 'folder.json').mkdir()
    with pytest.raises(ValueError, match="cannot read COCO annotation file .*folder.json"):
        CocoDataset(ann_file=str(tmp_path / 'folder.json'))


@pytest.mark.parametrize('data, error, match', [
    ([1, 2], ValueError, 'must hold a json object'),
    (dict(images=[]), ValueError, "needs a list field 'categories'"),
    (dict(images=[], categories=CATEGORIES), ValueError, 'lists no images'),
])
def test_bad_top_level_structure(tmp_path, data, error, match):
    path = write_json(tmp_path / 'odd.json', data)
    with pytest.raises(error, match=match):
        CocoDataset(ann_file=path)


def test_image_without_file_name(tmp_path):
    data = tiny_coco()
    del data['images'][1]['file_name']
    path = write_json(tmp_path / 'nofile.json', data)
    with pytest.raises(KeyError, match=r"image entry #1 \(id=2\) in .*nofile.json.*file_name"):
        CocoDataset(ann_file=path, metainfo=dict(classes=('cat', )))


def test_annotation_with_unknown_category_is_skipped_with_a_warning(tmp_path):
    # mmdetection skips an annotation whose category_id is not a listed category
    data = tiny_coco()
    data['annotations'].append(dict(id=777, image_id=1, category_id=42, bbox=[1, 1, 5, 5]))
    data['annotations'].append(dict(id=778, image_id=2, category_id=43, bbox=[1, 1, 5, 5]))
    path = write_json(tmp_path / 'badcat.json', data)
    with pytest.warns(UserWarning, match=r"Skipped 2 annotation\(s\) of '.*badcat.json' whose "
                      r'category_id .*first: annotation id=777 with category_id=42'):
        dataset = CocoDataset(ann_file=path, metainfo=dict(classes=('cat', 'dog', 'bird')),
                              test_mode=True, serialize_data=False)
    clean = CocoDataset(ann_file=write_json(tmp_path / 'clean.json', tiny_coco()),
                        metainfo=dict(classes=('cat', 'dog', 'bird')), test_mode=True,
                        serialize_data=False)
    assert [d['instances'] for d in dataset.data_list] == \
        [d['instances'] for d in clean.data_list]


def test_annotation_with_unknown_image_or_duplicate_id(tmp_path):
    data = tiny_coco()
    data['annotations'].append(dict(id=778, image_id=99, category_id=1, bbox=[1, 1, 5, 5]))
    path = write_json(tmp_path / 'badimg.json', data)
    with pytest.raises(KeyError, match=r"annotation id=778 in .*badimg.json.*image_id=99"):
        CocoDataset(ann_file=path, metainfo=dict(classes=('cat', )))
    data = tiny_coco()
    data['annotations'].append(dict(data['annotations'][0]))
    path = write_json(tmp_path / 'dup.json', data)
    with pytest.raises(ValueError, match="annotation ids in .*dup.json.* are not unique"):
        CocoDataset(ann_file=path, metainfo=dict(classes=('cat', )))


def test_annotation_without_bbox(tmp_path):
    data = tiny_coco()
    del data['annotations'][0]['bbox']
    path = write_json(tmp_path / 'nobox.json', data)
    with pytest.raises(KeyError, match=r"annotation entry #0 \(id=101\) in .*nobox.json.*'bbox'"):
        CocoDataset(ann_file=path, metainfo=dict(classes=('cat', )))


def test_class_not_in_categories(coco_root):
    with pytest.raises(ValueError, match=r"\['zebra'\].*train.json"):
        build(coco_root, metainfo=dict(classes=('cat', 'zebra')))
    # The default 80 COCO classes on a custom json point at metainfo.
    with pytest.raises(ValueError, match='metainfo=dict'):
        CocoDataset(ann_file=str(coco_root / 'annotations' / 'train.json'))


def test_single_class_given_as_str(coco_root):
    with pytest.raises(TypeError, match=r"trailing comma: classes=\('cat',\)"):
        build(coco_root, metainfo=dict(classes='cat'))


def test_empty_after_filtering_names_the_filter(tmp_path):
    data = tiny_coco()
    data['annotations'] = []
    path = write_json(tmp_path / 'empty.json', data)
    with pytest.raises(ValueError, match='filter_empty_gt removed 4 of 4 images'):
        CocoDataset(ann_file=path, metainfo=dict(classes=('cat', )),
                    filter_cfg=dict(filter_empty_gt=True, min_size=32))
    with pytest.raises(ValueError, match='min_size=500 removed 4'):
        CocoDataset(ann_file=path, metainfo=dict(classes=('cat', )),
                    filter_cfg=dict(filter_empty_gt=False, min_size=500))
