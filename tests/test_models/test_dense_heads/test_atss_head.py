"""ATSSHead: mmdetection's arguments and keys, forward contract, centerness and ATSS targets by
hand, losses against independent formulas (torchvision's focal and GIoU losses), predict."""
import inspect
import math

import pytest
import torch
from helpers_atss_gfl_keys import atss_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from mmdet_lite.models.dense_heads import AnchorHead, ATSSHead
from mmdet_lite.models.dense_heads.atss_head import ATSSHeadError
from mmdet_lite.registry import MODELS

TRAIN_CFG = dict(assigner=dict(type='ATSSAssigner', topk=4), allowed_border=-1, pos_weight=-1,
                 debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)
STDS = (0.1, 0.1, 0.2, 0.2)


def one_level_head(**kwargs) -> ATSSHead:
    """3 classes, one stride-8 level of 16x16 anchors centred at (8 x, 8 y); the COCO
    config's coder and losses; topk=4 candidates."""
    cfg = dict(type='ATSSHead', num_classes=3, in_channels=32, feat_channels=32,
               stacked_convs=2,
               anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                                     scales_per_octave=1, strides=[8]),
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                               target_stds=list(STDS)),
               loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                             loss_weight=1.0),
               loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def meta(img_shape=(32, 32)) -> dict:
    return dict(img_shape=img_shape, pad_shape=img_shape, batch_input_shape=img_shape,
                ori_shape=img_shape, scale_factor=(1.0, 1.0))


def gts(box, label=1) -> InstanceData:
    return InstanceData(bboxes=torch.tensor([box], dtype=torch.float32),
                        labels=torch.tensor([label]))


# Two 32x32 images, each with one gt around the anchor centred at (8, 8), anchor index 5 of
# the 4x4 grid (row 1, column 1). With topk=4 the candidates are that anchor and three of its
# four neighbours at distance 8 (all with the same IoU with the first gt).
#   image 0, gt (2, 2, 14, 14): IoUs 0.5625 and 3 x 72/328; threshold mean + std = 0.477.
#   image 1, gt (2, 2, 14, 18): IoUs 168/280 = 0.6 (anchor 5), 120/328 (below), 2 x 84/364;
#   threshold 0.531.
# So in both images anchor 5 is the only positive.
GT_BOXES = [(2., 2., 14., 14.), (2., 2., 14., 18.)]
POS = 5
ANCHOR_5 = (0., 0., 16., 16.)


# ----------------------------------------------------------------------------- definition


def test_arguments_and_defaults_are_mmdetections():
    params = inspect.signature(ATSSHead.__init__).parameters
    assert list(params)[:10] == ['self', 'num_classes', 'in_channels', 'pred_kernel_size',
                                 'stacked_convs', 'conv_cfg', 'norm_cfg', 'reg_decoded_bbox',
                                 'loss_centerness', 'init_cfg']
    defaults = {name: p.default for name, p in params.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == dict(
        pred_kernel_size=3, stacked_convs=4, conv_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True), reg_decoded_bbox=True,
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.01,
                      override=dict(type='Normal', name='atss_cls', std=0.01,
                                    bias_prob=0.01)))
    assert issubclass(ATSSHead, AnchorHead)
    assert MODELS.get('ATSSHead') is ATSSHead


def test_keys_of_the_coco_head():
    head = MODELS.build(dict(
        type='ATSSHead', num_classes=80, in_channels=256, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16, 32, 64, 128])))
    expected = atss_head(prefix='', in_channels=256, feat_channels=256, num_classes=80)
    assert len(expected) == 4 * 2 * 3 + 3 * 2 + 5
    assert shapes_of(head) == expected
    assert head.sampling is False and head.reg_decoded_bbox is True
    assert type(head.relu).__name__ == 'ReLU' and head.relu.inplace


def test_keys_with_several_anchors_and_a_1x1_predictor():
    # AnchorHead's default generator: 3 scales x 3 ratios = 9 anchors per position
    head = MODELS.build(dict(type='ATSSHead', num_classes=2, in_channels=8, feat_channels=32,
                             stacked_convs=1, pred_kernel_size=1))
    expected = atss_head(prefix='', in_channels=8, feat_channels=32, num_classes=2,
                         stacked_convs=1, num_anchors=9, pred_kernel_size=1)
    assert shapes_of(head) == expected


def test_forward_gives_three_maps_per_level():
    head = MODELS.build(dict(
        type='ATSSHead', num_classes=3, in_channels=8, feat_channels=32, stacked_convs=1,
        anchor_generator=dict(type='AnchorGenerator', ratios=[0.5, 1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16])))
    feats = (torch.rand(2, 8, 6, 5), torch.rand(2, 8, 3, 3))
    cls_scores, bbox_preds, centernesses = head(feats)
    assert [c.shape for c in cls_scores] == [(2, 6, 6, 5), (2, 6, 3, 3)]
    assert [b.shape for b in bbox_preds] == [(2, 8, 6, 5), (2, 8, 3, 3)]
    assert [c.shape for c in centernesses] == [(2, 2, 6, 5), (2, 2, 3, 3)]
    # each level's box deltas go through its own Scale
    with torch.no_grad():
        base = head(feats)[1][1].clone()
        head.scales[1].scale.fill_(3.0)
        assert torch.allclose(head(feats)[1][1], 3 * base)
        assert torch.allclose(head(feats)[1][0], bbox_preds[0])


# ----------------------------------------------------------------------------- targets


def test_centerness_targets_by_hand():
    head = one_level_head()
    anchors = torch.tensor([[0., 0., 20., 20.],  # centre (10, 10)
                            [2., 4., 6., 8.],  # centre (4, 6)
                            [4., 4., 12., 12.]])  # centre (8, 8)
    gt = torch.tensor([[0., 0., 40., 20.], [0., 0., 16., 8.], [0., 0., 16., 16.]])
    # l, r, t, b = 10, 30, 10, 10 / 4, 12, 6, 2 / 8, 8, 8, 8
    expected = torch.tensor([math.sqrt(10 / 30 * 10 / 10), math.sqrt(4 / 12 * 2 / 6), 1.0])
    assert torch.allclose(head.centerness_target(anchors, gt), expected)


def test_centerness_of_a_centre_on_a_flat_gt_is_an_assertion_error():
    head = one_level_head()
    with pytest.raises(AssertionError, match='NaN'):
        head.centerness_target(torch.tensor([[0., 0., 8., 8.]]), torch.tensor([[4., 0., 4., 8.]]))
    assert issubclass(ATSSHeadError, ValueError)


def targets(head, boxes=GT_BOXES, img_shape=(32, 32)):
    anchor_list, valid_list = head.get_anchors([(4, 4)], [meta(img_shape)] * len(boxes))
    return head.get_targets(anchor_list, valid_list, [gts(b) for b in boxes],
                            [meta(img_shape)] * len(boxes))


def test_targets_of_the_hand_computed_assignment():
    head = one_level_head()
    anchors, labels, label_weights, bbox_targets, bbox_weights, avg_factor = targets(head)
    assert len(labels) == 1  # one level
    anchors, labels, label_weights = anchors[0], labels[0], label_weights[0]
    bbox_targets, bbox_weights = bbox_targets[0], bbox_weights[0]
    assert anchors.shape == (2, 16, 4) and labels.shape == (2, 16)
    # anchors of the grid: 16x16 boxes centred at (8 x, 8 y), x fastest
    assert torch.equal(anchors[0, POS], torch.tensor(ANCHOR_5))
    assert torch.equal(anchors[1, 2], torch.tensor([8., -8., 24., 8.]))

    expected_labels = torch.full((2, 16), 3)  # background = num_classes
    expected_labels[:, POS] = 1
    assert torch.equal(labels, expected_labels)
    assert torch.equal(label_weights, torch.ones(2, 16))  # every anchor is pos or neg
    # reg_decoded_bbox=True: the gt boxes themselves
    expected_targets = torch.zeros(2, 16, 4)
    expected_targets[0, POS] = torch.tensor(GT_BOXES[0])
    expected_targets[1, POS] = torch.tensor(GT_BOXES[1])
    assert torch.equal(bbox_targets, expected_targets)
    assert torch.equal(bbox_weights, (expected_targets != 0).float())
    assert avg_factor == 2  # positives over both images


def test_targets_are_deltas_without_reg_decoded_bbox():
    head = one_level_head(reg_decoded_bbox=False)
    bbox_targets = targets(head, boxes=GT_BOXES[:1])[3][0]
    # anchor (0, 0, 16, 16) -> gt (2, 2, 14, 14): same centre, w and h 12 / 16
    log_ratio = math.log(12 / 16)
    expected = torch.tensor([0., 0., log_ratio / STDS[2], log_ratio / STDS[3]])
    assert torch.allclose(bbox_targets[0, POS], expected, atol=1e-6)
    assert bbox_targets[0].abs().sum(1).nonzero().flatten().tolist() == [POS]


def test_pos_weight_and_anchors_outside_the_image():
    head = one_level_head(train_cfg=ConfigDict(TRAIN_CFG, allowed_border=0, pos_weight=2.0))
    anchors, labels, label_weights = targets(head, boxes=GT_BOXES[:1])[:3]
    grid = head.get_anchors([(4, 4)], [meta()])[0][0][0]
    inside = ((grid[:, :2] >= 0) & (grid[:, 2:] < 32)).all(1)
    # only anchors 5 (0..16) and 6, 9, 10 (8..24) lie inside a 32x32 image
    assert inside.nonzero().flatten().tolist() == [5, 6, 9, 10]
    assert label_weights[0][0, POS] == 2.0
    assert torch.equal(label_weights[0][0, ~inside], torch.zeros(12))
    assert torch.equal(labels[0][0, ~inside], torch.full((12, ), 3))
    # the returned anchors are scattered back with zeros for the outside ones
    assert torch.equal(anchors[0][0, inside], grid[inside])
    assert torch.equal(anchors[0][0, ~inside], torch.zeros(12, 4))


def test_num_level_anchors_inside():
    head = one_level_head()
    flags = torch.tensor([1, 0, 1, 1, 1, 0], dtype=torch.bool)
    assert head.get_num_level_anchors_inside([3, 2, 1], flags) == [2, 2, 0]


# ----------------------------------------------------------------------------- losses


def zero_outputs(num_imgs=2):
    return ([torch.zeros(num_imgs, 3, 4, 4, requires_grad=True)],
            [torch.zeros(num_imgs, 4, 4, 4, requires_grad=True)],
            [torch.zeros(num_imgs, 1, 4, 4, requires_grad=True)])


def test_losses_match_independent_formulas():
    head = one_level_head()
    outputs = zero_outputs()
    losses = head.loss_by_feat(*outputs, [gts(b) for b in GT_BOXES], [meta(), meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    assert all(len(v) == 1 for v in losses.values())

    # focal loss of every (anchor, class) with logit 0, over the 2 positives
    targets_onehot = torch.zeros(2 * 16, 3)
    targets_onehot[[POS, 16 + POS], 1] = 1
    focal = sigmoid_focal_loss(torch.zeros(32, 3), targets_onehot, alpha=0.25, gamma=2.0,
                               reduction='sum') / 2
    assert torch.allclose(losses['loss_cls'][0], focal)

    # zero deltas decode to the anchor; GIoU weighted by the centerness targets (1 for the
    # centred gt, sqrt(6/10) for the second), normalised by their sum; loss_weight 2
    anchor = torch.tensor([ANCHOR_5])
    giou = torch.stack([generalized_box_iou_loss(anchor, torch.tensor([b]))[0]
                        for b in GT_BOXES])
    weights = torch.tensor([1.0, math.sqrt(6 / 10)])
    assert torch.allclose(losses['loss_bbox'][0], 2 * (weights * giou).sum() / weights.sum())
    # BCE of logit 0 is ln 2 whatever the target; averaged over the 2 positives
    assert torch.allclose(losses['loss_centerness'][0], torch.tensor(math.log(2)))

    sum(v[0] for v in losses.values()).backward()
    assert all(o[0].grad is not None for o in outputs)


def test_the_box_loss_sees_the_decoded_deltas():
    head = one_level_head()
    cls_scores, bbox_preds, centernesses = zero_outputs(num_imgs=1)
    deltas = torch.tensor([0.5, -0.5, 1.0, 0.0])  # in units of the stds
    with torch.no_grad():
        bbox_preds[0][0, :, 1, 1] = deltas
    losses = head.loss_by_feat(cls_scores, bbox_preds, centernesses, [gts(GT_BOXES[0])],
                               [meta()])
    # the decoded box, by hand: centre (8 + 0.05 * 16, 8 - 0.05 * 16), w 16 e^0.2, h 16
    cx, cy, w, h = 8.8, 7.2, 16 * math.exp(0.2), 16.0
    box = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
    expected = 2 * generalized_box_iou_loss(box, torch.tensor([GT_BOXES[0]]))[0]
    assert torch.allclose(losses['loss_bbox'][0], expected, atol=1e-5)


def test_an_image_without_gts_has_zero_box_losses():
    head = one_level_head()
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    outputs = zero_outputs(num_imgs=2)
    losses = head.loss_by_feat(*outputs, [empty, gts(GT_BOXES[0])], [meta(), meta()])
    assert losses['loss_bbox'][0] > 0 and torch.isfinite(losses['loss_cls'][0])
    losses = head.loss_by_feat(*zero_outputs(num_imgs=1), [empty], [meta()])
    assert losses['loss_bbox'][0] == 0 and losses['loss_centerness'][0] == 0


def test_wrong_number_of_levels_is_an_assertion_error():
    head = one_level_head()
    cls_scores, bbox_preds, centernesses = zero_outputs()
    with pytest.raises(AssertionError, match='levels'):
        head.loss_by_feat(cls_scores * 2, bbox_preds * 2, centernesses * 2,
                          [gts(b) for b in GT_BOXES], [meta(), meta()])


def test_loss_needs_a_train_cfg():
    head = one_level_head(train_cfg=None)
    with pytest.raises(ValueError, match='train_cfg'):
        head.loss_by_feat(*zero_outputs(), [gts(b) for b in GT_BOXES], [meta(), meta()])


# ----------------------------------------------------------------------------- predict


def test_predict_scores_are_class_times_centerness():
    head = one_level_head().eval()
    cls_scores, bbox_preds, centernesses = ([o[0].detach()] for o in zero_outputs(1))
    cls_scores[0][:] = -10.0
    cls_scores[0][0, 2, 1, 1] = 2.0  # class 2 at anchor 5
    centernesses[0][0, 0, 1, 1] = 1.0
    bbox_preds[0][0, :, 1, 1] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # shift right by 0.8 px
    results = head.predict_by_feat(cls_scores, bbox_preds, centernesses,
                                   batch_img_metas=[meta()])
    assert len(results) == 1 and len(results[0]) == 1
    pred = results[0]
    expected_score = torch.sigmoid(torch.tensor(2.0)) * torch.sigmoid(torch.tensor(1.0))
    assert torch.allclose(pred.scores, expected_score.reshape(1))
    assert pred.labels.tolist() == [2]
    assert torch.allclose(pred.bboxes, torch.tensor([[0.8, 0., 16.8, 16.]]), atol=1e-5)
    assert box_iou(pred.bboxes, torch.tensor([ANCHOR_5]))[0, 0] > 0.9


def test_loss_overfits_one_image():
    torch.manual_seed(0)
    head = one_level_head()
    head.init_weights()
    feats = (torch.rand(1, 32, 4, 4), )
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    history = []
    for _ in range(20):
        losses = head.loss_by_feat(*head(feats), [gts(GT_BOXES[1])], [meta()])
        total = sum(sum(v) for v in losses.values())
        history.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1] < 0.7 * history[0]
