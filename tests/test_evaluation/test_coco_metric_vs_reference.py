"""CocoMetric against pycocotools' COCOeval run directly on a small hand-made set.

tests/test_evaluation/test_coco_metric.py checks hand-computed AP values; here every number
CocoMetric reports is compared with COCOeval on the same annotation file and the same
detections, converted to COCO results in this file (not with mmdet_lite's converters).

mmdetection's conventions, reproduced in the reference:

- ``params.maxDets = [100, 300, 1000]`` (``proposal_nums``) instead of pycocotools'
  ``[1, 10, 100]``; so ``mAP*`` are at 1000 detections per image and ``stats[6:9]`` are
  ``AR@100``, ``AR@300``, ``AR@1000``. With at most 100 detections per image (as here)
  the AP numbers equal those of the default parameters.
- Values are rounded to 3 decimals; ``-1`` means no ground truth in that area range.
- Labels are indices into ``dataset_meta['classes']`` and map to the file's category ids
  by name (here ids 3 and 7, listed in the file in the opposite order to the classes).
- ``proposal`` is COCOeval 'bbox' with ``useCats = 0``.
- ``{class}_precision`` is the mean of ``eval['precision'][:, :, k, area all, maxDets -1]``
  over entries > -1.
"""
import contextlib
import io
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mmdet_lite.evaluation import CocoMetric
from mmdet_lite.evaluation.metrics.coco_metric import COCO_STAT_INDEX

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools/numpy 2

CLASSES = ('cat', 'dog')
CAT_IDS = {'cat': 3, 'dog': 7}
HEIGHT, WIDTH = 200, 300
ALL_ITEMS = list(COCO_STAT_INDEX)


def _polygon(box, rng):
    """An irregular octagon inside ``box``, so masks and boxes disagree a little."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cut = rng.uniform(0.05, 0.3, size=8)
    pts = [x1 + cut[0] * w, y1, x2 - cut[1] * w, y1, x2, y1 + cut[2] * h, x2, y2 - cut[3] * h,
           x2 - cut[4] * w, y2, x1 + cut[5] * w, y2, x1, y2 - cut[6] * h, x1, y1 + cut[7] * h]
    return [float(p) for p in pts]


def make_dataset(tmp_path):
    """3 images; small (< 32^2), medium and large objects of 2 classes; one crowd region."""
    rng = np.random.RandomState(0)
    gt = {  # img_id: [(class, box, iscrowd)]
        1: [('cat', [10, 10, 130, 130], 0), ('dog', [150, 40, 200, 90], 0),
            ('cat', [220, 150, 238, 168], 0), ('dog', [240, 20, 290, 120], 0)],
        2: [('dog', [0, 0, 60, 60], 0), ('dog', [100, 100, 124, 118], 0),
            ('cat', [160, 60, 280, 190], 0), ('cat', [20, 120, 90, 190], 1)],
        3: [('cat', [40, 30, 110, 100], 0)],
    }
    images, annotations = [], []
    for img_id, objects in gt.items():
        images.append(dict(id=img_id, file_name=f'{img_id}.jpg', height=HEIGHT, width=WIDTH))
        for name, (x1, y1, x2, y2), crowd in objects:
            poly = _polygon((x1, y1, x2, y2), rng)
            area = float(mask_util.area(mask_util.merge(
                mask_util.frPyObjects([poly], HEIGHT, WIDTH))))
            annotations.append(dict(id=len(annotations) + 1, image_id=img_id,
                                    category_id=CAT_IDS[name], iscrowd=crowd, area=area,
                                    bbox=[x1, y1, x2 - x1, y2 - y1], segmentation=[poly]))
    categories = [dict(id=7, name='dog'), dict(id=3, name='cat')]  # not in class order
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=images, annotations=annotations,
                                    categories=categories)))
    return str(path), gt


def make_predictions(gt):
    """Jittered copies of most objects (some with the wrong class) plus false positives."""
    rng = np.random.RandomState(1)
    preds = {}
    for img_id, objects in gt.items():
        boxes, labels = [], []
        for name, box, _ in objects:
            for _ in range(rng.randint(0, 3)):  # missed, found once, or found twice
                size = max(box[2] - box[0], box[3] - box[1])
                boxes.append(np.asarray(box, float) + rng.normal(0, 0.08 * size, 4))
                label = CLASSES.index(name)
                labels.append(label if rng.rand() > 0.15 else 1 - label)
        for _ in range(3):  # false positives
            x, y = rng.uniform(0, WIDTH - 60), rng.uniform(0, HEIGHT - 60)
            s = rng.uniform(15, 60)
            boxes.append(np.array([x, y, x + s, y + s]))
            labels.append(rng.randint(0, 2))
        boxes = np.clip(np.array(boxes), 0, [WIDTH, HEIGHT, WIDTH, HEIGHT]).astype(np.float32)
        masks = np.zeros((len(boxes), HEIGHT, WIDTH), bool)
        for mask, (x1, y1, x2, y2) in zip(masks, np.round(boxes).astype(int)):
            mask[y1:y2, x1:x2] = True
        preds[img_id] = dict(bboxes=boxes, scores=rng.uniform(0.05, 1, len(boxes)),
                             labels=np.array(labels), masks=masks)
    return preds


def reference_eval(ann_file, preds, iou_type, use_cats=True, max_dets=(100, 300, 1000)):
    """COCOeval on COCO result dicts built here; returns the COCOeval after summarize()."""
    coco_gt = COCO(ann_file) if isinstance(ann_file, str) else ann_file
    results = []
    for img_id, pred in preds.items():
        for i, (x1, y1, x2, y2) in enumerate(pred['bboxes'].tolist()):
            res = dict(image_id=img_id, category_id=CAT_IDS[CLASSES[pred['labels'][i]]],
                       score=float(np.float32(pred['scores'][i])))
            if iou_type == 'segm':
                rle = mask_util.encode(np.asfortranarray(pred['masks'][i].astype(np.uint8)))
                res['segmentation'] = dict(size=rle['size'], counts=rle['counts'].decode())
            else:
                res['bbox'] = [x1, y1, x2 - x1, y2 - y1]
            results.append(res)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        coco_eval.params.maxDets = list(max_dets)
        coco_eval.params.useCats = int(use_cats)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def run_metric(ann_file, preds, **kwargs):
    metric = CocoMetric(ann_file=ann_file, metric_items=kwargs.pop('metric_items', ALL_ITEMS),
                        **kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    samples = [dict(img_id=img_id, ori_shape=(HEIGHT, WIDTH),
                    pred_instances=dict(bboxes=torch.from_numpy(p['bboxes']),
                                        scores=torch.from_numpy(p['scores']).float(),
                                        labels=torch.from_numpy(p['labels']),
                                        masks=torch.from_numpy(p['masks'])))
               for img_id, p in preds.items()]
    metric.process({}, samples)
    with contextlib.redirect_stdout(io.StringIO()):
        return metric.evaluate(size=len(samples))


@pytest.fixture(scope='module')
def case(tmp_path_factory):
    ann_file, gt = make_dataset(tmp_path_factory.mktemp('coco'))
    return ann_file, make_predictions(gt)


@pytest.mark.parametrize('iou_type', ['bbox', 'segm'])
def test_every_summary_number_equals_cocoeval(case, iou_type):
    ann_file, preds = case
    ref = reference_eval(ann_file, preds, iou_type)
    ours = run_metric(ann_file, preds, metric=iou_type)
    expected = {f'coco/{iou_type}_{item}': round(float(ref.stats[i]), 3)
                for item, i in COCO_STAT_INDEX.items()}
    assert ours == expected
    # A set that exercises the numbers: AP strictly between 0 and 1, every area range.
    assert 0.2 < ours[f'coco/{iou_type}_mAP'] < 0.9
    assert all(ours[f'coco/{iou_type}_mAP_{a}'] > 0 for a in 'sml')
    # With <= 100 detections per image the AP numbers are those of COCOeval's defaults.
    default = reference_eval(ann_file, preds, iou_type, max_dets=(1, 10, 100))
    np.testing.assert_allclose(ref.stats[:6], default.stats[:6])


def test_classwise_precision_equals_cocoeval_precision_array(case):
    ann_file, preds = case
    ref = reference_eval(ann_file, preds, 'bbox')
    ours = run_metric(ann_file, preds, metric='bbox', classwise=True, metric_items=['mAP'])
    cat_ids = ref.params.catIds  # sorted ids: [3, 7] = cat, dog
    for name in CLASSES:
        k = cat_ids.index(CAT_IDS[name])
        precision = ref.eval['precision'][:, :, k, 0, -1]
        expected = round(float(np.mean(precision[precision > -1])), 3)
        assert ours[f'coco/{name}_precision'] == expected
    assert ours['coco/bbox_mAP'] == round(float(ref.stats[0]), 3)


def test_proposal_recall_equals_class_agnostic_cocoeval(case):
    ann_file, preds = case
    ref = reference_eval(ann_file, preds, 'bbox', use_cats=False)
    ours = run_metric(ann_file, preds, metric='proposal')
    expected = {f'coco/{item}': round(float(ref.stats[i]), 3)
                for item, i in COCO_STAT_INDEX.items()}
    assert ours == expected
    assert 0 < ours['coco/AR@100'] < 1
