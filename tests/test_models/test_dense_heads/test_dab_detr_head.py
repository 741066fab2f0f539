"""DABDETRHead: keys, init (zero last box layer: boxes = anchors), anchor offsets with
eps 1e-3, point references, per-layer losses and last-layer predictions."""
import math

import torch
from helpers import make_det_sample
from helpers_conditional_dab_keys import linear, mlp

from mmdet_lite.models.dense_heads import ConditionalDETRHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules


def build_head(**kwargs):
    register_all_modules()
    cfg = dict(type='DABDETRHead', num_classes=2, embed_dims=8,
               loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                             loss_weight=1.0),
               train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
                   dict(type='FocalLossCost', weight=2., eps=1e-8),
                   dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                   dict(type='IoUCost', iou_mode='giou', weight=2.0)])))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_keys_and_init():
    head = build_head(num_classes=80, embed_dims=256)
    assert isinstance(head, ConditionalDETRHead)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {
        **linear('fc_cls', 80, 256), **mlp('fc_reg', 256, 256, 4, 3)}
    head.init_weights()
    torch.testing.assert_close(head.fc_cls.bias, torch.full((80, ), -math.log(99)))
    assert torch.count_nonzero(head.fc_reg.layers[-1].weight) == 0
    assert torch.count_nonzero(head.fc_reg.layers[-1].bias) == 0
    assert torch.count_nonzero(head.fc_reg.layers[0].weight) > 0


def test_initial_boxes_are_the_anchors():
    head = build_head()
    head.init_weights()
    anchors = torch.rand(3, 2, 4, 4) * 0.9 + 0.05
    cls_scores, boxes = head(torch.randn(3, 2, 4, 8), anchors)
    assert cls_scores.shape == (3, 2, 4, 2)
    torch.testing.assert_close(boxes, anchors)
    # inverse_sigmoid with eps 1e-3: an anchor coordinate of 0 comes back as
    # sigmoid(log(1e-3)) = 1e-3 / (1 + 1e-3), not 0.
    _, boxes = head(torch.randn(1, 1, 1, 8), torch.tensor([[[[0., .5, .5, .5]]]]))
    assert math.isclose(boxes[0, 0, 0, 0].item(), 1e-3 / (1 + 1e-3), rel_tol=1e-4)


def test_point_references_offset_the_centres_only():
    head = build_head()
    hidden, points = torch.randn(2, 1, 3, 8), torch.rand(2, 1, 3, 2)
    _, boxes = head(hidden, points)
    reg = head.fc_reg(hidden)
    torch.testing.assert_close(boxes[..., :2], (reg[..., :2] + torch.logit(points)).sigmoid())
    torch.testing.assert_close(boxes[..., 2:], reg[..., 2:].sigmoid())


def test_losses_per_layer_and_predictions_from_the_last_layer():
    head = build_head()
    head.init_weights()
    samples = [make_det_sample([[4, 4, 30, 40]], [1], img_shape=(64, 64)),
               make_det_sample([[10, 20, 50, 60]], [0], img_shape=(64, 48))]
    hidden, anchors = torch.randn(3, 2, 5, 8), torch.rand(3, 2, 5, 4) * 0.8 + 0.1
    losses = head.loss(hidden, anchors, samples)
    names = ['loss_cls', 'loss_bbox', 'loss_iou']
    assert list(losses) == names + [f'd{i}.{n}' for i in range(2) for n in names]
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())

    head.test_cfg = dict(max_per_img=4)
    pred = head.predict(hidden, anchors, samples[:1], rescale=False)[0]
    # Zero box layer: each kept pair's box is its query's last-layer anchor in pixels.
    scores = head.fc_cls(hidden[-1, 0]).sigmoid().flatten()
    top, index = scores.topk(4)
    torch.testing.assert_close(pred.scores, top)
    assert pred.labels.tolist() == (index % 2).tolist()
    cx, cy, w, h = anchors[-1, 0, index // 2].unbind(-1)
    expected = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * 64
    torch.testing.assert_close(pred.bboxes, expected.clamp(0, 64))
