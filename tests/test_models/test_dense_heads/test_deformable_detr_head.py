"""DeformableDETRHead: branches and keys, boxes relative to references, per-term losses of
every decoder layer and of the encoder proposals by hand, top-k prediction."""
import math

import pytest
import torch
from helpers import make_det_sample
from helpers_detr_keys import linear
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import DeformableDETRHead
from mmdet_lite.registry import MODELS

ALPHA, GAMMA = 0.25, 2.0


def build_head(**kwargs):
    cfg = dict(
        type='DeformableDETRHead', num_classes=2, embed_dims=4, num_pred_layer=2,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=GAMMA, alpha=ALPHA,
                      loss_weight=2.0),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0),
            dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def fix_weights(head, wh_bias=(0., 0.)):
    """Class logits = the first two hidden channels; boxes = the references (points get
    w, h = sigmoid(wh_bias) from layer 0's branch)."""
    with torch.no_grad():
        for fc_cls in head.cls_branches:
            fc_cls.weight.copy_(torch.eye(2, 4))
            fc_cls.bias.zero_()
        for reg in head.reg_branches:
            reg[-1].weight.zero_()
            reg[-1].bias.zero_()
        head.reg_branches[0][-1].bias[2:] = torch.tensor(wh_bias)


def logit(p):
    return math.log(p / (1 - p))


def focal_pos(x):
    """Sigmoid focal loss of logit ``x`` for its true class."""
    p = 1 / (1 + math.exp(-x))
    return -ALPHA * (1 - p)**GAMMA * math.log(p)


def focal_neg(x):
    """Sigmoid focal loss of logit ``x`` for a class the sample is not."""
    p = 1 / (1 + math.exp(-x))
    return -(1 - ALPHA) * p**GAMMA * math.log(1 - p)


def test_branches_and_state_dict_keys():
    head = DeformableDETRHead(num_classes=80, num_pred_layer=7, as_two_stage=True,
                              loss_cls=dict(type='FocalLoss', use_sigmoid=True))
    expected = {}
    for i in range(7):
        expected.update({**linear(f'cls_branches.{i}', 80, 256),
                         **linear(f'reg_branches.{i}.0', 256, 256),
                         **linear(f'reg_branches.{i}.2', 256, 256),
                         **linear(f'reg_branches.{i}.4', 4, 256)})
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == expected
    assert all(isinstance(head.reg_branches[0][i], torch.nn.ReLU) for i in (1, 3))
    assert head.cls_branches[0] is not head.cls_branches[1]
    shared = DeformableDETRHead(num_classes=80, share_pred_layer=True, num_pred_layer=6)
    assert len(shared.cls_branches) == 6 and len(set(map(id, shared.cls_branches))) == 1
    assert len(set(map(id, shared.reg_branches))) == 1
    assert shared.cls_out_channels == 81  # DETRHead's softmax default


def test_forward_boxes_are_relative_to_the_references():
    head = build_head()
    fix_weights(head, wh_bias=(logit(.2), logit(.4)))
    hidden = torch.randn(2, 1, 2, 4)
    references = [torch.tensor([[[.3, .7], [.5, .1]]]),  # points: layer 0 adds w, h
                  torch.tensor([[[.3, .7, .1, .2], [.5, .1, .6, .3]]]),  # boxes: layer 1
                  torch.rand(1, 2, 4)]  # the last reference is not used
    cls_scores, bbox_preds = head(hidden, references)
    torch.testing.assert_close(cls_scores, hidden[..., :2])
    torch.testing.assert_close(bbox_preds[0], torch.tensor([[[.3, .7, .2, .4],
                                                             [.5, .1, .2, .4]]]))
    torch.testing.assert_close(bbox_preds[1], references[1])


def test_losses_of_every_layer_and_the_encoder_by_hand():
    head = build_head()
    fix_weights(head, wh_bias=(logit(.2), logit(.2)))
    # One 100 x 100 image, one object [50, 50, 70, 70] of class 1: (.6, .6, .2, .2).
    sample = make_det_sample([[50, 50, 70, 70]], [1], img_shape=(100, 100))
    hidden = torch.zeros(2, 1, 2, 4)  # [layers, B, Q, C]; channels 0, 1 are the logits
    hidden[0, 0, :, :2] = torch.tensor([[-1., .5], [.2, -2.]])
    hidden[1, 0, :, :2] = torch.tensor([[-2., 1.5], [1., -1.]])
    references = [
        torch.tensor([[[.55, .6], [.2, .2]]]),  # layer 0: boxes (.55, .6, .2, .2), ...
        torch.tensor([[[.5, .5, .2, .2], [.1, .1, .1, .1]]]),  # layer 1
        torch.rand(1, 2, 4)
    ]
    # Encoder proposals: class 0's logit is the objectness; proposal 0 is the object.
    enc_cls = torch.tensor([[[1., 0.], [-1., 2.], [0., -3.]]])
    enc_coord = torch.tensor([[[.6, .65, .2, .3], [.1, .1, .1, .1], [.9, .9, .1, .1]]])
    labels_before = sample.gt_instances.labels.clone()
    losses = head.loss(hidden, references, enc_cls, enc_coord, [sample])
    assert list(losses) == ['loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls',
                            'd0.loss_bbox', 'd0.loss_iou', 'enc_loss_cls', 'enc_loss_bbox',
                            'enc_loss_iou']
    assert torch.equal(sample.gt_instances.labels, labels_before)  # relabelled on a copy

    # Query 0 matches in every layer: focal loss (weight 2) over both classes of both
    # queries, normalized by the single positive.
    expected = {
        'd0.loss_cls': 2 * (focal_neg(-1.) + focal_pos(.5) + focal_neg(.2) + focal_neg(-2.)),
        # L1 (weight 5) on normalized (cx, cy, w, h): |.55 - .6| = .05.
        'd0.loss_bbox': 5 * .05,
        # [45, 50, 65, 70] vs [50, 50, 70, 70]: IoU 300 / 500, the enclosing box is the
        # union, so GIoU = .6; weight 2.
        'd0.loss_iou': 2 * (1 - .6),
        'loss_cls': 2 * (focal_neg(-2.) + focal_pos(1.5) + focal_neg(1.) + focal_neg(-1.)),
        # (.5, .5, .2, .2) vs (.6, .6, .2, .2).
        'loss_bbox': 5 * .2,
        # [40, 40, 60, 60] vs [50, 50, 70, 70]: IoU 100 / 700, enclosing 30 x 30.
        'loss_iou': 2 * (1 - (1 / 7 - 200 / 900)),
        # Encoder: the object is class 0; proposal 0 = [50, 50, 70, 80].
        'enc_loss_cls': 2 * (focal_pos(1.) + focal_neg(0.) + focal_neg(-1.) + focal_neg(2.) +
                             focal_neg(0.) + focal_neg(-3.)),
        'enc_loss_bbox': 5 * (.05 + .1),
        'enc_loss_iou': 2 * (1 - 400 / 600),
    }
    for name, value in expected.items():
        assert math.isclose(losses[name].item(), value, rel_tol=1e-5, abs_tol=1e-6), name


def test_one_stage_has_no_encoder_losses_and_two_images_average():
    head = build_head()
    samples = [make_det_sample([[4, 4, 30, 40]], [1], img_shape=(64, 64)),
               make_det_sample([[10, 20, 50, 60], [0, 0, 8, 8]], [0, 1], img_shape=(64, 48))]
    hidden = torch.randn(2, 2, 5, 4, requires_grad=True)
    references = [torch.rand(2, 5, 2), torch.rand(2, 5, 2), torch.rand(2, 5, 2)]
    losses = head.loss(hidden, references, None, None, samples)
    assert list(losses) == ['loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls',
                            'd0.loss_bbox', 'd0.loss_iou']
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(hidden.grad).all()


def test_image_without_objects_gives_zero_box_losses():
    head = build_head()
    losses = head.loss(torch.randn(2, 1, 4, 4), [torch.rand(1, 4, 2)] * 3,
                       torch.randn(1, 6, 2), torch.rand(1, 6, 4),
                       [make_det_sample([], img_shape=(32, 32))])
    for prefix in ('', 'd0.', 'enc_'):
        assert losses[f'{prefix}loss_bbox'].item() == 0
        assert losses[f'{prefix}loss_iou'].item() == 0
        assert losses[f'{prefix}loss_cls'].item() > 0


def test_predict_takes_the_top_query_class_pairs_of_the_last_layer():
    head = build_head(test_cfg=dict(max_per_img=3))
    fix_weights(head)
    hidden = torch.zeros(2, 1, 3, 4)
    hidden[0] = torch.randn(1, 3, 4)  # an earlier layer: ignored
    hidden[1, 0, :, :2] = torch.tensor([[2., -1.], [.5, 1.], [-3., 1.5]])
    boxes = torch.tensor([[[.5, .5, .2, .4], [.05, .9, .2, .4], [.25, .25, .1, .1]]])
    references = [torch.rand(1, 3, 2), boxes, torch.rand(1, 3, 4)]
    meta = dict(img_shape=(100, 200), scale_factor=(2.0, 0.5))
    sample = make_det_sample([], img_shape=(100, 200))
    sample.set_metainfo(dict(scale_factor=(2.0, 0.5)))
    result = head.predict(hidden, references, [sample], rescale=False)[0]
    assert isinstance(result, InstanceData)
    # Pairs by sigmoid score: (query 0, class 0) 2.0, (query 2, class 1) 1.5,
    # (query 1, class 1) 1.0; a query may appear with several classes.
    torch.testing.assert_close(result.scores, torch.sigmoid(torch.tensor([2., 1.5, 1.])))
    assert result.labels.tolist() == [0, 1, 1] and result.labels.dtype == torch.long
    torch.testing.assert_close(result.bboxes, torch.tensor([
        [80., 30., 120., 70.],  # query 0
        [40., 20., 60., 30.],  # query 2
        [0., 70., 30., 100.],  # query 1: [-10, 70, 30, 110] clamped to the image
    ]))
    rescaled = head.predict(hidden, references, [sample])[0]  # rescale=True by default
    torch.testing.assert_close(rescaled.bboxes[0], torch.tensor([40., 60., 60., 140.]))
    # predict_by_feat keeps mmdetection's default rescale=False.
    outs = head(hidden, references)
    by_feat = head.predict_by_feat(*outs, batch_img_metas=[meta])[0]
    torch.testing.assert_close(by_feat.bboxes, result.bboxes)


def test_bad_references():
    head = build_head()
    with pytest.raises(ValueError, match='references must end with 2'):
        head(torch.randn(1, 1, 2, 4), [torch.rand(1, 2, 3)])
