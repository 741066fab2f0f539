"""ConditionalDETRHead: keys, focal-loss bias init, boxes around the references, per-term
losses of a hand-built case (sigmoid focal loss with fixed logits), top-k predictions."""
import math

import torch
from helpers import make_det_sample
from torch import nn

from mmdet_lite.models.dense_heads import ConditionalDETRHead, DETRHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0)
ASSIGNER = dict(type='HungarianAssigner', match_costs=[
    dict(type='FocalLossCost', weight=2.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)])


def build_head(**kwargs):
    register_all_modules()
    cfg = dict(type='ConditionalDETRHead', num_classes=2, embed_dims=8, loss_cls=FOCAL,
               train_cfg=dict(assigner=ASSIGNER))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def logits_head(logits):
    """A head whose class logits for query q (input e_q) are ``logits[q]`` and whose box
    branch outputs 0: boxes are (ref_x, ref_y, 0.5, 0.5)."""
    head = build_head()
    with torch.no_grad():
        head.fc_cls.weight.zero_()
        head.fc_cls.weight[:, :len(logits)] = torch.tensor(logits).t()
        head.fc_cls.bias.zero_()
        head.fc_reg.weight.zero_()
        head.fc_reg.bias.zero_()
    return head


def focal(logit, target, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-logit))
    p_t, alpha_t = (p, alpha) if target else (1 - p, 1 - alpha)
    return -alpha_t * (1 - p_t)**gamma * math.log(p_t)


def test_is_a_detr_head_with_detr_keys_and_sigmoid_classes():
    head = build_head(num_classes=80, embed_dims=256)
    assert isinstance(head, DETRHead) and head.cls_out_channels == 80
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {
        'fc_cls.weight': (80, 256), 'fc_cls.bias': (80, ),
        'reg_ffn.layers.0.0.weight': (256, 256), 'reg_ffn.layers.0.0.bias': (256, ),
        'reg_ffn.layers.1.weight': (256, 256), 'reg_ffn.layers.1.bias': (256, ),
        'fc_reg.weight': (4, 256), 'fc_reg.bias': (4, )}
    head.init_weights()
    torch.testing.assert_close(head.fc_cls.bias, torch.full((80, ), -math.log(99)))
    # A softmax classifier keeps its default bias.
    softmax = ConditionalDETRHead(num_classes=2, embed_dims=8)
    nn.init.zeros_(softmax.fc_cls.bias)
    softmax.init_weights()
    assert torch.count_nonzero(softmax.fc_cls.bias) == 0


def test_boxes_are_offsets_from_the_references():
    head = build_head()
    hidden = torch.randn(3, 2, 4, 8)
    references = torch.rand(2, 4, 2)
    cls_scores, bbox_preds = head(hidden, references)
    assert cls_scores.shape == (3, 2, 4, 2) and bbox_preds.shape == (3, 2, 4, 4)
    reg = head.fc_reg(torch.relu(head.reg_ffn(hidden)))
    logit = torch.log(references / (1 - references))
    torch.testing.assert_close(bbox_preds[..., :2], (reg[..., :2] + logit).sigmoid())
    torch.testing.assert_close(bbox_preds[..., 2:], reg[..., 2:].sigmoid())


def test_losses_of_a_hand_built_case():
    # Query 0: logits (-1, 2), reference (.5, .5) -> box (.5, .5, .5, .5) = [25, 25, 75, 75].
    # Query 1: logits (1, -2), reference (.1, .1) -> [-15, -15, 35, 35]. The ground truth
    # [30, 30, 80, 80] of class 1 is matched to query 0.
    head = logits_head([[-1., 2.], [1., -2.]])
    hidden = torch.eye(8)[:2].view(1, 1, 2, 8)
    references = torch.tensor([[[.5, .5], [.1, .1]]])
    sample = make_det_sample([[30, 30, 80, 80]], [1], img_shape=(100, 100))
    losses = head.loss(hidden, references, [sample])
    assert list(losses) == ['loss_cls', 'loss_bbox', 'loss_iou']
    # Focal loss summed over queries x classes (query 1 is background: all targets 0),
    # averaged over 1 positive (no background weight with a sigmoid classifier), weight 2.
    focal_sum = (focal(-1., 0) + focal(2., 1) + focal(1., 0) + focal(-2., 0))
    assert math.isclose(losses['loss_cls'].item(), 2.0 * focal_sum, rel_tol=1e-5)
    # L1 on normalized cxcywh: (.5, .5, .5, .5) vs (.55, .55, .5, .5), weight 5.
    assert math.isclose(losses['loss_bbox'].item(), 5 * 0.1, rel_tol=1e-5)
    # GIoU: intersection 45^2, union 2 * 50^2 - 45^2, enclosing 55^2.
    inter, union, hull = 45.**2, 2 * 50.**2 - 45.**2, 55.**2
    giou = inter / union - (hull - union) / hull
    assert math.isclose(losses['loss_iou'].item(), 2 * (1 - giou), rel_tol=1e-5)


def test_auxiliary_losses_and_loss_and_predict():
    head = build_head()
    samples = [make_det_sample([[4, 4, 30, 40]], [1], img_shape=(64, 64)),
               make_det_sample([[10, 20, 50, 60], [0, 0, 8, 8]], [0, 1], img_shape=(64, 48))]
    hidden, references = torch.randn(3, 2, 5, 8), torch.rand(2, 5, 2)
    losses = head.loss(hidden, references, samples)
    names = ['loss_cls', 'loss_bbox', 'loss_iou']
    assert list(losses) == names + [f'd{i}.{n}' for i in range(2) for n in names]
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    both, predictions = head.loss_and_predict(hidden, references, samples)
    assert list(both) == list(losses)
    # max_per_img (100) exceeds the 5 queries x 2 classes: all 10 pairs are kept.
    assert len(predictions) == 2 and predictions[0].bboxes.shape == (10, 4)


def test_predict_keeps_the_best_query_class_pairs_of_the_last_layer():
    head = logits_head([[-1., 2.], [1., -2.]])
    head.test_cfg = dict(max_per_img=3)
    # The first layer's input would give other logits; only the last is used.
    hidden = torch.stack([torch.eye(8)[2:4], torch.eye(8)[:2]]).view(2, 1, 2, 8)
    references = torch.tensor([[[.5, .5], [.1, .1]]])
    sample = make_det_sample(img_shape=(100, 100), ori_shape=(50, 50), scale_factor=(2., 2.))
    pred = head.predict(hidden, references, [sample], rescale=True)[0]
    sigmoid = torch.sigmoid(torch.tensor([2., 1., -1.]))
    torch.testing.assert_close(pred.scores, sigmoid)
    assert pred.labels.tolist() == [1, 0, 0] and pred.labels.dtype == torch.long
    # query 0 -> [25, 25, 75, 75]; query 1 -> [-15, -15, 35, 35] clamped; then halved.
    expected = torch.tensor([[25., 25., 75., 75.], [0., 0., 35., 35.], [25., 25., 75., 75.]])
    torch.testing.assert_close(pred.bboxes, expected / 2)
