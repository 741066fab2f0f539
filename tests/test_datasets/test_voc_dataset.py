"""XMLDataset / VOCDataset on hand-made VOC folders, and the dataset wrappers from configs."""
import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope

from mmdet_lite.datasets import VOC_CLASSES, VOC_PALETTE, CocoDataset, XMLDataset
from mmdet_lite.registry import DATASETS


def _object(name, box, difficult=None):
    diff = '' if difficult is None else f'<difficult>{difficult}</difficult>'
    xmin, ymin, xmax, ymax = box
    return (f'<object><name>{name}</name><pose>Left</pose>{diff}<bndbox><xmin>{xmin}</xmin>'
            f'<ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>')


def _xml(objects, size=(100, 80)):
    size_xml = '' if size is None else (f'<size><width>{size[0]}</width><height>{size[1]}'
                                        '</height><depth>3</depth></size>')
    return f'<annotation><folder>VOC2007</folder>{size_xml}{"".join(objects)}</annotation>'


@pytest.fixture
def voc_root(tmp_path):
    """VOCdevkit/VOC2007 with 3 images: 000001 (4 objects), 000002 (none), 000003 (no
    <size>: read from its 60x50 image)."""
    sub = tmp_path / 'VOC2007'
    (sub / 'Annotations').mkdir(parents=True)
    (sub / 'JPEGImages').mkdir()
    (sub / 'ImageSets' / 'Main').mkdir(parents=True)
    (sub / 'Annotations' / '000001.xml').write_text(_xml([
        _object('dog', (11, 21, 50.7, 60)),
        _object('cat', (1, 1, 30, 30), difficult=1),
        _object('zebra', (5, 5, 20, 20)),  # not a VOC class: skipped
        _object('person', (61, 11, 64, 70), difficult=0),
    ]))
    (sub / 'Annotations' / '000002.xml').write_text(_xml([]))
    (sub / 'Annotations' / '000003.xml').write_text(_xml([_object('car', (2, 3, 40, 30))],
                                                         size=None))
    cv2.imwrite(str(sub / 'JPEGImages' / '000003.jpg'), np.zeros((50, 60, 3), np.uint8))
    (sub / 'ImageSets' / 'Main' / 'trainval.txt').write_text('000001\n000002\n000003\n')
    return tmp_path


def build(root, **kwargs):
    cfg = dict(type='VOCDataset', data_root=str(root),
               ann_file='VOC2007/ImageSets/Main/trainval.txt',
               data_prefix=dict(sub_data_root='VOC2007/'), serialize_data=False)
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def test_metainfo_classes_palette_and_dataset_type(voc_root):
    dataset = build(voc_root, test_mode=True)
    assert len(VOC_CLASSES) == 20 and len(VOC_PALETTE) == 20
    assert dataset.metainfo['classes'] == VOC_CLASSES
    assert dataset.metainfo['palette'][0] == (106, 0, 228)
    assert dataset.metainfo['dataset_type'] == 'VOC2007'


def test_parsing_by_hand(voc_root):
    dataset = build(voc_root, test_mode=True)
    assert len(dataset) == 3
    info = dataset.get_data_info(0)
    root = str(voc_root)
    assert info['img_id'] == '000001'
    assert info['img_path'] == f'{root}/VOC2007/JPEGImages/000001.jpg'
    assert info['xml_path'] == f'{root}/VOC2007/Annotations/000001.xml'
    assert (info['width'], info['height']) == (100, 80)
    # 1-based VOC pixels -> 0-based ints (50.7 truncated to 50, minus 1); difficult -> ignore
    assert info['instances'] == [
        dict(ignore_flag=0, bbox=[10, 20, 49, 59], bbox_label=VOC_CLASSES.index('dog')),
        dict(ignore_flag=1, bbox=[0, 0, 29, 29], bbox_label=VOC_CLASSES.index('cat')),
        dict(ignore_flag=0, bbox=[60, 10, 63, 69], bbox_label=VOC_CLASSES.index('person')),
    ]
    assert dataset.get_data_info(1)['instances'] == []
    # no <size>: height and width come from the image
    assert (dataset.get_data_info(2)['height'], dataset.get_data_info(2)['width']) == (50, 60)
    assert dataset.get_cat_ids(0) == [11, 7, 14]


def test_filters_and_bbox_min_size(voc_root):
    dataset = build(voc_root, filter_cfg=dict(filter_empty_gt=True, min_size=55))
    # 000002 has no instance, 000003 is 60x50 (< 55)
    assert [d['img_id'] for d in dataset.data_list] == ['000001']
    dataset = build(voc_root, filter_cfg=dict(bbox_min_size=5))
    # the person box is 3 px wide: ignored
    assert [i['ignore_flag'] for i in dataset.get_data_info(0)['instances']] == [0, 1, 1]
    with pytest.raises(AssertionError, match='bbox_min_size'):
        build(voc_root, filter_cfg=dict(bbox_min_size=5), test_mode=True)
    # test mode keeps every image
    assert len(build(voc_root, test_mode=True, filter_cfg=dict(filter_empty_gt=True))) == 3


def test_xml_dataset_with_own_classes_and_subdirs(voc_root):
    sub = voc_root / 'VOC2007'
    (sub / 'Anns').mkdir()
    (sub / 'Anns' / '000001.xml').write_text((sub / 'Annotations' / '000001.xml').read_text())
    (voc_root / 'one.txt').write_text('000001\n')
    dataset = XMLDataset(data_root=str(voc_root), ann_file='one.txt', ann_subdir='Anns',
                         img_subdir='imgs', data_prefix=dict(sub_data_root='VOC2007/'),
                         metainfo=dict(classes=('cat', 'zebra')), test_mode=True)
    info = dataset.get_data_info(0)
    assert info['img_path'].endswith('VOC2007/imgs/000001.jpg')
    assert [(i['bbox_label'], i['ignore_flag']) for i in info['instances']] == [(0, 1), (1, 0)]
    with pytest.raises(AssertionError, match='`classes` in `XMLDataset` can not be None'):
        XMLDataset(data_root=str(voc_root), ann_file='one.txt',
                   data_prefix=dict(sub_data_root='VOC2007/'))


def test_missing_and_broken_files_are_named(voc_root):
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        build(voc_root, ann_file='nope.txt')
    (voc_root / 'VOC2007' / 'Annotations' / '000002.xml').write_text('<annotation>')
    with pytest.raises(ValueError, match='000002.xml.* not valid XML'):
        build(voc_root)


def _write_coco(path, num_images, landscape=True):
    import json
    w, h = (60, 40) if landscape else (40, 60)
    images = [dict(id=i + 1, file_name=f'{i}.jpg', width=w, height=h)
              for i in range(num_images)]
    anns = [dict(id=i + 1, image_id=i + 1, category_id=1 + i % 2, bbox=[1, 1, 10, 10],
                 area=100, iscrowd=0) for i in range(num_images)]
    cats = [dict(id=1, name='cat'), dict(id=2, name='dog')]
    path.write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    return str(path)


def test_mmengine_dataset_wrappers_from_configs(tmp_path):
    # mmengine's wrappers build their inner datasets from mmengine's root registry, which
    # finds ours under the default scope a Runner sets from the config's default_scope
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        _check_wrappers(tmp_path)


def _check_wrappers(tmp_path):
    coco = dict(type='CocoDataset', ann_file=_write_coco(tmp_path / 'a.json', 3),
                metainfo=dict(classes=('cat', 'dog')), test_mode=True, serialize_data=False)
    other = dict(coco, ann_file=_write_coco(tmp_path / 'b.json', 2))
    concat = DATASETS.build(dict(type='ConcatDataset', datasets=[coco, other]))
    assert len(concat) == 5
    assert concat.metainfo['classes'] == ('cat', 'dog')
    assert concat.get_data_info(4)['img_id'] == 2  # second image of b.json
    repeat = DATASETS.build(dict(type='RepeatDataset', dataset=coco, times=3))
    assert len(repeat) == 9 and repeat.metainfo['classes'] == ('cat', 'dog')
    assert repeat.get_data_info(7)['img_id'] == 2
    # image labels: cat, dog, cat; with oversample_thr=1 the class repeat factors are
    # max(1, sqrt(1 / f)): cat (f=2/3) 1.22, dog (f=1/3) 1.73; each image is repeated
    # ceil(factor of its classes) = 2 times (read through get_cat_ids)
    balanced = DATASETS.build(dict(type='ClassBalancedDataset', dataset=coco,
                                   oversample_thr=1.0))
    assert isinstance(balanced.dataset, CocoDataset)
    assert len(balanced) == 6
    # oversample_thr=1/3: cat is frequent enough (factor 1), dog 1
    balanced = DATASETS.build(dict(type='ClassBalancedDataset', dataset=coco,
                                   oversample_thr=1 / 3))
    assert len(balanced) == 3
    assert balanced.metainfo['classes'] == ('cat', 'dog')
    assert isinstance(concat.datasets[0], CocoDataset)
