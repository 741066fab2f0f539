"""VOCMetric: hand-computed mAP and recall, through mmengine's Evaluator and DetDataSamples."""
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from mmdet_lite.evaluation import VOCMetric
from mmdet_lite.registry import METRICS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import HorizontalBoxes

CLASSES = ('cat', 'dog')


def _sample(gt, gt_labels, ignored, ignored_labels, preds, scores, labels):
    sample = DetDataSample()
    sample.gt_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor(gt, dtype=torch.float32).reshape(-1, 4)),
        labels=torch.tensor(gt_labels, dtype=torch.long))
    sample.ignored_instances = InstanceData(
        bboxes=HorizontalBoxes(torch.tensor(ignored, dtype=torch.float32).reshape(-1, 4)),
        labels=torch.tensor(ignored_labels, dtype=torch.long))
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(preds, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.long))
    return sample


def _samples():
    # cat: a FP (0.95) ranked above the TP (0.9): recall 0, 1; precision 0, 0.5 -> AP 0.5
    # dog: a TP (0.8) and a detection on the difficult (ignored) dog (0.7) -> AP 1
    return [_sample(gt=[[0, 0, 9, 9], [20, 20, 29, 29]], gt_labels=[0, 1],
                    ignored=[[40, 40, 49, 49]], ignored_labels=[1],
                    preds=[[0, 0, 9, 9], [60, 60, 69, 69], [20, 20, 29, 29], [40, 40, 49, 49]],
                    scores=[0.9, 0.95, 0.8, 0.7], labels=[0, 0, 1, 1])]


def _evaluate(metric, samples, **meta):
    evaluator = Evaluator(metric)
    evaluator.dataset_meta = dict(classes=CLASSES, **meta)
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


@pytest.mark.parametrize('eval_mode', ['11points', 'area'])
def test_map_by_hand(eval_mode):
    metric = METRICS.build(dict(type='VOCMetric', eval_mode=eval_mode))
    assert metric.prefix == 'pascal_voc' and metric.iou_thrs == [0.5]
    results = _evaluate(metric, _samples())
    assert list(results) == ['pascal_voc/mAP', 'pascal_voc/AP50']
    assert results['pascal_voc/mAP'] == pytest.approx(0.75)
    assert results['pascal_voc/AP50'] == 0.75


def test_several_iou_thresholds():
    # at IoU 0.95 the exact boxes still match; the mean over thresholds is 'mAP'
    results = _evaluate(VOCMetric(iou_thrs=[0.5, 0.95], eval_mode='area'), _samples())
    assert list(results) == ['pascal_voc/mAP', 'pascal_voc/AP50', 'pascal_voc/AP95']
    assert results['pascal_voc/AP95'] == 0.75 and results['pascal_voc/mAP'] == 0.75


def test_voc2007_with_area_mode_warns():
    with pytest.warns(UserWarning, match='VOC2007 uses `11points`'):
        _evaluate(VOCMetric(eval_mode='area'), _samples(), dataset_type='VOC2007')


def test_recall_metric_by_hand():
    # proposals are class 0: boxes [0,0,9,9] (exact gt 1) and [60,..] (miss) -> recall@2
    # of the 2 gts is 0.5 at any threshold, @1 (top score: the miss) is 0
    metric = VOCMetric(metric='recall', proposal_nums=(1, 2), iou_thrs=[0.5, 0.7])
    results = _evaluate(metric, _samples())
    assert results['pascal_voc/recall@1@0.5'] == 0.0
    assert results['pascal_voc/recall@2@0.5'] == 0.5
    assert results['pascal_voc/recall@2@0.7'] == 0.5
    assert results['pascal_voc/AR@2'] == pytest.approx(0.5)


def test_bad_arguments():
    with pytest.raises(KeyError, match="one of 'recall', 'mAP', but got bbox"):
        VOCMetric(metric='bbox')
    with pytest.raises(AssertionError, match="eval_mode must be one of .*'points'"):
        VOCMetric(eval_mode='points')
    with pytest.raises(AssertionError, match='evaluates one metric'):
        VOCMetric(metric=['mAP', 'recall'])
