"""Tests for CocoMetric: COCO AP/AR through pycocotools, json output and bad inputs."""
import json

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData
from pycocotools.coco import COCO

from mmdet_lite.evaluation import CocoMetric
from mmdet_lite.evaluation.metrics import coco_metric as coco_metric_module
from mmdet_lite.registry import METRICS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks, encode_mask_results

# pycocotools' own decode (used by COCO.annToMask) trips a numpy 2 deprecation warning.
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

CLASSES = ('cat', 'dog')
CAT_IDS = (3, 7)  # non-contiguous COCO ids: label 0 -> 3, label 1 -> 7


def _square(x, y, size):
    return [x, y, x + size, y + size]


def _xywh(box):
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _polygon(box):
    x1, y1, x2, y2 = box
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def _write_coco(tmp_path, gt_by_image, image_hw=(200, 300), name='ann.json'):
    """gt_by_image: {img_id: [(label, xyxy box), ...]} -> path of a COCO json."""
    images, annotations = [], []
    for img_id, objects in gt_by_image.items():
        images.append(dict(id=img_id, file_name=f'{img_id}.jpg', height=image_hw[0],
                           width=image_hw[1]))
        for label, box in objects:
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(dict(id=len(annotations) + 1, image_id=img_id,
                                    category_id=CAT_IDS[label], bbox=_xywh(box), area=w * h,
                                    iscrowd=0, segmentation=_polygon(box)))
    categories = [dict(id=i, name=n) for i, n in zip(CAT_IDS, CLASSES)]
    path = tmp_path / name
    path.write_text(json.dumps(dict(images=images, annotations=annotations,
                                    categories=categories)))
    return str(path)


def _sample(img_id, bboxes, scores, labels, masks=None, ori_shape=(200, 300), **extra):
    pred = dict(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.tensor(scores, dtype=torch.float32),
                labels=torch.tensor(labels, dtype=torch.int64))
    if masks is not None:
        pred['masks'] = masks
    return dict(img_id=img_id, ori_shape=ori_shape, pred_instances=pred, **extra)


def _evaluate(metric, samples, classes=CLASSES):
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, samples)
    return metric.evaluate(size=len(samples))


@pytest.fixture
def logged(monkeypatch):
    """Collect the messages CocoMetric sends to print_log."""
    messages = []
    monkeypatch.setattr(coco_metric_module, 'print_log',
                        lambda msg, *args, **kwargs: messages.append(str(msg)))
    return messages


GT = {1: [(0, _square(10, 10, 100)), (1, _square(150, 50, 120))],
      2: [(1, _square(0, 0, 50))]}


def _perfect_samples(gt=GT, with_masks=False, coco=None):
    samples = []
    for img_id, objects in gt.items():
        masks = None
        if with_masks:  # rasterise the GT polygons exactly as pycocotools does
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns]).astype(bool))
        samples.append(_sample(img_id, [b for _, b in objects], [0.9] * len(objects),
                               [lbl for lbl, _ in objects], masks=masks))
    return samples


def test_registered_with_mmdet_default_prefix():
    metric = METRICS.build(dict(type='CocoMetric', metric=['bbox', 'segm']))
    assert isinstance(metric, CocoMetric)
    assert metric.prefix == 'coco' and metric.metrics == ['bbox', 'segm']
    assert metric.proposal_nums == [100, 300, 1000]
    np.testing.assert_allclose(metric.iou_thrs, np.arange(10) * 0.05 + 0.5)


def test_perfect_boxes_give_ap_one(tmp_path):
    results = _evaluate(CocoMetric(ann_file=_write_coco(tmp_path, GT)), _perfect_samples())
    assert list(results) == ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75',
                             'coco/bbox_mAP_s', 'coco/bbox_mAP_m', 'coco/bbox_mAP_l']
    assert results['coco/bbox_mAP'] == 1.0 and results['coco/bbox_mAP_50'] == 1.0
    # COCO areas: small < 32^2 <= medium < 96^2 <= large; 50^2 is medium, 100^2, 120^2 large.
    assert results['coco/bbox_mAP_s'] == -1.0  # no small objects: undefined
    assert results['coco/bbox_mAP_m'] == 1.0 and results['coco/bbox_mAP_l'] == 1.0


def test_perfect_masks_give_segm_ap_one(tmp_path):
    ann_file = _write_coco(tmp_path, GT)
    samples = _perfect_samples(with_masks=True, coco=COCO(ann_file))
    results = _evaluate(CocoMetric(ann_file=ann_file, metric=['bbox', 'segm']), samples)
    assert results['coco/segm_mAP'] == 1.0 and results['coco/segm_mAP_75'] == 1.0
    assert results['coco/bbox_mAP'] == 1.0


def test_hand_computed_ap(tmp_path):
    # One class, three GT boxes (each 100x100, "large"), four predictions by score:
    #   0.9 -> GT a exact (TP), 0.8 -> nowhere (FP), 0.7 -> GT b exact (TP),
    #   0.6 -> GT c with IoU 100*64 / 100*100 = 0.64 (TP only at IoU thresholds <= 0.60).
    # IoU 0.50, 0.55, 0.60: TP FP TP TP -> recall 1/3 1/3 2/3 1, precision 1 .5 .667 .75;
    #   interpolated (max to the right) 1, .75, .75, .75. Of the 101 recall points
    #   0, .01, ..., 1: 34 (0..0.33) get 1.0, 67 (0.34..1) get 0.75 -> AP = 84.25 / 101.
    # IoU 0.65 ... 0.95: TP FP TP FP -> recall 1/3 1/3 2/3 2/3, interpolated precision
    #   1, 2/3, 2/3, .5: 34 points get 1, 33 (0.34..0.66) get 2/3, 34 are unreached (0)
    #   -> AP = 56 / 101.
    ap_low, ap_high = 84.25 / 101, 56 / 101
    gt_a, gt_b, gt_c = _square(0, 0, 100), _square(120, 0, 100), _square(0, 110, 100)
    ann_file = _write_coco(tmp_path, {1: [(0, gt_a), (0, gt_b), (0, gt_c)]}, (250, 250))
    preds = [gt_a, _square(130, 130, 100), gt_b, [0, 110, 100, 174]]
    sample = _sample(1, preds, [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0], ori_shape=(250, 250))
    results = _evaluate(CocoMetric(ann_file=ann_file), [sample], classes=('cat',))
    assert results['coco/bbox_mAP_50'] == pytest.approx(ap_low, abs=1e-3)
    assert results['coco/bbox_mAP_75'] == pytest.approx(ap_high, abs=1e-3)
    assert results['coco/bbox_mAP'] == pytest.approx((3 * ap_low + 7 * ap_high) / 10, abs=1e-3)
    assert results['coco/bbox_mAP_l'] == results['coco/bbox_mAP']


def test_classwise_table_and_per_class_precision(tmp_path, logged):
    gt = {1: [(0, _square(10, 10, 100)), (1, _square(150, 50, 120))]}
    # Only the cat is found, so dog's AP is 0.
    sample = _sample(1, [_square(10, 10, 100)], [0.9], [0])
    results = _evaluate(CocoMetric(ann_file=_write_coco(tmp_path, gt), classwise=True),
                        [sample])
    assert results['coco/cat_precision'] == 1.0
    assert results['coco/dog_precision'] == 0.0
    assert results['coco/bbox_mAP'] == 0.5
    table = next(m for m in logged if 'category' in m and 'mAP_50' in m)
    cat_row = next(line for line in table.splitlines() if line.startswith('| cat '))
    assert cat_row.split('|')[2].strip() == '1.0'
    assert any('dog' in line for line in table.splitlines())
    assert any('bbox_mAP_copypaste: 0.500' in m for m in logged)


def test_metric_items_select_reported_numbers(tmp_path):
    metric = CocoMetric(ann_file=_write_coco(tmp_path, GT), metric_items=['mAP_50', 'AR@100'])
    results = _evaluate(metric, _perfect_samples())
    assert results == {'coco/bbox_mAP_50': 1.0, 'coco/bbox_AR@100': 1.0}


def test_format_only_writes_json_that_reloads(tmp_path):
    ann_file = _write_coco(tmp_path, GT)
    coco = COCO(ann_file)
    prefix = str(tmp_path / 'out' / 'results')
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'], format_only=True,
                        outfile_prefix=prefix)
    results = _evaluate(metric, _perfect_samples(with_masks=True, coco=coco))
    assert results == {}
    for suffix in ('bbox', 'segm'):
        dets = coco.loadRes(f'{prefix}.{suffix}.json')
        anns = dets.loadAnns(dets.getAnnIds(imgIds=[1]))
        assert len(anns) == 2
        # labels 0/1 are written as the file's category ids 3/7
        assert sorted(a['category_id'] for a in anns) == [3, 7]
        dog = next(a for a in anns if a['category_id'] == 7)
        assert dog['bbox'] == pytest.approx([150, 50, 120, 120])
    segm = json.loads((tmp_path / 'out' / 'results.segm.json').read_text())
    assert isinstance(segm[0]['segmentation']['counts'], str)


def test_proposal_recall_is_class_agnostic(tmp_path):
    gt = {1: [(1, _square(0, 0, 100)), (1, _square(150, 0, 100))]}
    # Proposals carry label 0 while the GT is class 1: recall ignores classes.
    sample = _sample(1, [_square(0, 0, 100), _square(0, 120, 60)], [0.9, 0.8], [0, 0],
                     ori_shape=(250, 300))
    metric = CocoMetric(ann_file=_write_coco(tmp_path, gt, (250, 300)), metric='proposal')
    results = _evaluate(metric, [sample])
    assert results == {'coco/AR@100': 0.5, 'coco/AR@300': 0.5, 'coco/AR@1000': 0.5,
                       'coco/AR_s@1000': -1.0, 'coco/AR_m@1000': -1.0,
                       'coco/AR_l@1000': 0.5}


def test_without_ann_file_converts_gt_instances(tmp_path):
    # Image 1 was resized x2 for the network: gt_instances are in input pixels, predictions
    # in original pixels. An ignored region becomes a crowd box, so a detection on it is not
    # a false positive. Image 2 has no ground truth and no predictions.
    gt_boxes = torch.tensor([_square(10, 10, 60), _square(100, 20, 50)], dtype=torch.float32)
    gt_instances = dict(bboxes=gt_boxes * 2, labels=torch.tensor([0, 1]))
    ignored = dict(bboxes=torch.tensor([[300., 300., 380., 380.]]), labels=torch.tensor([0]))
    preds = ([_square(10, 10, 60), [150, 150, 190, 190], _square(100, 20, 50)],
             [0.9, 0.95, 0.8], [0, 0, 1])
    sample1 = _sample(1, *preds, scale_factor=(2.0, 2.0), img_shape=(400, 600),
                      gt_instances=gt_instances, ignored_instances=ignored)
    sample2 = _sample(2, np.zeros((0, 4)), [], [], gt_instances=dict(
        bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long)))
    prefix = str(tmp_path / 'conv')
    results = _evaluate(CocoMetric(outfile_prefix=prefix), [sample1, sample2])
    assert results['coco/bbox_mAP'] == 1.0
    gt_json = json.loads((tmp_path / 'conv.gt.json').read_text())
    assert [c['name'] for c in gt_json['categories']] == list(CLASSES)
    assert [i['id'] for i in gt_json['images']] == [1, 2]
    crowd = [a for a in gt_json['annotations'] if a['iscrowd'] == 1]
    assert len(crowd) == 1 and crowd[0]['bbox'] == [150.0, 150.0, 40.0, 40.0]
    assert gt_json['annotations'][0]['area'] == 3600.0
    # Without the crowd region the top-scored cat box is a false positive: cat AP
    # (FP, TP over 1 GT) = 0.5, dog AP = 1, so the mean drops to 0.75.
    no_crowd = _sample(1, *preds, scale_factor=(2.0, 2.0), gt_instances=gt_instances)
    assert _evaluate(CocoMetric(), [no_crowd])['coco/bbox_mAP'] == 0.75


def test_without_ann_file_segm_from_raw_instances_and_gt_masks():
    box = _square(4, 6, 20)
    mask = np.zeros((40, 50), dtype=bool)
    mask[6:26, 4:24] = True
    raw = _sample(1, [box], [0.9], [1], masks=torch.from_numpy(mask[None]), ori_shape=(40, 50),
                  instances=[dict(bbox=box, bbox_label=1, ignore_flag=0,
                                  mask=encode_mask_results(mask[None])[0])])
    # gt_instances masks live at the resized (x2) and padded input size.
    input_mask = np.zeros((1, 96, 112), dtype=bool)
    input_mask[0, 12:52, 8:48] = True
    resized = _sample(2, [box], [0.9], [0], masks=torch.from_numpy(mask[None]),
                      ori_shape=(40, 50), img_shape=(80, 100), scale_factor=(2.0, 2.0),
                      gt_instances=dict(bboxes=torch.tensor([box]) * 2,
                                        labels=torch.tensor([0]),
                                        masks=torch.from_numpy(input_mask)))
    results = _evaluate(CocoMetric(metric=['bbox', 'segm']), [raw, resized])
    assert results['coco/segm_mAP'] == 1.0 and results['coco/bbox_mAP'] == 1.0


def test_runs_through_mmengine_evaluator_with_det_data_samples():
    # The runner's path: Evaluator turns DetDataSamples into dicts; GT masks are BitmapMasks
    # at the resized (x2) input size, predictions are at the original size.
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:15, 10:30] = True
    sample = DetDataSample(metainfo=dict(img_id=7, ori_shape=(30, 40), img_shape=(60, 80),
                                         scale_factor=(2.0, 2.0)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[20., 10., 60., 30.]]), labels=torch.tensor([1]),
        masks=BitmapMasks(mask.repeat(2, 0).repeat(2, 1)[None], 60, 80))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[10., 5., 30., 15.]]), scores=torch.tensor([0.8]),
        labels=torch.tensor([1]), masks=torch.from_numpy(mask[None]))
    evaluator = Evaluator(dict(type='mmdet_lite.CocoMetric', metric=['bbox', 'segm']))
    evaluator.dataset_meta = dict(classes=CLASSES)
    evaluator.process([sample])
    results = evaluator.evaluate(1)
    assert results['coco/bbox_mAP'] == 1.0 and results['coco/segm_mAP'] == 1.0


def test_labels_follow_class_order_not_file_order(tmp_path):
    # The file lists cat (3) before dog (7); with classes ('dog', 'cat') label 0 is a dog,
    # as CocoDataset assigns labels.
    ann_file = _write_coco(tmp_path, {1: [(1, _square(10, 10, 100))]})
    sample = _sample(1, [_square(10, 10, 100)], [0.9], [0])
    assert _evaluate(CocoMetric(ann_file=ann_file), [sample],
                     classes=('dog', 'cat'))['coco/bbox_mAP'] == 1.0


def test_no_detections_gives_zero_with_warning(tmp_path, logged):
    samples = [_sample(img_id, np.zeros((0, 4)), [], []) for img_id in GT]
    results = _evaluate(CocoMetric(ann_file=_write_coco(tmp_path, GT)), samples)
    assert results['coco/bbox_mAP'] == 0.0 and results['coco/bbox_mAP_50'] == 0.0
    assert any('no detections' in m for m in logged)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(metric='keypoints'), KeyError, "unknown metric 'keypoints'.*'proposal'"),
    (dict(metric_items=['mAP', 'mAP_90']), KeyError, r"unknown metric_items \['mAP_90'\]"),
    (dict(format_only=True), ValueError, 'format_only=True needs outfile_prefix'),
    (dict(proposal_nums=(100, 300)), ValueError, 'at least 3'),
    (dict(ann_file='/nonexistent/instances_val.json'), FileNotFoundError,
     '/nonexistent/instances_val.json'),
])
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CocoMetric(**kwargs)


def test_bad_samples_and_predictions(tmp_path):
    ann_file = _write_coco(tmp_path, GT)
    with pytest.raises(ValueError, match=r'predicted label 5 .*outside \[0, 2\)'):
        _evaluate(CocoMetric(ann_file=ann_file), [_sample(1, [[0, 0, 5, 5]], [0.5], [5])])
    with pytest.raises(KeyError, match='neither `instances` nor `gt_instances`'):
        CocoMetric().process({}, [_sample(1, [[0, 0, 5, 5]], [0.5], [0])])
    with pytest.raises(KeyError, match='`img_id` and `pred_instances`'):
        CocoMetric(ann_file=ann_file).process({}, [dict(img_id=1)])
    with pytest.raises(ValueError, match=r"\['bird'\] .*not categories"):
        _evaluate(CocoMetric(ann_file=ann_file), _perfect_samples(), classes=('cat', 'bird'))
    with pytest.raises(KeyError, match="'segm' needs pred_instances.masks"):
        _evaluate(CocoMetric(ann_file=ann_file, metric='segm'), _perfect_samples())
    with pytest.raises(ValueError, match=r'img_id \[42\]'):
        _evaluate(CocoMetric(ann_file=ann_file), [_sample(42, [[0, 0, 5, 5]], [0.5], [0])])
    with pytest.raises(ValueError, match=r"needs dataset_meta\['classes'\]"):
        metric = CocoMetric()
        metric.process({}, _perfect_samples_with_gt())
        metric.evaluate(size=1)


def _perfect_samples_with_gt():
    return [_sample(1, [[0, 0, 5, 5]], [0.5], [0], gt_instances=dict(
        bboxes=torch.tensor([[0., 0., 5., 5.]]), labels=torch.tensor([0])))]
