"""SSDHead: mmdetection's keys (SSD300 and the SSDLite depthwise variant), defaults, hard
negative mining and the smooth-L1 term by hand, per-image loss lists normalised over the
batch, the channel layout the targets are matched with, and predictions."""
import math

import pytest
import torch
from helpers_ssd_keys import SSD300_CHANNELS, SSD300_PRIORS, ssd_head_keys
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import AnchorHead, SSDHead
from mmdet_lite.registry import MODELS

# configs/_base_/models/ssd300.py
SSD300_ANCHORS = dict(type='SSDAnchorGenerator', scale_major=False, input_size=300,
                      basesize_ratio_range=(0.15, 0.9), strides=[8, 16, 32, 64, 100, 300],
                      ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]])
SSDLITE_ANCHORS = dict(type='SSDAnchorGenerator', scale_major=False,
                       strides=[16, 32, 64, 107, 160, 320], ratios=[[2, 3]] * 6,
                       min_sizes=[48, 100, 150, 202, 253, 304],
                       max_sizes=[100, 150, 202, 253, 304, 320])
TRAIN_CFG = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.,
                  ignore_iof_thr=-1, gt_max_assign_all=False),
    sampler=dict(type='PseudoSampler'), smoothl1_beta=1., allowed_border=-1, pos_weight=-1,
    neg_pos_ratio=3, debug=False)
TEST_CFG = dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
                score_thr=0.02, max_per_img=200)
# Two small levels: 4 anchors per position (stride 8, sizes 16 / 32) and 6 (stride 16,
# sizes 32 / 64); a 48x48 image gives 6x6 and 3x3 maps.
TINY_ANCHORS = dict(type='SSDAnchorGenerator', scale_major=False, strides=[8, 16],
                    ratios=[[2], [2, 3]], min_sizes=[16, 32], max_sizes=[32, 64])


def tiny_head(num_classes=2, **train_overrides) -> SSDHead:
    train_cfg = ConfigDict(TRAIN_CFG)
    train_cfg.update(train_overrides)
    return SSDHead(num_classes=num_classes, in_channels=(4, 8), anchor_generator=TINY_ANCHORS,
                   bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.] * 4,
                                   target_stds=[0.1, 0.1, 0.2, 0.2]),
                   train_cfg=train_cfg, test_cfg=ConfigDict(TEST_CFG))


def img_meta(size=48):
    return dict(img_shape=(size, size), pad_shape=(size, size), scale_factor=(1., 1.))


def gt(bboxes, labels):
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


# ----------------------------------------------------------------------------- layers
def test_ssd300_head_keys_and_shapes():
    head = SSDHead(anchor_generator=SSD300_ANCHORS)
    assert shapes_of(head) == {k[len('h.'):]: v for k, v in ssd_head_keys(
        'h', SSD300_CHANNELS, SSD300_PRIORS).items()}
    assert shapes_of(head)['cls_convs.1.0.weight'] == (6 * 81, 1024, 3, 3)
    assert head.num_base_priors == [4, 6, 6, 6, 4, 4]


def test_ssdlite_depthwise_head_keys_and_shapes():
    channels = (96, 1280, 512, 256, 256, 128)
    head = SSDHead(in_channels=channels, use_depthwise=True,
                   norm_cfg=dict(type='BN', eps=0.001, momentum=0.03),
                   act_cfg=dict(type='ReLU6'), anchor_generator=SSDLITE_ANCHORS)
    assert shapes_of(head) == {k[len('h.'):]: v for k, v in ssd_head_keys(
        'h', channels, (6, ) * 6, depthwise_bn=True).items()}
    assert head.cls_convs[0][0].conv.groups == 96
    assert head.cls_convs[0][1].kernel_size == (1, 1) and head.cls_convs[0][1].padding == (0, 0)
    assert head.cls_convs[0][0].bn.eps == 0.001
    assert isinstance(head.cls_convs[0][0].activate, torch.nn.ReLU6)


@pytest.mark.parametrize('depthwise', [False, True])
def test_stacked_convs_tower_keys(depthwise):
    norm = dict(type='BN') if depthwise else None
    head = SSDHead(num_classes=3, in_channels=(8, 16), stacked_convs=2, feat_channels=12,
                   use_depthwise=depthwise, norm_cfg=norm, anchor_generator=TINY_ANCHORS)
    expected = ssd_head_keys('h', (8, 16), (4, 6), 3, depthwise_bn=depthwise,
                             stacked_convs=2, feat_channels=12)
    assert shapes_of(head) == {k[len('h.'):]: v for k, v in expected.items()}


def test_defaults_and_registration():
    head = MODELS.build(dict(type='SSDHead', anchor_generator=SSD300_ANCHORS))
    assert isinstance(head, AnchorHead)
    assert (head.num_classes, head.stacked_convs, head.feat_channels, head.use_depthwise) == (
        80, 0, 256, False)
    assert head.in_channels == (512, 1024, 512, 256, 256, 256)
    assert head.cls_out_channels == 81 and head.use_sigmoid_cls is False
    assert head.init_cfg == dict(type='Xavier', layer='Conv2d', distribution='uniform', bias=0)
    assert head.bbox_coder.stds == (1.0, 1.0, 1.0, 1.0) and head.bbox_coder.clip_border
    assert head.reg_decoded_bbox is False
    assert not hasattr(head, 'assigner')  # no train_cfg: nothing for training is built
    # mmdetection's default anchor generator (300 with a range from 0.1) is rejected by its
    # own SSDAnchorGenerator: SSDHead() cannot be built without one
    with pytest.raises(ValueError, match='basesize_ratio_range'):
        SSDHead()


def test_forward_shapes_per_level():
    head = tiny_head(num_classes=2)
    cls_scores, bbox_preds = head((torch.rand(2, 4, 6, 6), torch.rand(2, 8, 3, 3)))
    assert [tuple(c.shape) for c in cls_scores] == [(2, 4 * 3, 6, 6), (2, 6 * 3, 3, 3)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4 * 4, 6, 6), (2, 6 * 4, 3, 3)]


# ----------------------------------------------------------------------------- loss by hand
def _mining_case():
    """7 anchors, 2 classes (+ background = 2): anchor 0 positive (class 0); anchors 1-5
    background with cross entropies log 3, 4, 8, 16, 32; anchor 6 background but ignored
    (label weight 0) with a huge loss."""
    ln = math.log
    cls_score = torch.tensor([[ln(2), 0., 0.],  # positive, CE(class 0) = log 2
                              [0., 0., 0.],  # CE(bg) = log 3
                              [ln(2), 0., 0.],  # log 4
                              [ln(6), 0., 0.],  # log 8
                              [ln(14), 0., 0.],  # log 16
                              [ln(30), 0., 0.],  # log 32
                              [ln(1000), 0., 0.]], requires_grad=True)
    labels = torch.tensor([0, 2, 2, 2, 2, 2, 2])
    label_weights = torch.tensor([1., 1., 1., 1., 1., 1., 0.])
    bbox_pred = torch.zeros(7, 4, requires_grad=True)
    bbox_targets = torch.zeros(7, 4)
    bbox_targets[0] = torch.tensor([0.5, -2., 0., 0.])
    bbox_targets[1:] = 7.  # not positive: weight 0
    bbox_weights = torch.zeros(7, 4)
    bbox_weights[0] = 1.
    anchors = torch.tensor([[0., 0., 8., 8.]]).expand(7, 4)
    return cls_score, bbox_pred, anchors, labels, label_weights, bbox_targets, bbox_weights


def test_hard_negative_mining_keeps_the_top_ratio_times_positives():
    head = tiny_head()
    cls_score, bbox_pred, *rest = _mining_case()
    loss_cls, loss_bbox = head.loss_by_feat_single(cls_score, bbox_pred, *rest, avg_factor=1)
    # positive log 2, plus the 3 hardest negatives: log 32 + log 16 + log 8 = 12 log 2
    assert loss_cls.shape == (1, )
    torch.testing.assert_close(loss_cls, torch.tensor([13 * math.log(2)]))
    # smooth L1 (beta 1) of the positive's deltas: 0.5 * 0.5^2 + (2 - 0.5) = 1.625
    assert loss_bbox.shape == ()
    torch.testing.assert_close(loss_bbox, torch.tensor(1.625))

    # only the mined negatives (and the positive) receive gradient
    loss_cls.sum().backward()
    touched = cls_score.grad.abs().sum(1) > 0
    assert touched.tolist() == [True, False, False, True, True, True, False]


def test_mining_normalises_by_avg_factor_and_caps_at_available_negatives():
    head = tiny_head()
    loss_cls, loss_bbox = head.loss_by_feat_single(*_mining_case(), avg_factor=2)
    torch.testing.assert_close(loss_cls, torch.tensor([6.5 * math.log(2)]))
    torch.testing.assert_close(loss_bbox, torch.tensor(0.8125))

    # ratio 10 wants 10 negatives, 6 exist: all are used (the ignored one adds 0)
    head = tiny_head(neg_pos_ratio=10)
    loss_cls, _ = head.loss_by_feat_single(*_mining_case(), avg_factor=1)
    torch.testing.assert_close(loss_cls, torch.tensor([math.log(2 * 3 * 4 * 8 * 16 * 32)]))


def test_smoothl1_beta_comes_from_train_cfg():
    head = tiny_head(smoothl1_beta=0.5)
    _, loss_bbox = head.loss_by_feat_single(*_mining_case(), avg_factor=1)
    # |0.5| is not below beta 0.5: 0.5 - 0.25; |2|: 2 - 0.25
    torch.testing.assert_close(loss_bbox, torch.tensor(2.0))


def test_no_positive_means_no_negative():
    head = tiny_head()
    cls_score, bbox_pred, anchors, labels, label_weights, bbox_targets, _ = _mining_case()
    labels = torch.full_like(labels, 2)
    loss_cls, loss_bbox = head.loss_by_feat_single(
        cls_score, bbox_pred, anchors, labels, label_weights, bbox_targets,
        torch.zeros(7, 4), avg_factor=1)
    assert loss_cls.item() == 0 and loss_bbox.item() == 0


# ----------------------------------------------------------------------------- loss_by_feat
def _outputs(head, batch):
    torch.manual_seed(0)
    return head((torch.randn(batch, 4, 6, 6), torch.randn(batch, 8, 3, 3)))


def test_loss_by_feat_returns_one_entry_per_image():
    head = tiny_head()
    cls_scores, bbox_preds = _outputs(head, 2)
    losses = head.loss_by_feat(cls_scores, bbox_preds,
                               [gt([[8, 8, 40, 40]], [1]), gt([], [])],
                               [img_meta(), img_meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert len(losses['loss_cls']) == len(losses['loss_bbox']) == 2  # images, not levels
    assert [tuple(v.shape) for v in losses['loss_cls']] == [(1, ), (1, )]
    assert [tuple(v.shape) for v in losses['loss_bbox']] == [(), ()]
    assert losses['loss_cls'][0].item() > 0 and losses['loss_bbox'][0].item() > 0
    # the image without objects has no positives, hence no mined negatives
    assert losses['loss_cls'][1].item() == 0 and losses['loss_bbox'][1].item() == 0


def test_losses_are_normalised_by_the_positives_of_the_whole_batch():
    head = tiny_head()
    cls_scores, bbox_preds = _outputs(head, 1)
    image = [gt([[8, 8, 40, 40], [2, 4, 20, 22]], [1, 0])]
    alone = head.loss_by_feat(cls_scores, bbox_preds, image, [img_meta()])
    twice = head.loss_by_feat([c.expand(2, -1, -1, -1) for c in cls_scores],
                              [b.expand(2, -1, -1, -1) for b in bbox_preds], image * 2,
                              [img_meta(), img_meta()])
    for key in ('loss_cls', 'loss_bbox'):
        for value in twice[key]:
            torch.testing.assert_close(value * 2, alone[key][0])


def _maps_from_targets(head, labels, bbox_targets, featmap_sizes):
    """Score / delta maps that predict the given per-anchor targets, laid out as
    mmdetection's heads define channels: anchor-major, ``a * (C + 1) + class`` and
    ``a * 4 + coord``, anchors ordered (level, y, x, a)."""
    cls_scores, bbox_preds, start = [], [], 0
    for (h, w), priors in zip(featmap_sizes, head.num_base_priors):
        cls_map = torch.zeros(1, priors * head.cls_out_channels, h, w)
        reg_map = torch.zeros(1, priors * 4, h, w)
        for y in range(h):
            for x in range(w):
                for a in range(priors):
                    idx = start + (y * w + x) * priors + a
                    cls_map[0, a * head.cls_out_channels + labels[idx], y, x] = 30.
                    reg_map[0, a * 4:(a + 1) * 4, y, x] = bbox_targets[idx]
        start += h * w * priors
        cls_scores.append(cls_map)
        bbox_preds.append(reg_map)
    return cls_scores, bbox_preds


def test_scores_and_deltas_are_matched_to_targets_in_mmdetection_channel_order():
    head = tiny_head()
    sizes = [(6, 6), (3, 3)]
    anchors, valid = head.get_anchors(sizes, [img_meta()])
    image = [gt([[8, 8, 40, 40], [2, 4, 20, 22]], [1, 0])]
    labels, _, bbox_targets, _, _ = head.get_targets(anchors, valid, image, [img_meta()])
    labels, bbox_targets = torch.cat(labels, 1)[0], torch.cat(bbox_targets, 1)[0]
    assert (labels < 2).sum() >= 2  # some positives of both objects
    cls_scores, bbox_preds = _maps_from_targets(head, labels, bbox_targets, sizes)
    losses = head.loss_by_feat(cls_scores, bbox_preds, image, [img_meta()])
    assert losses['loss_cls'][0].item() < 1e-6
    assert losses['loss_bbox'][0].item() < 1e-6
    # the same maps with the anchors of one position swapped are penalised
    shuffled = [c.flip(-1) for c in cls_scores]
    assert head.loss_by_feat(shuffled, bbox_preds, image, [img_meta()])['loss_cls'][0] > 1.


def test_level_count_must_match_the_anchor_generator():
    head = tiny_head()
    cls_scores, bbox_preds = _outputs(head, 1)
    with pytest.raises(AssertionError, match='levels'):
        head.loss_by_feat(cls_scores[:1], bbox_preds[:1], [gt([[8, 8, 40, 40]], [1])],
                          [img_meta()])


def test_reg_decoded_bbox_regresses_boxes():
    head = tiny_head()
    head.reg_decoded_bbox = True
    anchors = torch.tensor([[0., 0., 10., 10.], [5., 5., 15., 15.]])
    labels = torch.tensor([0, 2])
    # zero deltas decode to the anchors; target box off by (1, 0, 3, 0) for the positive
    targets = torch.tensor([[1., 0., 13., 10.], [0., 0., 0., 0.]])
    weights = torch.tensor([[1.] * 4, [0.] * 4])
    _, loss_bbox = head.loss_by_feat_single(torch.zeros(2, 3), torch.zeros(2, 4), anchors,
                                            labels, torch.ones(2), targets, weights,
                                            avg_factor=1)
    # smooth L1 beta 1: 0.5 * 1 + 0 + (3 - 0.5) + 0
    torch.testing.assert_close(loss_bbox, torch.tensor(3.0))


# ----------------------------------------------------------------------------- predict
def test_predict_softmax_scores_without_background():
    head = tiny_head()
    head.test_cfg = ConfigDict(TEST_CFG, score_thr=0.5)
    cls_scores = [torch.zeros(1, 4 * 3, 6, 6), torch.zeros(1, 6 * 3, 3, 3)]
    bbox_preds = [torch.zeros(1, 4 * 4, 6, 6), torch.zeros(1, 6 * 4, 3, 3)]
    # level 1, position (y=1, x=1), anchor 0 (32x32 around (24, 24)): class 1 logit 5
    cls_scores[1][0, 0 * 3 + 1, 1, 1] = 5.
    results = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[img_meta()])
    assert len(results) == 1 and len(results[0]) == 1
    det = results[0]
    torch.testing.assert_close(det.bboxes, torch.tensor([[8., 8., 40., 40.]]))
    assert det.labels.tolist() == [1]
    torch.testing.assert_close(det.scores, torch.tensor([math.exp(5) / (math.exp(5) + 2)]))

    # with SSD's score_thr 0.02 every anchor's 1/3 class scores pass; max_per_img caps them
    head.test_cfg = ConfigDict(TEST_CFG, max_per_img=7)
    results = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=[img_meta()])
    assert len(results[0]) == 7 and results[0].scores.max() < 1
