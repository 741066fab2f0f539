"""A broken COCO annotation file costs no run: each problem is reported when the file is read.

- Invalid polygons (fewer than 3 points, an odd number of coordinates, a NaN/inf
  coordinate, an empty segmentation) used to pass the dataset and then crash pycocotools in
  segm evaluation, after a whole epoch (a NaN coordinate even made ``frPyObjects`` eat all
  memory). ``CocoDataset`` and ``CocoMetric`` now drop them with one warning per file
  (count, file, first annotation id); an instance with nothing valid left keeps its box and
  is an ignored region for masks, in training and in segm evaluation alike.
  ``CocoDataset(strict=True)`` makes each an error naming the file, the id and the problem.
- Bad boxes (negative width/height, NaN) and missing fields give a warning or an error
  naming the annotation; annotations of an unknown category id are skipped with a warning
  (mmdetection skips them silently).
- End to end: ``tools/test.py`` on a shapes val set with broken polygons warns once and
  evaluates; with ``strict=True`` it stops with a one-line error before testing, leaving
  an earlier ``--out`` file as it was.
"""
import json
import math
import pickle
import re
import warnings

import pytest
import torch
from helpers_tools import TINY_CONFIG, run_tool, tiny_data_cfg_options
from mmengine.config import Config

from mmdet_lite.datasets import CocoDataset
from mmdet_lite.datasets.transforms import LoadAnnotations
from mmdet_lite.evaluation import CocoMetric

CLASSES = ('cat', 'dog')
SQUARE = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]  # a valid 20x20 polygon

# (name, segmentation of annotation 7, text of its problem)
BAD_SEGMENTATIONS = [
    ('two points', [[40, 40, 50, 40]], 'polygon 0 has 4 coordinates, fewer than 6'),
    ('odd count', [[40, 40, 50, 40, 50, 50, 40]], 'polygon 0 has an odd number of coordinates'),
    ('nan', [[40, 40, 50, float('nan'), 50, 50, 40, 50]], 'polygon 0 has a non-finite'),
    ('inf', [[40, 40, 50, 40, float('inf'), 50, 40, 50]], 'polygon 0 has a non-finite'),
    ('empty list', [], 'segmentation is empty'),
    ('empty polygon', [[]], 'polygon 0 has 0 coordinates'),
    ('not a number', [[40, 40, 50, 40, 50, 'x']], 'not a number'),
    ('bad rle size', {'size': [10, 10], 'counts': [100]}, 'RLE size [10, 10], but its image'),
]


def coco_json(seg7, **extra_ann7) -> dict:
    """One 64x64 image: annotation 1 (a valid square) and annotation 7 (segmentation seg7)."""
    return dict(
        images=[dict(id=1, file_name='a.jpg', height=64, width=64)],
        categories=[dict(id=1, name='cat'), dict(id=2, name='dog')],
        annotations=[
            dict(id=1, image_id=1, category_id=1, bbox=[10, 10, 20, 20], area=400,
                 iscrowd=0, segmentation=[SQUARE]),
            dict(dict(id=7, image_id=1, category_id=2, bbox=[40, 40, 10, 10], area=100,
                      iscrowd=0, segmentation=seg7), **extra_ann7)])


def write(tmp_path, data, name='ann.json') -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))  # NaN/Infinity are written as json extensions
    return str(path)


def build(ann_file, **kwargs) -> CocoDataset:
    return CocoDataset(ann_file=ann_file, metainfo=dict(classes=CLASSES), test_mode=True,
                       serialize_data=False, **kwargs)


def user_warnings(record, text):
    return [str(r.message) for r in record if text in str(r.message)]


@pytest.mark.parametrize('seg7,problem', [c[1:] for c in BAD_SEGMENTATIONS],
                         ids=[c[0] for c in BAD_SEGMENTATIONS])
def test_invalid_segmentation_warns_once_and_instance_keeps_its_box(tmp_path, seg7, problem):
    ann_file = write(tmp_path, coco_json(seg7))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        dataset = build(ann_file)
    (message, ) = user_warnings(record, 'invalid polygon')
    assert ann_file in message and 'annotation id=7' in message and problem in message
    assert 'dropped 1 invalid' in message and 'strict=True' in message
    good, bad = dataset.get_data_info(0)['instances']
    assert good['mask'] == [SQUARE]
    assert bad['bbox'] == [40, 40, 50, 50] and bad['ignore_flag'] == 0 and bad['mask'] == []

    # training with masks ignores the instance (placeholder mask); boxes-only keeps it
    info = dataset.get_data_info(0)
    with_mask = LoadAnnotations(with_bbox=True, with_mask=True)(dict(info))
    assert with_mask['gt_ignore_flags'].tolist() == [False, True]
    assert len(with_mask['gt_masks']) == 2
    boxes_only = LoadAnnotations(with_bbox=True)(dict(info))
    assert boxes_only['gt_ignore_flags'].tolist() == [False, False]


@pytest.mark.parametrize('seg7,problem', [c[1:] for c in BAD_SEGMENTATIONS],
                         ids=[c[0] for c in BAD_SEGMENTATIONS])
def test_strict_makes_an_invalid_segmentation_an_error(tmp_path, seg7, problem):
    ann_file = write(tmp_path, coco_json(seg7))
    with pytest.raises(ValueError) as err:
        build(ann_file, strict=True)
    message = str(err.value)
    assert ann_file in message and 'annotation id=7' in message and problem in message
    assert 'strict=False' in message


def test_one_warning_per_file_counts_every_bad_polygon(tmp_path):
    data = coco_json([[40, 40, 50, 40, 50, 50, 40, 50], [1, 2, 3, 4]])  # one of two is bad
    data['annotations'].append(dict(id=9, image_id=1, category_id=1, bbox=[0, 0, 8, 8],
                                    area=64, iscrowd=0, segmentation=[[1, 2], [3]]))
    ann_file = write(tmp_path, data)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        dataset = build(ann_file)
    (message, ) = user_warnings(record, 'invalid polygon')
    assert ('dropped 3 invalid polygon(s) or mask(s) in 2 annotation(s) (first: annotation '
            'id=7: polygon 1 has 4 coordinates') in message
    assert '1 annotation(s) have no valid mask left' in message
    instances = dataset.get_data_info(0)['instances']
    assert instances[1]['mask'] == [[40, 40, 50, 40, 50, 50, 40, 50]]  # the valid one stays
    assert instances[2]['mask'] == []


def _prediction(mask_boxes):
    """One image's predictions: a box + filled mask per (x1, y1, x2, y2)."""
    masks = torch.zeros(len(mask_boxes), 64, 64, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(mask_boxes):
        masks[i, y1:y2, x1:x2] = True
    return dict(img_id=1, ori_shape=(64, 64), pred_instances=dict(
        bboxes=torch.tensor(mask_boxes, dtype=torch.float32),
        scores=torch.linspace(0.9, 0.8, len(mask_boxes)),
        labels=torch.tensor([0, 1][:len(mask_boxes)]), masks=masks))


@pytest.mark.parametrize('seg7,problem', [c[1:] for c in BAD_SEGMENTATIONS],
                         ids=[c[0] for c in BAD_SEGMENTATIONS])
def test_metric_evaluates_bbox_and_segm_on_a_file_with_invalid_polygons(
        tmp_path, seg7, problem):
    ann_file = write(tmp_path, coco_json(seg7))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    (message, ) = user_warnings(record, 'invalid polygon')
    assert ann_file in message and 'annotation id=7' in message
    # what pycocotools will rasterize is clean: the guard before evaluating (a NaN left in
    # would make pycocotools allocate memory until the process is killed)
    for ann in metric._coco_api.dataset['annotations']:
        for polygon in ann['segmentation'] if isinstance(ann['segmentation'], list) else []:
            assert len(polygon) >= 6 and len(polygon) % 2 == 0
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in polygon)
    metric.dataset_meta = dict(classes=CLASSES)
    # a perfect box + mask for annotation 1, a perfect box for annotation 7
    metric.process(None, [_prediction([(10, 10, 30, 30), (40, 40, 50, 50)])])
    results = metric.evaluate(1)
    # bbox: annotation 7 is an ordinary object (its box is valid), both found
    assert results['coco/bbox_mAP'] == 1.0
    # segm: annotation 7 is an ignored region, its detection neither hit nor false positive
    assert results['coco/segm_mAP'] == 1.0


def test_segm_metric_on_a_detection_only_file_fails_at_build(tmp_path):
    data = coco_json(None)
    for ann in data['annotations']:
        del ann['segmentation']
    ann_file = write(tmp_path, data)
    with pytest.raises(ValueError, match=r"metric 'segm' needs instance masks.*no annotation "
                       r"of '.*ann.json' has a 'segmentation'"):
        CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    CocoMetric(ann_file=ann_file, metric='bbox')  # boxes alone are fine


@pytest.mark.parametrize('bbox,kind,problem', [
    ([40, 40, -10, 10], 'negative box width or height', 'has a negative width or height'),
    ([40, 40, 10, float('nan')], 'a NaN or infinite box value', 'has a NaN or infinite'),
    ([float('inf'), 40, 10, 10], 'a NaN or infinite box value', 'has a NaN or infinite'),
])
def test_bad_boxes_are_dropped_with_a_warning_or_refused_with_strict(
        tmp_path, bbox, kind, problem):
    ann_file = write(tmp_path, coco_json([SQUARE], bbox=bbox))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        dataset = build(ann_file)
    (message, ) = user_warnings(record, kind)
    assert message.startswith('Dropped 1 annotation(s) with ') and ann_file in message
    assert '(first: annotation id=7)' in message
    assert len(dataset.get_data_info(0)['instances']) == 1
    with pytest.raises(ValueError, match=rf"'{re.escape(ann_file)}': annotation id=7: bbox "
                       rf'.* {problem}'):
        build(ann_file, strict=True)


@pytest.mark.parametrize('bbox', [[1, 2, 3], 'x', [1, 2, 'w', 4], None])
def test_malformed_box_is_an_error(tmp_path, bbox):
    ann_file = write(tmp_path, coco_json([SQUARE], bbox=bbox))
    with pytest.raises(ValueError, match=r"annotation id=7 in '.*ann.json' has bbox .*; "
                       r'expected \[x, y, w, h\] \(4 numbers\)'):
        build(ann_file)


def test_unknown_category_id_is_skipped_with_a_warning(tmp_path):
    # mmdetection's behaviour: the annotation is left out, the rest of the file is used
    ann_file = write(tmp_path, coco_json([SQUARE], category_id=42))
    with pytest.warns(UserWarning, match=r"Skipped 1 annotation\(s\) of '.*ann.json' whose "
                      r"category_id is not in its 'categories' \(ids \[1, 2\]\); first: "
                      r'annotation id=7 with category_id=42'):
        dataset = build(ann_file)
    instances = dataset.get_data_info(0)['instances']
    assert [inst['bbox'] for inst in instances] == [[10.0, 10.0, 30.0, 30.0]]
    assert [inst['bbox_label'] for inst in instances] == [0]


@pytest.mark.parametrize('section,index,field,kind', [
    ('images', 0, 'height', 'image'),
    ('annotations', 1, 'image_id', 'annotation'),
    ('annotations', 0, 'bbox', 'annotation'),
    ('categories', 1, 'name', 'category'),
])
def test_missing_required_field_is_an_error(tmp_path, section, index, field, kind):
    data = coco_json([SQUARE])
    entry = data[section][index]
    del entry[field]
    ann_file = write(tmp_path, data)
    with pytest.raises(KeyError, match=rf"{kind} entry #{index} \(id={entry['id']}\) in "
                       rf"'.*ann.json' has no field \['{field}'\]"):
        build(ann_file)


# --- end to end: tools/test.py ------------------------------------------------------------


@pytest.fixture(scope='module')
def broken_shapes(tmp_path_factory):
    """The tiny config's shapes val set with two broken polygons, and a checkpoint."""
    from mmdet_lite.registry import DATASETS, MODELS
    from mmdet_lite.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    root = tmp_path_factory.mktemp('broken_shapes')
    cfg = Config.fromfile(TINY_CONFIG)
    DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=f'{root}/', pipeline=[]))
    ann_file = root / 'annotations' / 'instances_val.json'
    data = json.loads(ann_file.read_text())
    first, second = data['annotations'][:2]
    first['segmentation'] = [[1.0, 2.0, 3.0, 4.0]]
    second['segmentation'][0][1] = float('nan')
    ann_file.write_text(json.dumps(data))
    checkpoint = root / 'faster_rcnn.pth'
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict(), meta={}), checkpoint)
    return root, ann_file, first['id'], checkpoint


@pytest.mark.slow
def test_test_tool_warns_once_and_evaluates(broken_shapes, tmp_path):
    root, ann_file, first_id, checkpoint = broken_shapes
    proc = run_tool('test', [TINY_CONFIG, checkpoint, '--work-dir', tmp_path / 'work',
                             '--cfg-options', *tiny_data_cfg_options(root)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = [line for line in proc.stderr.splitlines() if 'invalid polygon' in line]
    # the dataset and the metric both clean the file; Python shows the same warning once
    assert len(warned) == 1, proc.stderr[-3000:]
    assert (f"'{ann_file}': dropped 2 invalid polygon(s) or mask(s) in 2 annotation(s) "
            f'(first: annotation id={first_id}: polygon 0 has 4 coordinates') in warned[0]
    assert 'coco/bbox_mAP: ' in proc.stdout


@pytest.mark.slow
def test_test_tool_strict_stops_before_testing_and_keeps_out_file(broken_shapes, tmp_path):
    root, ann_file, first_id, checkpoint = broken_shapes
    out = tmp_path / 'results.pkl'
    out.write_bytes(pickle.dumps(['earlier predictions']))
    proc = run_tool('test', [TINY_CONFIG, checkpoint, '--work-dir', tmp_path / 'work',
                             '--out', out, '--cfg-options', *tiny_data_cfg_options(root),
                             '+test_dataloader.dataset.strict=True'])
    assert proc.returncode == 2, proc.stderr[-3000:]
    (error, ) = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert (f"error: COCO annotation file '{ann_file}': annotation id={first_id}: polygon 0 "
            'has 4 coordinates, fewer than 6 (a polygon needs 3 points); fix or remove it, '
            'or set strict=False') in error
    assert 'Traceback' not in proc.stderr and 'Epoch(test)' not in proc.stdout
    assert pickle.loads(out.read_bytes()) == ['earlier predictions']
