"""CocoMetric options: proposal_fast, iou_thrs forms, box areas of converted ground truth,
format_only, eval_backend; and the DumpDetResults / DumpProposals metrics."""
import json
import pickle
import sys

import numpy as np
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.evaluation import CocoMetric, DumpDetResults, DumpProposals
from mmdet_lite.structures.mask import encode_mask_results

pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

CLASSES = ('cat', 'dog')


def _write_coco(tmp_path, anns, hw=(200, 300)):
    images = [dict(id=i, file_name=f'{i}.jpg', height=hw[0], width=hw[1]) for i in (1, 2)]
    annotations = [dict(id=k + 1, image_id=img_id, category_id=cat, bbox=box, area=box[2] *
                        box[3], iscrowd=crowd) for k, (img_id, cat, box, crowd) in
                   enumerate(anns)]
    path = tmp_path / 'ann.json'
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=[
        dict(id=1, name='cat'), dict(id=2, name='dog')])))
    return str(path)


def _sample(img_id, bboxes, scores, labels, **extra):
    pred = dict(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.tensor(scores, dtype=torch.float32),
                labels=torch.tensor(labels, dtype=torch.int64))
    return dict(img_id=img_id, ori_shape=(200, 300), pred_instances=pred, **extra)


def _evaluate(metric, samples):
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, samples)
    return metric.evaluate(size=len(samples))


# image 1: two objects and a crowd region; image 2: one object
ANNS = [(1, 1, [0, 0, 100, 100], 0), (1, 2, [150, 0, 100, 100], 0),
        (1, 1, [0, 150, 40, 40], 1), (2, 2, [10, 10, 50, 50], 0)]


def test_proposal_fast_is_eval_recalls_averaged_over_iou_thrs(tmp_path):
    # image 1: proposal 1 is exact on object 1, proposal 2 overlaps object 2 by
    # IoU 65/100 = 0.65; image 2: no proposal. 3 non-crowd objects.
    samples = [_sample(1, [[0, 0, 100, 100], [185, 0, 250, 100]], [0.9, 0.8], [0, 0]),
               _sample(2, np.zeros((0, 4)), [], [])]
    metric = CocoMetric(ann_file=_write_coco(tmp_path, ANNS), metric='proposal_fast',
                        proposal_nums=(1, 2), iou_thrs=[0.5, 0.7])
    results = _evaluate(metric, samples)
    # @1: 1/3 at both thresholds; @2: 2/3 at 0.5, 1/3 at 0.7
    assert results['coco/AR@1'] == pytest.approx(1 / 3)
    assert results['coco/AR@2'] == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_iou_thrs_as_list_array_or_float(tmp_path):
    ann_file = _write_coco(tmp_path, ANNS)
    # object 2 found with IoU 0.65: a hit at 0.5, a miss at 0.7
    samples = [_sample(1, [[0, 0, 100, 100], [185, 0, 250, 100]], [0.9, 0.8], [0, 1]),
               _sample(2, [[10, 10, 60, 60]], [0.9], [1])]
    for iou_thrs in ([0.5, 0.7], np.array([0.5, 0.7])):
        metric = CocoMetric(ann_file=ann_file, iou_thrs=iou_thrs, metric_items=['mAP'])
        # cat AP 1 at both; dog 1 at 0.5; at 0.7 the top-scored dog box is a hit and the
        # other a miss: recall 0.5 at precision 1, COCO's 101-point AP = 51/101
        dog = (1 + 51 / 101) / 2
        assert _evaluate(metric, samples)['coco/bbox_mAP'] == round((1 + dog) / 2, 3)
    metric = CocoMetric(ann_file=ann_file, iou_thrs=0.7, metric_items=['mAP'])
    assert _evaluate(metric, samples)['coco/bbox_mAP'] == round((1 + 51 / 101) / 2, 3)


def test_converted_ground_truth_uses_box_areas(tmp_path):
    # a 40x40 box (1600 px: medium) holding a 20x20 mask (400 px: small): mmdetection's
    # converter files it under the box area, so it is a medium object in bbox evaluation
    mask = np.zeros((200, 300), dtype=bool)
    mask[10:30, 10:30] = True
    rle = encode_mask_results(mask[None])[0]
    sample = _sample(1, [[0, 0, 40, 40]], [0.9], [0], instances=[
        dict(bbox=[0, 0, 40, 40], bbox_label=0, ignore_flag=0, mask=rle)])
    prefix = str(tmp_path / 'conv')
    results = _evaluate(CocoMetric(outfile_prefix=prefix), [sample])
    assert results['coco/bbox_mAP_m'] == 1.0 and results['coco/bbox_mAP_s'] == -1.0
    gt = json.loads((tmp_path / 'conv.gt.json').read_text())
    assert gt['annotations'][0]['area'] == 1600.0


def test_format_only_dumps_without_evaluating(tmp_path):
    with pytest.raises(AssertionError, match='format_only=True needs outfile_prefix'):
        CocoMetric(format_only=True)
    prefix = str(tmp_path / 'sub')
    metric = CocoMetric(format_only=True, outfile_prefix=prefix)
    # no ground truth needed: nothing is evaluated
    assert _evaluate(metric, [_sample(1, [[0, 0, 10, 20]], [0.5], [1])]) == {}
    (entry, ) = json.loads((tmp_path / 'sub.bbox.json').read_text())
    assert entry == dict(image_id=1, category_id=1, bbox=[0.0, 0.0, 10.0, 20.0], score=0.5)


def test_faster_coco_eval_backend_gives_pycocotools_numbers(tmp_path):
    pytest.importorskip('faster_coco_eval')  # optional package: pip install faster-coco-eval
    ann_file = _write_coco(tmp_path, ANNS)
    samples = [_sample(1, [[0, 0, 100, 100], [185, 0, 250, 100], [0, 150, 40, 190],
                           [5, 5, 90, 95]], [0.9, 0.8, 0.7, 0.6], [0, 1, 0, 1]),
               _sample(2, [[10, 10, 60, 60], [0, 0, 20, 20]], [0.9, 0.3], [1, 0])]
    results = {}
    for backend in ('pycocotools', 'faster-coco-eval'):
        metric = CocoMetric(ann_file=ann_file, eval_backend=backend, classwise=True,
                            metric=['bbox', 'proposal'])
        results[backend] = _evaluate(metric, samples)
    assert results['pycocotools'] == results['faster-coco-eval']
    assert 0 < results['pycocotools']['coco/bbox_mAP'] < 1


def test_eval_backend_errors(monkeypatch):
    with pytest.raises(AssertionError, match="eval_backend must be one of .*got 'fast'"):
        CocoMetric(eval_backend='fast')
    monkeypatch.setitem(sys.modules, 'faster_coco_eval', None)  # as if not installed
    with pytest.raises(ImportError, match='pip install faster-coco-eval'):
        CocoMetric(eval_backend='faster-coco-eval')


def test_use_mp_eval_is_accepted():
    assert CocoMetric(use_mp_eval=True).use_mp_eval is True


def test_dump_det_results_encodes_masks_and_drops_gt(tmp_path):
    out = tmp_path / 'res.pkl'
    metric = DumpDetResults(out_file_path=str(out))
    masks = torch.zeros(1, 4, 5, dtype=torch.bool)
    masks[0, 1:3, 2:4] = True
    sample = dict(img_id=3, gt_instances=dict(labels=torch.tensor([1])),
                  ignored_instances=dict(labels=torch.tensor([0])),
                  pred_instances=dict(masks=masks, labels=torch.tensor([1])))
    metric.process({}, [sample])
    assert metric.evaluate(1) == {}
    (dumped, ) = pickle.loads(out.read_bytes())
    assert 'gt_instances' not in dumped and 'ignored_instances' not in dumped
    assert dumped['pred_instances']['masks'] == encode_mask_results(masks.numpy())
    metric = DumpDetResults(keep_gt=True, keep_gt_ignore=True, out_file_path=str(out))
    metric.process({}, [dict(sample, pred_instances=dict(labels=torch.tensor([1])))])
    metric.evaluate(1)
    (dumped, ) = pickle.loads(out.read_bytes())
    assert set(dumped) >= {'gt_instances', 'ignored_instances'}


def test_dump_proposals_ranked_and_keyed_like_proposal_files(tmp_path):
    metric = DumpProposals(output_dir=str(tmp_path / 'props'), num_max_proposals=2)
    pred = dict(bboxes=torch.tensor([[0., 0, 1, 1], [0, 0, 2, 2], [0, 0, 3, 3]]),
                scores=torch.tensor([0.1, 0.9, 0.5]))
    metric.process({}, [dict(img_path='data/val/0001.jpg', pred_instances=pred)])
    assert metric.evaluate(1) == {}
    dumped = pickle.loads((tmp_path / 'props' / 'proposals.pkl').read_bytes())
    assert list(dumped) == ['val/0001.jpg']
    proposals = dumped['val/0001.jpg']
    assert isinstance(proposals, InstanceData)
    np.testing.assert_array_equal(proposals.scores, np.array([0.9, 0.5], dtype=np.float32))
    np.testing.assert_array_equal(proposals.bboxes, [[0, 0, 2, 2], [0, 0, 3, 3]])
    with pytest.raises(AssertionError, match="'.pkl' or '.pickle'"):
        DumpProposals(proposals_file='p.json')
