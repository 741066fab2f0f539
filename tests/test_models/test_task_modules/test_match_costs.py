"""Match costs against hand formulas and torchvision: focal, binary focal, dice, mask CE,
IoU (every mode) and L1 (both box formats)."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torchvision.ops import box_iou, generalized_box_iou

from mmdet_lite.registry import TASK_UTILS


def _focal_terms(logit, alpha=0.25, gamma=2., eps=1e-12):
    p = 1 / (1 + math.exp(-logit))
    pos = -math.log(p + eps) * alpha * (1 - p)**gamma
    neg = -math.log(1 - p + eps) * (1 - alpha) * p**gamma
    return pos, neg


def test_focal_loss_cost_on_labels():
    cost = TASK_UTILS.build(dict(type='FocalLossCost', weight=2.))
    logits = torch.tensor([[0., 2.], [-1., 3.]])
    out = cost(InstanceData(scores=logits), InstanceData(labels=torch.tensor([1, 0, 1])))
    expected = torch.tensor([[2 * (_focal_terms(logits[i, c].item())[0] -
                                   _focal_terms(logits[i, c].item())[1]) for c in (1, 0, 1)]
                             for i in range(2)])
    torch.testing.assert_close(out, expected)
    # p = .5 by hand: pos = log 2 * .25 * .25, neg = log 2 * .75 * .25.
    assert out[0, 1].item() == pytest.approx(2 * math.log(2) * (.0625 - .1875), rel=1e-6)


def test_focal_loss_cost_on_masks_is_a_pixel_mean():
    cost = TASK_UTILS.build(dict(type='FocalLossCost', binary_input=True, alpha=0.5,
                                 gamma=1.))
    pred = torch.tensor([[[0., 1.], [-1., 2.]]])  # [1, 2, 2] logits
    gt = torch.tensor([[[1, 0], [0, 1]], [[0, 0], [0, 0]]])  # [2, 2, 2]
    out = cost(InstanceData(masks=pred), InstanceData(masks=gt))
    flat = pred.flatten().tolist()
    for g in range(2):
        terms = [_focal_terms(x, 0.5, 1.)[0 if t else 1]
                 for x, t in zip(flat, gt[g].flatten().tolist())]
        assert out[0, g].item() == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_binary_focal_loss_cost_uses_text_token_mask():
    cost = TASK_UTILS.build(dict(type='BinaryFocalLossCost'))
    scores = torch.tensor([[0., 1., 5.], [2., -1., 5.]])  # token 2 is masked out
    positive_maps = torch.tensor([[1., 0., 1.], [0., 1., 0.]])
    token_mask = torch.tensor([[True, True, False]] * 2)
    out = cost(InstanceData(scores=scores),
               InstanceData(positive_maps=positive_maps, text_token_mask=token_mask))
    for i in range(2):
        for g in range(2):
            terms = [_focal_terms(scores[i, t].item())[0 if positive_maps[g, t] else 1]
                     for t in range(2)]
            assert out[i, g].item() == pytest.approx(sum(terms), rel=1e-6)  # summed


def test_dice_cost_naive_and_squared():
    pred = torch.tensor([[[.5, 1.], [0., .5]]])
    gt = torch.tensor([[[1, 1], [0, 0]]])
    # sum(p*g) = 1.5, sum(p) = 2, sum(g) = 2, sum(p^2) = 1.5
    naive = TASK_UTILS.build(dict(type='DiceCost', eps=0.))
    out = naive(InstanceData(masks=pred), InstanceData(masks=gt))
    assert out.item() == pytest.approx(1 - 3 / 4)
    squared = TASK_UTILS.build(dict(type='DiceCost', eps=0., naive_dice=False, weight=2.))
    assert squared(InstanceData(masks=pred), InstanceData(masks=gt)).item() == \
        pytest.approx(2 * (1 - 3 / 3.5))
    activated = TASK_UTILS.build(dict(type='DiceCost', pred_act=True))
    p = torch.sigmoid(pred).flatten()
    expected = 1 - (2 * (p[0] + p[1]) + 1e-3) / (p.sum() + 2 + 1e-3)
    assert activated(InstanceData(masks=pred), InstanceData(masks=gt)).item() == \
        pytest.approx(expected.item(), rel=1e-6)


def test_cross_entropy_loss_cost_is_mean_bce():
    pred = torch.tensor([[0.3, -2.], [1., 4.]])
    gt = torch.tensor([[1., 0.], [1., 1.], [0., 0.]])
    cost = TASK_UTILS.build(dict(type='CrossEntropyLossCost', weight=3.))
    out = cost(InstanceData(masks=pred), InstanceData(masks=gt))
    expected = torch.stack([
        torch.stack([F.binary_cross_entropy_with_logits(pred[i], gt[g]) for g in range(3)])
        for i in range(2)
    ]) * 3
    torch.testing.assert_close(out, expected)
    with pytest.raises(NotImplementedError):
        TASK_UTILS.build(dict(type='CrossEntropyLossCost', use_sigmoid=False))(
            InstanceData(masks=pred), InstanceData(masks=gt))


PRED_BOXES = torch.tensor([[1., 1., 2., 2.], [2., 2., 3., 4.], [0., 0., 4., 4.]])
GT_BOXES = torch.tensor([[0., 0., 2., 4.], [1., 2., 3., 4.]])


@pytest.mark.parametrize('mode', ['iou', 'giou', 'iof'])
def test_iou_cost_every_mode(mode):
    cost = TASK_UTILS.build(dict(type='IoUCost', iou_mode=mode, weight=2.))
    out = cost(InstanceData(bboxes=PRED_BOXES), InstanceData(bboxes=GT_BOXES))
    if mode == 'iou':
        expected = box_iou(PRED_BOXES, GT_BOXES)
    elif mode == 'giou':
        expected = generalized_box_iou(PRED_BOXES, GT_BOXES)
    else:  # intersection over the prediction's area
        lt = torch.max(PRED_BOXES[:, None, :2], GT_BOXES[None, :, :2])
        rb = torch.min(PRED_BOXES[:, None, 2:], GT_BOXES[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        expected = inter / ((PRED_BOXES[:, 2:] - PRED_BOXES[:, :2]).prod(-1))[:, None]
    torch.testing.assert_close(out, -2 * expected)
    half = cost(InstanceData(bboxes=PRED_BOXES.half()), InstanceData(bboxes=GT_BOXES))
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), -2 * expected, atol=2e-3, rtol=2e-3)


def test_bbox_l1_cost_formats_and_assertion():
    meta = dict(img_shape=(8, 10))  # (h, w)
    pred = InstanceData(bboxes=torch.tensor([[0., 0., 10., 8.]]))
    gt = InstanceData(bboxes=torch.tensor([[0., 0., 5., 4.]]))
    xyxy = TASK_UTILS.build(dict(type='BBoxL1Cost'))(pred, gt, meta)
    assert xyxy.item() == pytest.approx(.5 + .5)  # |10-5|/10 + |8-4|/8
    xywh = TASK_UTILS.build(dict(type='BBoxL1Cost', box_format='xywh'))(pred, gt, meta)
    # cx 5 vs 2.5, cy 4 vs 2, w 10 vs 5, h 8 vs 4 -> .25 + .25 + .5 + .5
    assert xywh.item() == pytest.approx(1.5)
    with pytest.raises(AssertionError, match='box_format'):
        TASK_UTILS.build(dict(type='BBoxL1Cost', box_format='cxcywh'))
