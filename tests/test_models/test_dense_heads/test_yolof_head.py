"""YOLOFHead: mmdetection 3.3's signature, keys and init; the implicit objectness against
hand-computed values; the uniform-matching targets, focal and GIoU losses of a hand-worked
case; predict decoding; single-level errors."""
import inspect
import math

import pytest
import torch
from helpers_state_dict import shapes_of
from helpers_yolo_keys import yolof_head
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import AnchorHead, YOLOFHead
from mmdet_lite.models.dense_heads.yolof_head import implicit_objectness
from mmdet_lite.registry import MODELS


def make_head(num_classes=2, in_channels=8) -> YOLOFHead:
    """The COCO config's head (5 square anchors 32..512 at stride 32, focal + GIoU, uniform
    matching) on a small width."""
    return MODELS.build(dict(
        type='YOLOFHead', num_classes=num_classes, in_channels=in_channels,
        reg_decoded_bbox=True,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], scales=[1, 2, 4, 8, 16],
                              strides=[32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1., 1., 1., 1.], add_ctr_clamp=True, ctr_clamp=32),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        train_cfg=ConfigDict(assigner=dict(type='UniformAssigner', pos_ignore_thr=0.15,
                                           neg_ignore_thr=0.7),
                             allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=ConfigDict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                            nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)))


def test_signature_and_parent_match_mmdetection():
    params = inspect.signature(YOLOFHead).parameters
    assert list(params) == ['num_classes', 'in_channels', 'num_cls_convs', 'num_reg_convs',
                            'norm_cfg', 'kwargs']
    assert params['num_cls_convs'].default == 2 and params['num_reg_convs'].default == 4
    assert params['norm_cfg'].default == dict(type='BN', requires_grad=True)
    assert issubclass(YOLOFHead, AnchorHead)
    get_targets = inspect.signature(YOLOFHead.get_targets).parameters
    assert list(get_targets)[1:] == [
        'cls_scores_list', 'bbox_preds_list', 'anchor_list', 'valid_flag_list',
        'batch_gt_instances', 'batch_img_metas', 'batch_gt_instances_ignore', 'unmap_outputs']


def test_keys_shapes_and_forward():
    head = make_head(num_classes=80, in_channels=16)
    assert shapes_of(head) == yolof_head('', in_c=16, num_classes=80, num_anchors=5)
    assert head.num_base_priors == 5
    cls_scores, bbox_preds = head((torch.rand(2, 16, 3, 4), ))
    assert [tuple(c.shape) for c in cls_scores] == [(2, 400, 3, 4)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 20, 3, 4)]


def test_init_weights_ignores_init_cfg():
    head = make_head()
    for conv in (head.cls_score, head.bbox_pred, head.object_pred):
        conv.bias.data.fill_(5.)
    head.init_weights()
    torch.testing.assert_close(head.cls_score.bias, torch.full((10, ), -math.log(99.)))
    assert torch.all(head.bbox_pred.bias == 0) and torch.all(head.object_pred.bias == 0)
    assert head.cls_subnet[0].conv.weight.std() < 0.02
    assert torch.all(head.bbox_subnet[3].bn.weight == 1)


# ----------------------------------------------------------------------------- objectness


def test_implicit_objectness_by_hand():
    cls_score = torch.tensor([0., 2., 30.]).view(1, 3, 1, 1, 1)
    objectness = torch.tensor([0., -1., 0.]).view(1, 3, 1, 1, 1)
    out = implicit_objectness(cls_score, objectness).flatten()
    # c = o = 0: 0 - log 3, i.e. probability 1/4 = 1/2 * 1/2
    # c = 2, o = -1: 2 - 1 - log(1 + e^2 + e^-1) = 1 - log(8.756935...)
    # c = 30: exp(30) is clamped to 1e8 before the log (mmdetection's INF)
    expected = torch.tensor([-math.log(3.), 1 - math.log(1 + math.exp(2) + math.exp(-1)),
                             30 - math.log(1 + 1e8 + 1)])
    torch.testing.assert_close(out, expected)
    assert out[0].sigmoid().item() == pytest.approx(0.25)
    # Without clamping its sigmoid is the product of the two sigmoids.
    assert out[1].sigmoid().item() == pytest.approx(
        1 / (1 + math.exp(-2)) / (1 + math.exp(1)), rel=1e-6)


def test_forward_merges_objectness_into_every_class_of_its_anchor():
    head = make_head(num_classes=2)
    for conv in (head.cls_score, head.object_pred):
        conv.weight.data.zero_()
    head.cls_score.bias.data = torch.tensor([0., 2.] * 5)  # per anchor: class 0, class 1
    head.object_pred.bias.data = torch.tensor([0., -1., 0., 0., 0.])  # per anchor
    cls_scores, _ = head((torch.rand(1, 8, 2, 3), ))
    scores = cls_scores[0].view(5, 2, 2, 3)  # anchor, class, H, W
    torch.testing.assert_close(scores[0, 0], torch.full((2, 3), -math.log(3.)))
    torch.testing.assert_close(scores[1, 1], torch.full(
        (2, 3), 2 - 1 - math.log(1 + math.exp(2) + math.exp(-1))))


# ----------------------------------------------------------------------------- loss


def test_loss_of_a_hand_worked_case():
    """64x64 image, 2x2 cells, anchors centred on the cell corners (0 or 32) with sizes
    32..512. Zero deltas: the predicted boxes are the anchors. The gt (8, 8, 40, 40) has L1
    (cx, cy, w, h) cost 16 to the 32x32 anchor at (32, 32), 32 to those at (0, 32) and
    (32, 0), 48 to the one at (0, 0), more to all others: those four are its 4 nearest,
    both as predictions and as anchors. Only the first has anchor IoU 576/1472 >= 0.15;
    the other three (IoU 192/1856, 192/1856, 64/1984) are ignored."""
    head = make_head(num_classes=2)
    gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]),
                                labels=torch.tensor([1]))
    meta = dict(img_shape=(64, 64), pad_shape=(64, 64))
    cls_scores = [torch.zeros(1, 10, 2, 2, requires_grad=True)]
    bbox_preds = [torch.zeros(1, 20, 2, 2, requires_grad=True)]

    anchor_list, valid_flag_list = head.get_anchors([(2, 2)], [meta])
    labels, label_weights, avg_factor, bbox_weights, pred_boxes, target_boxes = \
        head.get_targets([cls_scores[0][0].permute(1, 2, 0).reshape(4, 10)],
                         [bbox_preds[0][0].permute(1, 2, 0).reshape(4, 20)],
                         [anchor_list[0][0]], [valid_flag_list[0][0]], [gt_instances], [meta])
    positive, ignored = 3 * 5 + 0, [0 * 5 + 0, 1 * 5 + 0, 2 * 5 + 0]  # (cell, anchor)
    expected_labels = torch.full((1, 20), 2)
    expected_labels[0, positive] = 1
    assert torch.equal(labels, expected_labels)
    expected_weights = torch.ones(1, 20)
    expected_weights[0, ignored] = 0
    assert torch.equal(label_weights, expected_weights)
    assert avg_factor == 1
    # Pairs by rank, nearest first; at each rank the prediction match, then the anchor
    # match (the assigner's cat of the two [4, G] top-k tables along the gt axis): only
    # the rank-0 pairs are kept.
    assert bbox_weights.tolist() == [True, True, False, False, False, False, False, False]
    torch.testing.assert_close(pred_boxes[0], torch.tensor([16., 16., 48., 48.]))
    assert torch.equal(target_boxes, gt_instances.bboxes.expand(8, 4))

    losses = head.loss_by_feat(cls_scores, bbox_preds, [gt_instances], [meta])
    # Focal loss at p = 1/2: alpha * (1/2)^2 * log 2 for the one positive (anchor, class)
    # pair, (1 - alpha) * (1/2)^2 * log 2 for the 17 * 2 - 1 others; avg_factor 1.
    log2 = math.log(2)
    expected_cls = 0.25 * 0.25 * log2 + 33 * 0.75 * 0.25 * log2
    assert losses['loss_cls'].item() == pytest.approx(expected_cls, rel=1e-5)
    # GIoU of (16, 16, 48, 48) vs (8, 8, 40, 40): IoU 576/1472, hull 40x40 = 1600.
    giou = 576 / 1472 - (1600 - 1472) / 1600
    assert losses['loss_bbox'].item() == pytest.approx(2 * (1 - giou), rel=1e-5)
    (losses['loss_cls'] + losses['loss_bbox']).backward()
    assert bbox_preds[0].grad.abs().sum() > 0  # the matched predictions carry gradient


def test_loss_without_gt_has_zero_box_loss_and_all_negatives():
    head = make_head(num_classes=2)
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    meta = dict(img_shape=(64, 64), pad_shape=(64, 64))
    cls_scores = [torch.zeros(1, 10, 2, 2, requires_grad=True)]
    bbox_preds = [torch.zeros(1, 20, 2, 2, requires_grad=True)]
    losses = head.loss_by_feat(cls_scores, bbox_preds, [empty], [meta])
    assert losses['loss_bbox'].item() == 0
    # 40 negative (anchor, class) pairs, avg_factor 1 (at least one positive is counted)
    expected = 40 * 0.75 * 0.25 * math.log(2)
    assert losses['loss_cls'].item() == pytest.approx(expected, rel=1e-5)


def test_single_level_is_required():
    head = make_head()
    meta = dict(img_shape=(64, 64), pad_shape=(64, 64))
    gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]),
                                labels=torch.tensor([1]))
    two = [torch.zeros(1, 10, 2, 2)] * 2
    with pytest.raises(AssertionError, match='one level'):
        head.loss_by_feat(two, [torch.zeros(1, 20, 2, 2)] * 2, [gt_instances], [meta])


# ----------------------------------------------------------------------------- predict


def test_predict_decodes_anchor_boxes_with_merged_scores():
    head = make_head(num_classes=2)
    cls_scores = torch.full((1, 10, 2, 2), -10.)
    cls_scores[0, 1 * 2 + 0, 1, 1] = 3.  # anchor 1 (64x64) of cell (1, 1), class 0
    bbox_preds = torch.zeros(1, 20, 2, 2)
    meta = dict(img_shape=(64, 64), scale_factor=(1., 1.))
    result, = head.predict_by_feat([cls_scores], [bbox_preds], batch_img_metas=[meta])
    assert result.labels.tolist() == [0]
    torch.testing.assert_close(result.scores, torch.sigmoid(torch.tensor([3.])))
    # the 64x64 anchor centred at (32, 32) is the image itself after clipping
    torch.testing.assert_close(result.bboxes, torch.tensor([[0., 0., 64., 64.]]))
