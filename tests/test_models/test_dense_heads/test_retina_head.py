"""RetinaHead: layers and keys, focal-loss targets, and multi-class predictions."""
import math

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import RetinaHead
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

STRIDES = [8, 16, 32, 64, 128]
FEAT = 8  # channels of the tiny feature maps

TRAIN_CFG = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                  ignore_iof_thr=-1),
    sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)
FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)


def make_head(**kwargs) -> RetinaHead:
    """A small RetinaNet head with the standard anchors, losses and train/test configs."""
    cfg = dict(type='RetinaHead', num_classes=3, in_channels=FEAT, feat_channels=FEAT,
               stacked_convs=2, loss_cls=FOCAL, loss_bbox=dict(type='L1Loss', loss_weight=1.0),
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def make_one_anchor_head(cls_bias, reg_bias=0.0, **kwargs) -> RetinaHead:
    """No tower, one 16x16 anchor per position on a single stride-16 level, and constant
    predictions: every position gets logits ``cls_bias`` and deltas ``reg_bias``."""
    head = make_head(num_classes=2, stacked_convs=0,
                     anchor_generator=dict(type='AnchorGenerator', scales=[1], ratios=[1.0],
                                           strides=[16]), **kwargs)
    with torch.no_grad():
        head.retina_cls.weight.zero_()
        head.retina_cls.bias.copy_(torch.tensor(cls_bias))
        head.retina_reg.weight.zero_()
        head.retina_reg.bias.fill_(reg_bias)
    return head


def make_sample(bboxes, labels, img_shape=(64, 64), scale_factor=(1.0, 1.0)) -> DetDataSample:
    bboxes = torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4)
    sample = DetDataSample(metainfo=dict(img_shape=img_shape, pad_shape=img_shape,
                                         ori_shape=img_shape, scale_factor=scale_factor))
    sample.gt_instances = InstanceData(bboxes=bboxes,
                                       labels=torch.as_tensor(labels, dtype=torch.long))
    return sample


def make_feats(batch: int = 2, img: int = 64):
    return tuple(torch.rand(batch, FEAT, math.ceil(img / s), math.ceil(img / s))
                 for s in STRIDES)


def total(losses: dict) -> torch.Tensor:
    return sum(sum(level_losses) for level_losses in losses.values())


# ----------------------------------------------------------------------------- layers


def test_state_dict_keys_and_shapes_match_mmdet():
    head = RetinaHead(num_classes=80, in_channels=256)
    expected = {}
    for tower in ('cls_convs', 'reg_convs'):
        for i in range(4):
            expected[f'{tower}.{i}.conv.weight'] = (256, 256, 3, 3)
            expected[f'{tower}.{i}.conv.bias'] = (256, )
    # 9 anchors per position: 3 octave scales x 3 ratios; 80 classes, no background.
    expected.update({'retina_cls.weight': (720, 256, 3, 3), 'retina_cls.bias': (720, ),
                     'retina_reg.weight': (36, 256, 3, 3), 'retina_reg.bias': (36, )})
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == expected


def test_default_anchors_are_three_octave_scales_of_three_ratios():
    head = RetinaHead(num_classes=80, in_channels=256)
    assert head.num_base_priors == 9
    assert head.prior_generator.strides == [(8, 8), (16, 16), (32, 32), (64, 64), (128, 128)]
    # P3 (stride 8) anchors are 8 * 4 * 2**(i/3) pixels on a side (as squares); a ratio
    # changes the shape but keeps the area.
    base = head.prior_generator.base_anchors[0]  # [9, 4]
    areas = ((base[:, 2] - base[:, 0]) * (base[:, 3] - base[:, 1])).tolist()
    expected = sorted([(32 * 2**(i / 3))**2 for i in range(3)] * 3)
    assert sorted(areas) == pytest.approx(expected, rel=1e-4)


def test_norm_cfg_adds_norm_layers_and_drops_conv_bias():
    head = make_head(norm_cfg=dict(type='GN', num_groups=4))
    keys = set(head.state_dict())
    assert {'cls_convs.0.gn.weight', 'cls_convs.0.gn.bias', 'reg_convs.1.gn.weight'} <= keys
    assert 'cls_convs.0.conv.bias' not in keys  # the norm layer makes the bias redundant


def test_zero_stacked_convs_predicts_from_the_input_features():
    head = make_head(stacked_convs=0, in_channels=FEAT, feat_channels=16)
    assert len(head.cls_convs) == 0 and len(head.reg_convs) == 0
    assert head.retina_cls.in_channels == FEAT
    cls_scores, bbox_preds = head(make_feats())
    assert cls_scores[0].shape == (2, 9 * 3, 8, 8)


def test_rejects_negative_stacked_convs():
    with pytest.raises(ValueError, match='stacked_convs must be a non-negative int'):
        make_head(stacked_convs=-1)


def test_forward_shapes_per_level():
    cls_scores, bbox_preds = make_head()(make_feats())
    sizes = [8, 4, 2, 1, 1]
    assert [tuple(c.shape) for c in cls_scores] == [(2, 9 * 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 9 * 4, s, s) for s in sizes]


def test_init_gives_every_class_a_prior_probability_of_0_01():
    head = RetinaHead(num_classes=80, in_channels=64, feat_channels=64)
    head.init_weights()
    # bias = -log((1 - 0.01) / 0.01), so sigmoid(bias) = 0.01
    assert torch.allclose(head.retina_cls.bias, torch.full((720, ), -math.log(99)))
    assert torch.all(head.retina_reg.bias == 0)
    assert head.cls_convs[0].conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert head.retina_cls.weight.std().item() == pytest.approx(0.01, rel=0.1)


# ----------------------------------------------------------------------------- loss


def test_focal_and_l1_loss_on_a_hand_made_case():
    # A 32x32 image, one 2x2 stride-16 level: anchors of 16x16 centred on (0|16, 0|16).
    # The gt box equals anchor 3 (IoU 1): one positive of class 1; the others have IoU 0
    # with it, so they are negatives; avg_factor = 1 positive.
    head = make_one_anchor_head(cls_bias=[0.0, 0.0], reg_bias=0.1)
    feats = (torch.zeros(1, FEAT, 2, 2), )
    losses = head.loss(feats, [make_sample([[8, 8, 24, 24]], [1], img_shape=(32, 32))])

    # Every logit is 0, so p = 0.5: the positive (anchor, class 1) element costs
    # alpha * (1 - p)^2 * -log(p); the other 7 elements are negatives costing
    # (1 - alpha) * p^2 * -log(1 - p).
    p, alpha = 0.5, 0.25
    expected_cls = alpha * (1 - p)**2 * -math.log(p) + 7 * (1 - alpha) * p**2 * -math.log(1 - p)
    assert losses['loss_cls'][0].item() == pytest.approx(expected_cls, rel=1e-5)
    # The target deltas are 0 (anchor == gt); the prediction is 0.1 in each of 4 coordinates.
    assert losses['loss_bbox'][0].item() == pytest.approx(0.4, rel=1e-5)


def test_loss_is_per_level_and_finite_with_standard_anchors():
    head = make_head()
    losses = head.loss(make_feats(), [
        make_sample([[8, 8, 40, 40], [30, 20, 62, 60]], [0, 2]),
        make_sample([[0, 0, 63, 31]], [1])
    ])
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert all(len(v) == len(STRIDES) for v in losses.values())
    assert all(torch.isfinite(loss) and loss.dim() == 0 for v in losses.values() for loss in v)
    assert sum(losses['loss_bbox']) > 0


def test_image_without_gt_gives_only_negative_classification_loss():
    losses = make_head().loss(make_feats(1), [make_sample(torch.zeros(0, 4), [])])
    assert sum(losses['loss_bbox']).item() == 0
    loss_cls = sum(losses['loss_cls'])
    assert torch.isfinite(loss_cls) and loss_cls > 0  # every anchor is a negative
    total(losses).backward()  # the graph is intact even without positives


def test_degenerate_gt_boxes_do_not_give_nan():
    head = make_head()
    sample = make_sample([[10, 10, 10, 30], [20, 20, 20, 20], [5, 5, 50, 50]], [0, 1, 2])
    losses = head.loss(make_feats(1), [sample])
    assert all(torch.isfinite(loss) for v in losses.values() for loss in v)
    total(losses).backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)

    # Zero-area boxes cannot be regressed to: alone, they leave no positive anchor.
    only_degenerate = make_sample([[10, 10, 10, 30], [20, 20, 20, 20]], [0, 1])
    losses = head.loss(make_feats(1), [only_degenerate])
    assert sum(losses['loss_bbox']).item() == 0


def test_loss_needs_train_cfg():
    head = make_head(train_cfg=None)
    with pytest.raises(ValueError, match='without train_cfg'):
        head.loss(make_feats(1), [make_sample([[8, 8, 40, 40]], [0])])


# ----------------------------------------------------------------------------- predict


def expected_anchor_boxes(scale: float = 1.0) -> torch.Tensor:
    # The four 16x16 anchors of a 2x2 stride-16 level, clipped to the 32x32 image.
    # Rows in sort_rows order.
    boxes = torch.tensor([[0, 0, 8, 8], [0, 8, 8, 24], [8, 0, 24, 8], [8, 8, 24, 24]],
                         dtype=torch.float32)
    return boxes * scale


def sort_rows(boxes: torch.Tensor) -> torch.Tensor:
    order = sorted(range(len(boxes)), key=lambda i: boxes[i].tolist())
    return boxes[order]


def test_predict_keeps_classes_above_score_thr_and_rescales_to_original_image():
    # Class 0 scores sigmoid(-10) < score_thr, class 1 sigmoid(5) everywhere; zero deltas.
    head = make_one_anchor_head(cls_bias=[-10.0, 5.0])
    feats = (torch.zeros(1, FEAT, 2, 2), )
    sample = make_sample(torch.zeros(0, 4), [], img_shape=(32, 32), scale_factor=(2.0, 2.0))
    sample.set_metainfo(dict(ori_shape=(16, 16)))

    resized = head.predict(feats, [sample], rescale=False)[0]
    original = head.predict(feats, [sample], rescale=True)[0]

    assert torch.equal(resized.labels, torch.ones(4, dtype=torch.long))
    assert torch.allclose(resized.scores, torch.full((4, ), torch.sigmoid(torch.tensor(5.0))))
    # The clipped anchors do not overlap, so NMS keeps all four.
    assert torch.allclose(sort_rows(resized.bboxes), expected_anchor_boxes())
    # scale_factor 2 means the input was twice the original: boxes halve.
    assert torch.allclose(sort_rows(original.bboxes), expected_anchor_boxes(0.5))
    assert original.bboxes.max() <= 16


def test_predict_max_per_img_and_empty_result():
    head = make_one_anchor_head(cls_bias=[-10.0, 5.0])
    feats = (torch.zeros(1, FEAT, 2, 2), )
    sample = make_sample(torch.zeros(0, 4), [], img_shape=(32, 32))
    cfg = ConfigDict(TEST_CFG, max_per_img=2)
    assert len(head.predict_by_feat(*head(feats), batch_img_metas=[sample.metainfo],
                                    cfg=cfg)[0]) == 2

    # Every score below score_thr: an empty but well-formed result.
    quiet = make_one_anchor_head(cls_bias=[-10.0, -10.0])
    result = quiet.predict(feats, [sample])[0]
    assert result.bboxes.shape == (0, 4)
    assert result.scores.shape == (0, ) and result.labels.shape == (0, )


def test_predict_suppresses_overlaps_within_a_class_only():
    # Two levels over the same 16x16 image region: stride 16 and a second stride-16 level.
    head = make_head(num_classes=2, stacked_convs=0,
                     anchor_generator=dict(type='AnchorGenerator', scales=[1], ratios=[1.0],
                                           strides=[16, 16]))
    with torch.no_grad():
        head.retina_cls.weight.zero_()
        head.retina_reg.weight.zero_()
        head.retina_reg.bias.zero_()
    feats = (torch.zeros(1, FEAT, 1, 1), torch.zeros(1, FEAT, 1, 1))
    cls_scores, bbox_preds = head(feats)
    # Same box on both levels; the first says class 0 (0.9), the second class 0 (0.8) and
    # class 1 (0.7).
    cls_scores = [torch.logit(torch.tensor([0.9, 0.01])).view(1, 2, 1, 1),
                  torch.logit(torch.tensor([0.8, 0.7])).view(1, 2, 1, 1)]
    meta = dict(img_shape=(16, 16), scale_factor=(1.0, 1.0))
    result = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[meta])[0]
    assert result.labels.tolist() == [0, 1]  # the 0.8 duplicate of class 0 is suppressed
    assert result.scores.tolist() == pytest.approx([0.9, 0.7])
