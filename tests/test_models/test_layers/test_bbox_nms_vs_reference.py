"""multiclass_nms and batched_nms against torchvision NMS on seeded random boxes.

Both wrap ``torchvision.ops.batched_nms``, so the references are built another way:

- ``greedy_nms``: textbook NMS in plain Python over ``torchvision.ops.box_iou`` (mmcv's
  semantics: visit boxes by decreasing score, drop a box whose IoU with a kept one is
  greater than the threshold, IoU without ``+ 1`` (mmcv 2.x ``offset=0``));
- ``per_class_nms``: one ``torchvision.ops.nms`` call per class, merged by score, the way
  mmdetection's ``multiclass_nms`` is specified (background column ignored, scores strictly
  above ``score_thr``, class-specific or shared boxes, ``max_num`` after sorting).

Scores are continuous random numbers, so there are no ties and the orders are unique.
"""
import pytest
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import box_iou, nms

from mmdet_lite.models.layers import multiclass_nms
from mmdet_lite.models.utils import batched_nms


def clustered_boxes(n: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 4] boxes jittered around a few centres, so that many pairs overlap."""
    centres = torch.rand(6, 2, generator=gen) * 80
    idx = torch.randint(0, 6, (n, ), generator=gen)
    ctr = centres[idx] + torch.randn(n, 2, generator=gen) * 4
    wh = torch.rand(n, 2, generator=gen) * 20 + 10
    return torch.cat([ctr - wh / 2, ctr + wh / 2], dim=1)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thr: float) -> torch.Tensor:
    order = scores.argsort(descending=True).tolist()
    ious = box_iou(boxes, boxes)
    keep = []
    for i in order:
        if all(ious[i, j] <= iou_thr for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def per_class_nms(bboxes, scores, score_thr, iou_thr, max_num=-1):
    """mmdetection's multiclass_nms spelled out: returns (bboxes, scores, labels)."""
    num_classes = scores.size(1) - 1
    out_boxes, out_scores, out_labels = [], [], []
    for c in range(num_classes):
        boxes_c = bboxes[:, 4 * c:4 * c + 4] if bboxes.size(1) > 4 else bboxes
        valid = scores[:, c] > score_thr
        boxes_c, scores_c = boxes_c[valid], scores[valid, c]
        keep = nms(boxes_c, scores_c, iou_thr)
        out_boxes.append(boxes_c[keep])
        out_scores.append(scores_c[keep])
        out_labels.append(torch.full((len(keep), ), c, dtype=torch.long))
    boxes, scores, labels = torch.cat(out_boxes), torch.cat(out_scores), torch.cat(out_labels)
    order = scores.argsort(descending=True)
    if max_num > 0:
        order = order[:max_num]
    return boxes[order], scores[order], labels[order]


@pytest.mark.parametrize('iou_thr', [0.3, 0.5, 0.7])
def test_the_greedy_reference_agrees_with_torchvision_nms(iou_thr):
    gen = torch.Generator().manual_seed(0)
    boxes, scores = clustered_boxes(120, gen), torch.rand(120, generator=gen)
    keep = greedy_nms(boxes, scores, iou_thr)
    assert 10 < len(keep) < 110  # NMS really removed boxes, and kept several
    assert torch.equal(nms(boxes, scores, iou_thr), keep)


@pytest.mark.parametrize('class_agnostic', [False, True])
@pytest.mark.parametrize('max_num', [-1, 15])
def test_batched_nms_equals_greedy_nms_per_group(class_agnostic, max_num):
    gen = torch.Generator().manual_seed(1)
    boxes, scores = clustered_boxes(150, gen), torch.rand(150, generator=gen)
    idxs = torch.randint(0, 4, (150, ), generator=gen)
    cfg = dict(type='nms', iou_threshold=0.5, class_agnostic=class_agnostic, max_num=max_num)
    dets, keep = batched_nms(boxes, scores, idxs, cfg)

    groups = torch.zeros_like(idxs) if class_agnostic else idxs
    expected = torch.cat([torch.nonzero(groups == g).squeeze(1)[greedy_nms(
        boxes[groups == g], scores[groups == g], 0.5)] for g in groups.unique()])
    expected = expected[scores[expected].argsort(descending=True)]
    if max_num > 0:
        expected = expected[:max_num]
    assert torch.equal(keep, expected)
    assert torch.equal(keep, tv_batched_nms(boxes, scores, groups, 0.5)[:len(keep)])
    torch.testing.assert_close(dets, torch.cat([boxes[expected], scores[expected, None]], 1))


@pytest.mark.parametrize('class_specific', [False, True])
@pytest.mark.parametrize('score_thr, max_num', [(0.05, -1), (0.3, -1), (0.05, 20)])
def test_multiclass_nms_equals_per_class_torchvision_nms(class_specific, score_thr, max_num):
    gen = torch.Generator().manual_seed(2)
    num_rois, num_classes = 90, 3
    rois = clustered_boxes(num_rois, gen)
    if class_specific:  # one slightly different box per class, as a bbox head predicts
        bboxes = torch.cat([rois + torch.randn(num_rois, 4, generator=gen)
                            for _ in range(num_classes)], dim=1)
    else:
        bboxes = rois
    scores = torch.rand(num_rois, num_classes + 1, generator=gen).softmax(-1) * 2
    scores[:, -1] = 10.  # background: the highest of all, never reported
    nms_cfg = dict(type='nms', iou_threshold=0.5)
    det_bboxes, det_scores, det_labels = multiclass_nms(bboxes, scores, score_thr, nms_cfg,
                                                        max_num=max_num)
    ref_bboxes, ref_scores, ref_labels = per_class_nms(bboxes, scores, score_thr, 0.5, max_num)
    assert len(ref_labels) > 5 and set(ref_labels.tolist()) <= {0, 1, 2}
    assert torch.equal(det_labels, ref_labels)
    torch.testing.assert_close(det_scores, ref_scores)
    torch.testing.assert_close(det_bboxes, ref_bboxes)


def test_multiclass_nms_class_agnostic_equals_one_nms_over_all_pairs():
    gen = torch.Generator().manual_seed(3)
    bboxes = clustered_boxes(60, gen)
    scores = torch.rand(60, 3, generator=gen)  # 2 classes + background
    det_bboxes, det_scores, det_labels = multiclass_nms(
        bboxes, scores, 0.1, dict(type='nms', iou_threshold=0.5, class_agnostic=True))
    # Every (box, class) pair above the threshold, then a single greedy NMS.
    pairs = torch.nonzero(scores[:, :2] > 0.1)  # [P, 2] (box, class), box-major
    pair_boxes, pair_scores = bboxes[pairs[:, 0]], scores[pairs[:, 0], pairs[:, 1]]
    keep = greedy_nms(pair_boxes, pair_scores, 0.5)
    torch.testing.assert_close(det_bboxes, pair_boxes[keep])
    torch.testing.assert_close(det_scores, pair_scores[keep])
    assert torch.equal(det_labels, pairs[keep, 1])
