"""LVISMetric on a tiny LVIS v1 json: perfect predictions, a hand case checked by hand and
against ``lvis.LVISEval`` called directly, proposals, format_only and argument errors."""
import json
import sys

import numpy as np
import pytest
import torch
from helpers import box_masks
from helpers_lvis import CLASSES, tiny_lvis_v1, write_json

from mmdet_lite.evaluation import LVISMetric
from mmdet_lite.registry import METRICS

CAT_IDS = (1, 2, 5, 7)  # category id of each label (the file's order)
SIZES = {1: (80, 100), 2: (90, 120), 3: (64, 64)}  # img_id -> (height, width)
LVIS_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'APr', 'APc', 'APf')

# One prediction per ground-truth box, exact, with its label.
PERFECT = {1: [([10, 10, 40, 30], 0, 0.9), ([50, 40, 70, 60], 2, 0.8)],
           2: [([5, 5, 45, 55], 1, 0.7), ([60, 10, 110, 70], 0, 0.6)],
           3: []}
# The apple of image 1 shifted 5 px right (IoU 500 / 700 = 0.714); a banana in image 1,
# where banana is verified absent (a counted false positive, ranked first); a durian in
# image 1, where durian is neither annotated nor verified absent (not counted at all).
SHIFTED = {1: [([15, 10, 45, 30], 0, 0.9), ([50, 40, 70, 60], 2, 0.8),
               ([60, 5, 80, 25], 1, 0.99), ([0, 0, 10, 10], 3, 0.95)],
           2: [([5, 5, 45, 55], 1, 0.7), ([60, 10, 110, 70], 0, 0.6)],
           3: []}


@pytest.fixture
def ann_file(tmp_path) -> str:
    return write_json(tiny_lvis_v1(), tmp_path / 'lvis_v1_tiny.json')


@pytest.fixture
def numpy_float(monkeypatch):
    """lvis 0.5.3 uses ``np.float`` (gone since numpy 1.24): for direct LVISEval calls."""
    monkeypatch.setattr(np, 'float', float, raising=False)


def samples(dets: dict, with_masks: bool = False) -> list:
    out = []
    for img_id, entries in dets.items():
        boxes = torch.tensor([e[0] for e in entries], dtype=torch.float32).reshape(-1, 4)
        pred = dict(bboxes=boxes,
                    labels=torch.tensor([e[1] for e in entries], dtype=torch.long),
                    scores=torch.tensor([e[2] for e in entries], dtype=torch.float32))
        if with_masks:
            pred['masks'] = torch.from_numpy(
                box_masks(boxes.numpy(), *SIZES[img_id]).masks.astype(bool))
        out.append(dict(img_id=img_id, ori_shape=SIZES.get(img_id, (10, 10)),
                        pred_instances=pred))
    return out


def evaluate(metric: LVISMetric, dets: dict, **kwargs) -> dict:
    metric.dataset_meta = dict(classes=CLASSES)
    batch = samples(dets, **kwargs)
    metric.process({}, batch)
    return metric.evaluate(len(batch))


def test_registered():
    assert METRICS.get('LVISMetric') is LVISMetric
    assert LVISMetric.default_prefix == 'lvis'


def test_perfect_predictions(ann_file):
    results = evaluate(LVISMetric(ann_file=ann_file, metric=['bbox', 'segm']), PERFECT,
                       with_masks=True)
    for metric in ('bbox', 'segm'):
        for key in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APr', 'APc', 'APf'):
            assert results[f'lvis/{metric}_{key}'] == 1.0, (metric, key)
        assert results[f'lvis/{metric}_APl'] == -1.0  # no large object
    assert len(results) == 2 * len(LVIS_KEYS)
    import lvis.eval
    assert lvis.eval.np is np  # the np.float shim is gone after evaluation


@pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")
def test_shifted_box_by_hand_and_against_lvis_eval(ann_file, numpy_float):
    import lvis
    results = evaluate(LVISMetric(ann_file=ann_file), SHIFTED)
    # banana: the false positive ranks first, then the hit: precision 0.5 at every recall
    assert results['lvis/bbox_APc'] == 0.5
    assert results['lvis/bbox_APr'] == 1.0  # cherry, exact
    # apple: at IoU 0.50-0.70 both hits (AP 1); at 0.75-0.95 a miss then a hit, precision
    # 0.5 up to recall 0.5 (51 of 101 recall points): AP 51 * 0.5 / 101
    apple = (5 * 1.0 + 5 * 51 * 0.5 / 101) / 10
    assert results['lvis/bbox_APf'] == round(apple, 3)
    assert results['lvis/bbox_AP'] == round((apple + 0.5 + 1.0) / 3, 3)

    # the same detections through the lvis package directly
    reference_dets = [
        dict(image_id=img_id, category_id=CAT_IDS[label], score=score,
             bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]])
        for img_id, entries in SHIFTED.items() for box, label, score in entries]
    reference = lvis.LVISEval(ann_file, reference_dets, 'bbox')
    reference.run()
    expected = reference.get_results()
    for key in LVIS_KEYS:
        assert results[f'lvis/bbox_{key}'] == round(float(expected[key]), 3), key


def test_classwise_and_metric_items(ann_file):
    results = evaluate(LVISMetric(ann_file=ann_file, classwise=True,
                                  metric_items=['APc', 'AP50']), SHIFTED)
    assert results['lvis/banana_precision'] == 0.5
    assert results['lvis/cherry_precision'] == 1.0
    assert results['lvis/apple_precision'] == round((5 + 5 * 51 * 0.5 / 101) / 10, 3)
    assert np.isnan(results['lvis/durian_precision'])  # no ground truth
    assert {k for k in results if 'bbox' in k} == {'lvis/bbox_APc', 'lvis/bbox_AP50'}


def test_iou_thrs_are_used(ann_file):
    # at IoU 0.5 only, the shifted apple is a hit: apple AP 1, banana 0.5, cherry 1
    results = evaluate(LVISMetric(ann_file=ann_file, iou_thrs=[0.5]), SHIFTED)
    assert results['lvis/bbox_AP'] == round(2.5 / 3, 3)
    assert results['lvis/bbox_AP75'] == -1.0  # 0.75 is not evaluated


def test_proposals_are_class_agnostic(ann_file):
    # every box labelled 0: class-aware that would miss banana and cherry
    proposals = {img_id: [(box, 0, score) for box, _, score in entries]
                 for img_id, entries in PERFECT.items()}
    results = evaluate(LVISMetric(ann_file=ann_file, metric=['proposal', 'proposal_fast'],
                                  proposal_nums=(1, 10)), proposals)
    assert results['lvis/AR@300'] == 1.0
    assert results['lvis/ARs@300'] == 1.0 and results['lvis/ARm@300'] == 1.0
    assert results['lvis/ARl@300'] == -1.0
    # proposal_fast at 1 box per image: one of the two objects of images 1 and 2
    assert results['lvis/AR@1'] == pytest.approx(0.5)
    assert results['lvis/AR@10'] == pytest.approx(1.0)


def test_no_detections(ann_file):
    results = evaluate(LVISMetric(ann_file=ann_file), {1: [], 2: [], 3: []})
    assert results['lvis/bbox_AP'] == 0.0
    assert results['lvis/bbox_APl'] == -1.0


def test_format_only_dumps_results(ann_file, tmp_path):
    prefix = str(tmp_path / 'out' / 'lvis_results')
    metric = LVISMetric(ann_file=ann_file, metric=['bbox', 'segm'], format_only=True,
                        outfile_prefix=prefix)
    assert evaluate(metric, SHIFTED, with_masks=True) == {}
    with open(prefix + '.bbox.json', encoding='utf-8') as f:
        dumped = json.load(f)
    expected = [(img_id, CAT_IDS[label], [box[0], box[1], box[2] - box[0], box[3] - box[1]])
                for img_id, entries in SHIFTED.items() for box, label, _ in entries]
    assert [(d['image_id'], d['category_id'], d['bbox']) for d in dumped] == expected
    assert [d['score'] for d in dumped] == pytest.approx(
        [score for entries in SHIFTED.values() for _, _, score in entries])
    with open(prefix + '.segm.json', encoding='utf-8') as f:
        segm = json.load(f)
    assert len(segm) == len(dumped) and all('counts' in d['segmentation'] for d in segm)


def test_argument_errors(ann_file, tmp_path):
    with pytest.raises(AssertionError, match='outfile_prefix'):
        LVISMetric(ann_file=ann_file, format_only=True)
    with pytest.raises(AssertionError, match='ann_file'):
        LVISMetric()
    with pytest.raises(KeyError, match='bbox_fast'):
        LVISMetric(ann_file=ann_file, metric='bbox_fast')
    with pytest.raises(RuntimeError, match='backend_args'):
        LVISMetric(ann_file=ann_file, file_client_args=dict(backend='local'))
    with pytest.raises(FileNotFoundError, match='missing.json'):
        LVISMetric(ann_file=str(tmp_path / 'missing.json'))


def test_predictions_for_unknown_images(ann_file):
    metric = LVISMetric(ann_file=ann_file)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples({99: [([0, 0, 5, 5], 0, 0.5)]}))
    with pytest.raises(AssertionError, match='99'):
        metric.evaluate(1)


def test_missing_lvis_package(ann_file, monkeypatch):
    monkeypatch.setitem(sys.modules, 'lvis', None)  # makes `import lvis` fail
    with pytest.raises(ImportError, match='pip install lvis'):
        LVISMetric(ann_file=ann_file)


def test_format_only_without_ann_file(tmp_path):
    # as mmdetection's converted ground truth: the category id is the label
    prefix = str(tmp_path / 'no_gt')
    metric = LVISMetric(format_only=True, outfile_prefix=prefix)
    assert evaluate(metric, {1: [([1, 2, 5, 8], 3, 0.5)]}) == {}
    with open(prefix + '.bbox.json', encoding='utf-8') as f:
        dumped = json.load(f)
    assert [(d['image_id'], d['category_id'], d['bbox']) for d in dumped] == [
        (1, 3, [1, 2, 4, 6])]
