"""DETRHead: layer names, hand-computed set losses, auxiliary losses, predictions, bad input."""
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import make_det_sample
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import DETRHead
from mmdet_lite.registry import MODELS


def build_head(**kwargs):
    cfg = dict(type='DETRHead', num_classes=2, embed_dims=8)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def gt(bboxes, labels):
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


def test_layers_and_state_dict_keys():
    head = DETRHead(num_classes=80)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        'fc_cls.weight': (81, 256), 'fc_cls.bias': (81, ),
        'reg_ffn.layers.0.0.weight': (256, 256), 'reg_ffn.layers.0.0.bias': (256, ),
        'reg_ffn.layers.1.weight': (256, 256), 'reg_ffn.layers.1.bias': (256, ),
        'fc_reg.weight': (4, 256), 'fc_reg.bias': (4, )}
    # Object classes weigh 1 and the no-object class (last) bg_cls_weight = 0.1.
    assert head.loss_cls.class_weight == [1.0] * 80 + [0.1]
    assert head.bg_cls_weight == 0.1


def test_forward_shapes_and_box_range():
    head = build_head()
    cls_scores, bbox_preds = head(torch.randn(6, 2, 5, 8))  # [layers, B, Q, C]
    assert cls_scores.shape == (6, 2, 5, 3)  # num_classes + background
    assert bbox_preds.shape == (6, 2, 5, 4)
    assert ((bbox_preds > 0) & (bbox_preds < 1)).all()  # sigmoid (cx, cy, w, h)


def test_losses_by_hand():
    head = build_head()
    # Query 0 predicts class 0 at (cx, cy, w, h) = (.5, .5, .2, .2) -> pixels [40, 40, 60, 60];
    # query 1 predicts background far away. The gt [50, 50, 70, 70] (label 0) goes to query 0.
    cls_scores = torch.tensor([[[[2., 0., 0.], [0., 0., 3.]]]])  # [1 layer, 1 image, 2, 3]
    bbox_preds = torch.tensor([[[[.5, .5, .2, .2], [.1, .1, .1, .1]]]])
    losses = head.loss_by_feat(cls_scores, bbox_preds, [gt([[50, 50, 70, 70]], [0])],
                               [dict(img_shape=(100, 100))])
    assert list(losses) == ['loss_cls', 'loss_bbox', 'loss_iou']
    # CE weighted by class weight, normalized by num_pos + 0.1 * num_neg = 1.1.
    ce_q0 = math.log(1 + 2 * math.exp(-2))
    ce_q1 = math.log(1 + 2 * math.exp(-3))
    assert math.isclose(losses['loss_cls'].item(), (ce_q0 + 0.1 * ce_q1) / 1.1, rel_tol=1e-5)
    # L1 on normalized cxcywh: target (.6, .6, .2, .2) -> 0.1 + 0.1, times weight 5.
    assert math.isclose(losses['loss_bbox'].item(), 5 * 0.2, rel_tol=1e-5)
    # GIoU: intersection 100, union 700, enclosing 30 x 30 = 900 -> 1/7 - 200/900.
    giou = 1 / 7 - 2 / 9
    assert math.isclose(losses['loss_iou'].item(), 2 * (1 - giou), rel_tol=1e-5)


def test_auxiliary_losses_for_every_decoder_layer():
    head = build_head()
    samples = [make_det_sample([[4, 4, 30, 40]], [1], img_shape=(64, 64)),
               make_det_sample([[10, 20, 50, 60], [0, 0, 8, 8]], [0, 1], img_shape=(64, 48))]
    losses = head.loss(torch.randn(6, 2, 5, 8), samples)
    expected = ['loss_cls', 'loss_bbox', 'loss_iou'] + [
        f'd{i}.{name}' for i in range(5) for name in ('loss_cls', 'loss_bbox', 'loss_iou')]
    assert list(losses) == expected
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_image_without_ground_truth_only_learns_no_object():
    head = build_head()
    hidden = torch.randn(2, 1, 20, 8, requires_grad=True)
    losses = head.loss(hidden, [make_det_sample([], img_shape=(32, 32))])
    assert losses['loss_bbox'].item() == 0 and losses['loss_iou'].item() == 0
    # Every query is background, weighted 0.1 and normalized by 20 * 0.1: the plain mean CE.
    cls_scores, _ = head(hidden)
    expected = F.cross_entropy(cls_scores[-1, 0], torch.full((20, ), 2))
    torch.testing.assert_close(losses['loss_cls'], expected)
    sum(losses.values()).backward()
    assert torch.isfinite(hidden.grad).all()


def test_more_ground_truths_than_queries_trains_on_the_matched_ones():
    # mmdetection accepts this: each of the 2 queries is matched to one of the 3 objects.
    head = build_head()
    sample = make_det_sample([[0, 0, 5, 5], [5, 5, 9, 9], [1, 1, 4, 4]], [0, 1, 0])
    hidden = torch.randn(1, 1, 2, 8, requires_grad=True)
    losses = head.loss(hidden, [sample])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_bbox'] > 0  # both queries are positives


def test_degenerate_boxes_give_finite_losses_and_gradients():
    head = build_head()
    hidden = torch.randn(2, 1, 4, 8, requires_grad=True)
    sample = make_det_sample([[10, 10, 10, 10], [0, 0, 0, 50], [5, 60, 40, 60]], [0, 1, 1])
    losses = head.loss(hidden, [sample])
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(hidden.grad).all()


def test_predict_by_hand():
    head = build_head(test_cfg=dict(max_per_img=2))
    last_cls = torch.tensor([[[0., 2., 0.], [1., 0., 0.], [0., 0., 5.]]])  # [1, 3, 3]
    last_box = torch.tensor([[[.5, .5, .2, .4], [.05, .9, .2, .4], [.5, .5, .1, .1]]])
    # An earlier decoder layer's outputs must be ignored.
    cls_scores = torch.stack([torch.randn(1, 3, 3), last_cls])
    bbox_preds = torch.stack([torch.rand(1, 3, 4), last_box])
    meta = dict(img_shape=(100, 200), scale_factor=(2.0, 0.5))
    result = head.predict_by_feat(cls_scores, bbox_preds, [meta])[0]
    # Query 0: class 1 with e^2 / (e^2 + 2); query 1: class 0 with e / (e + 2); query 2 is
    # background-dominated and dropped by max_per_img=2.
    torch.testing.assert_close(result.scores, torch.tensor(
        [math.exp(2) / (math.exp(2) + 2), math.e / (math.e + 2)]))
    assert result.labels.tolist() == [1, 0] and result.labels.dtype == torch.long
    # Query 0: pixels [80, 30, 120, 70]; query 1: [-10, 70, 30, 110] clamped to
    # [0, 70, 30, 100]; then divided by (w_scale, h_scale) = (2, 0.5).
    torch.testing.assert_close(result.bboxes, torch.tensor([[40., 60., 60., 140.],
                                                            [0., 140., 15., 200.]]))
    no_rescale = head.predict_by_feat(cls_scores, bbox_preds, [meta], rescale=False)[0]
    torch.testing.assert_close(no_rescale.bboxes[0], torch.tensor([80., 30., 120., 70.]))


def test_sigmoid_classifier_ranks_query_class_pairs():
    head = build_head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True),
                      test_cfg=dict(max_per_img=2))
    assert head.cls_out_channels == 2
    cls_scores = torch.tensor([[[[3., 2.], [-1., -2.]]]])
    result = head.predict_by_feat(cls_scores, torch.full((1, 1, 2, 4), .5),
                                  [dict(img_shape=(10, 10))], rescale=False)[0]
    assert result.labels.tolist() == [0, 1]  # both pairs come from query 0
    torch.testing.assert_close(result.scores, torch.sigmoid(torch.tensor([3., 2.])))


def test_bad_configs():
    with pytest.raises(ValueError, match='uses no sampler'):
        build_head(train_cfg=dict(assigner=dict(type='HungarianAssigner',
                                                match_costs=dict(type='ClassificationCost')),
                                  sampler=dict(type='PseudoSampler')))
    with pytest.raises(KeyError, match='assigner'):
        build_head(train_cfg=dict(max_iter=1))
    with pytest.raises(TypeError, match='class_weight must be a float'):
        build_head(loss_cls=dict(type='CrossEntropyLoss', class_weight=[1., 1., .1]))
    head = build_head()
    with pytest.raises(ValueError, match='ignored instances'):
        head.loss_by_feat(torch.zeros(1, 1, 2, 3), torch.full((1, 1, 2, 4), .5),
                          [gt([], [])], [dict(img_shape=(8, 8))], [gt([], [])])
