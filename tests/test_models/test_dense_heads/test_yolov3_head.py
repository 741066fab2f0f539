"""YOLOV3Head: mmdetection 3.3's defaults, keys and init; responsible cells, target maps (grid
cell, anchor, encoded offsets, one-hot smoothing, negatives) and the four losses against
hand-computed values; decoding and the conf_thr / score_thr order of predict."""
import inspect
import math

import pytest
import torch
from helpers_state_dict import shapes_of
from helpers_yolo_keys import yolov3_head
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import YOLOV3Head
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

# 64x64 input: levels (coarse first) of 2x2, 4x4 and 8x8 cells, 3 anchors each.
FEAT_SIZES = [(2, 2), (4, 4), (8, 8)]
NUM_PRIORS = [2 * 2 * 3, 4 * 4 * 3, 8 * 8 * 3]  # 12, 48, 192
# Square anchors small enough to reason about on a 64x64 image.
BASE_SIZES = [[(32, 32), (48, 48), (64, 64)], [(16, 16), (24, 24), (32, 32)],
              [(4, 4), (8, 8), (12, 12)]]
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, conf_thr=0.005,
                nms=dict(type='nms', iou_threshold=0.45), max_per_img=100)


def make_head(num_classes=4, one_hot_smoother=0., neg_iou_thr=0.5, **kwargs) -> YOLOV3Head:
    """The COCO config's head (sum reductions, loss weights 1/1/2/2) on tiny widths."""
    cfg = dict(
        type='YOLOV3Head', num_classes=num_classes, in_channels=[8, 8, 8],
        out_channels=[8, 8, 8],
        anchor_generator=dict(type='YOLOAnchorGenerator', base_sizes=BASE_SIZES,
                              strides=[32, 16, 8]),
        one_hot_smoother=one_hot_smoother,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0,
                      reduction='sum'),
        loss_conf=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0,
                       reduction='sum'),
        loss_xy=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=2.0,
                     reduction='sum'),
        loss_wh=dict(type='MSELoss', loss_weight=2.0, reduction='sum'),
        train_cfg=ConfigDict(assigner=dict(type='GridAssigner', pos_iou_thr=0.5,
                                           neg_iou_thr=neg_iou_thr, min_pos_iou=0)),
        test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def gt(bboxes, labels) -> InstanceData:
    return InstanceData(bboxes=torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.as_tensor(labels, dtype=torch.long))


def targets(head, gt_instances):
    """Target map [N, 5 + C] and negative map [N] of one image, all levels concatenated."""
    anchors = head.prior_generator.grid_priors(FEAT_SIZES)
    flags = head.responsible_flags(FEAT_SIZES, gt_instances.bboxes, 'cpu')
    target_maps, neg_maps = head.get_targets([anchors], [flags], [gt_instances])
    return torch.cat(target_maps, 1)[0], torch.cat(neg_maps, 1)[0]


def iou(a, b):
    """IoU of two (x1, y1, x2, y2) boxes, in plain Python."""
    iw = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def all_anchor_boxes():
    """Every prior of the three levels as a Python box, in (level, y, x, anchor) order."""
    boxes = []
    for (h, w), stride, sizes in zip(FEAT_SIZES, (32, 16, 8), BASE_SIZES):
        for y in range(h):
            for x in range(w):
                cx, cy = x * stride + stride / 2, y * stride + stride / 2
                boxes += [(cx - aw / 2, cy - ah / 2, cx + aw / 2, cy + ah / 2)
                          for aw, ah in sizes]
    return boxes


# ----------------------------------------------------------------------------- structure


def test_signature_defaults_match_mmdetection():
    params = inspect.signature(YOLOV3Head).parameters
    assert list(params) == [
        'num_classes', 'in_channels', 'out_channels', 'anchor_generator', 'bbox_coder',
        'featmap_strides', 'one_hot_smoother', 'conv_cfg', 'norm_cfg', 'act_cfg', 'loss_cls',
        'loss_conf', 'loss_xy', 'loss_wh', 'train_cfg', 'test_cfg']
    defaults = {k: p.default for k, p in params.items() if k not in ('num_classes',
                                                                     'in_channels')}
    bce = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)
    assert defaults == dict(
        out_channels=(1024, 512, 256),
        anchor_generator=dict(type='YOLOAnchorGenerator',
                              base_sizes=[[(116, 90), (156, 198), (373, 326)],
                                          [(30, 61), (62, 45), (59, 119)],
                                          [(10, 13), (16, 30), (33, 23)]],
                              strides=[32, 16, 8]),
        bbox_coder=dict(type='YOLOBBoxCoder'), featmap_strides=(32, 16, 8),
        one_hot_smoother=0., conv_cfg=None, norm_cfg=dict(type='BN', requires_grad=True),
        act_cfg=dict(type='LeakyReLU', negative_slope=0.1), loss_cls=bce, loss_conf=bce,
        loss_xy=bce, loss_wh=dict(type='MSELoss', loss_weight=1.0), train_cfg=None,
        test_cfg=None)


def test_keys_shapes_and_forward():
    head = MODELS.build(dict(type='YOLOV3Head', num_classes=80, in_channels=[16, 12, 8],
                             out_channels=[32, 24, 16]))
    assert shapes_of(head) == yolov3_head('', [16, 12, 8], [32, 24, 16], num_classes=80)
    assert head.num_attrib == 85 and head.num_levels == 3 and head.num_base_priors == 3
    feats = (torch.rand(2, 16, 2, 2), torch.rand(2, 12, 4, 4), torch.rand(2, 8, 8, 8))
    outs = head(feats)
    # A 1-tuple holding the tuple of maps, as mmdetection (so loss_by_feat(*outs, ...)).
    assert isinstance(outs, tuple) and len(outs) == 1 and isinstance(outs[0], tuple)
    assert [tuple(m.shape) for m in outs[0]] == [(2, 255, 2, 2), (2, 255, 4, 4),
                                                 (2, 255, 8, 8)]
    with pytest.raises(AssertionError, match='3 feature levels'):
        head(feats[:2])


def test_argument_errors():
    with pytest.raises(AssertionError, match='one entry per level'):
        YOLOV3Head(num_classes=2, in_channels=[8, 8], out_channels=[8, 8, 8])
    with pytest.raises(AssertionError, match='anchor generator has 3 levels'):
        YOLOV3Head(num_classes=2, in_channels=[8, 8], out_channels=[8, 8],
                   featmap_strides=[32, 16])


def test_init_weights_sets_prior_biases():
    head = make_head(num_classes=4)
    head.init_weights()
    for conv_pred, stride in zip(head.convs_pred, (32, 16, 8)):
        bias = conv_pred.bias.view(3, 9)
        p_obj = 8 / (608 / stride)**2  # 8 objects over the level's cells of a 608 image
        torch.testing.assert_close(bias[:, 4], torch.full((3, ), -math.log((1 - p_obj) / p_obj)))
        torch.testing.assert_close(bias[:, 5:], torch.full((3, 4), -math.log(99.)))
        assert torch.all(bias[:, :4] == 0)
        assert conv_pred.weight.std() < 0.02
    assert torch.all(head.convs_bridge[0].bn.weight == 1)


# ----------------------------------------------------------------------------- targets


def test_responsible_flags_mark_the_cell_of_the_centre_on_every_level():
    head = make_head()
    # centre (20, 36): cell (x=0, y=1) at stride 32, (1, 2) at 16, (2, 4) at 8
    flags = head.responsible_flags(FEAT_SIZES, torch.tensor([[12., 28., 28., 44.]]), 'cpu')
    expected_cells = [1 * 2 + 0, 2 * 4 + 1, 4 * 8 + 2]
    for level_flags, num, cell in zip(flags, NUM_PRIORS, expected_cells):
        assert level_flags.dtype == torch.uint8 and level_flags.shape == (num, )
        assert level_flags.nonzero().squeeze(1).tolist() == [3 * cell, 3 * cell + 1,
                                                             3 * cell + 2]


def test_target_of_a_gt_centred_on_its_anchor():
    """A 16x16 gt centred at (20, 36): the 12x12 anchor of cell (2, 4) at stride 8 has the
    same centre and IoU 144/256 = 0.5625 > 0.5, the best of the responsible anchors (the
    16x16 one at stride 16, centred at (24, 40), has 144/368): the only positive."""
    head = make_head(num_classes=4)
    target_map, neg_map = targets(head, gt([[12, 28, 28, 44]], [2]))
    pos = (target_map[:, 4] == 1).nonzero().squeeze(1).tolist()
    pos_index = NUM_PRIORS[0] + NUM_PRIORS[1] + (4 * 8 + 2) * 3 + 2
    assert pos == [pos_index]
    torch.testing.assert_close(
        target_map[pos_index],
        torch.tensor([0.5, 0.5, math.log(16 / 12), math.log(16 / 12), 1, 0, 0, 1, 0]))
    # No other anchor overlaps the gt by more than 0.5: all of them are negatives.
    assert neg_map.sum() == sum(NUM_PRIORS) - 1 and neg_map[pos_index] == 0
    assert torch.all(target_map[neg_map.bool()] == 0)


def test_targets_off_centre_gt_positive_on_two_levels_with_smoothing():
    """Centre (22, 37), 16x16: the 16x16 anchor of cell (1, 2) at stride 16 (centre (24, 40),
    IoU 182/330) and the 12x12 anchor of cell (2, 4) at stride 8 (centre (20, 36),
    IoU 144/256) both exceed 0.5. The xy targets are the offsets inside each cell."""
    head = make_head(num_classes=4, one_hot_smoother=0.1)
    target_map, _ = targets(head, gt([[14, 29, 30, 45]], [1]))
    level1 = NUM_PRIORS[0] + (2 * 4 + 1) * 3 + 0
    level2 = NUM_PRIORS[0] + NUM_PRIORS[1] + (4 * 8 + 2) * 3 + 2
    assert (target_map[:, 4] == 1).nonzero().squeeze(1).tolist() == [level1, level2]
    smoothed = [0.025, 0.925, 0.025, 0.025]  # one_hot * 0.9 + 0.1 / 4
    torch.testing.assert_close(target_map[level1], torch.tensor(
        [(22 - 24) / 16 + 0.5, (37 - 40) / 16 + 0.5, 0., 0., 1., *smoothed]))
    torch.testing.assert_close(target_map[level2], torch.tensor(
        [(22 - 20) / 8 + 0.5, (37 - 36) / 8 + 0.5, math.log(16 / 12), math.log(16 / 12), 1.,
         *smoothed]))


def test_negatives_exclude_overlaps_above_neg_iou_thr():
    """With neg_iou_thr 0.3, every prior whose IoU with the gt exceeds 0.3 is ignored (neither
    positive nor negative) unless it is a positive: checked against a plain IoU of every
    prior."""
    head = make_head(num_classes=4, neg_iou_thr=0.3)
    box = (14, 29, 30, 45)
    target_map, neg_map = targets(head, gt([box], [0]))
    ious = torch.tensor([iou(anchor, box) for anchor in all_anchor_boxes()])
    positive = target_map[:, 4] == 1
    assert positive.sum() == 2
    torch.testing.assert_close(neg_map.bool(), ious <= 0.3)
    ignored = ~positive & ~neg_map.bool()
    assert ignored.sum() >= 2  # the 24x24 anchor at stride 16 (0.444) and a neighbour cell's


def test_image_without_gt_is_all_negative():
    head = make_head()
    target_map, neg_map = targets(head, gt(torch.zeros(0, 4), []))
    assert torch.all(target_map == 0) and torch.all(neg_map == 1)


# ----------------------------------------------------------------------------- losses


def test_losses_of_zero_predictions_by_hand():
    """With every raw prediction 0: each BCE term is log 2 whatever its target, the wh term
    is the squared target. Two positives (the off-centre gt), sum reductions."""
    head = make_head(num_classes=4)
    gt_instances = gt([[14, 29, 30, 45]], [3])
    pred_maps = [torch.zeros(1, 27, h, w, requires_grad=True) for h, w in FEAT_SIZES]
    losses = head.loss_by_feat(pred_maps, [gt_instances], [dict(img_shape=(64, 64))])
    assert sorted(losses) == ['loss_cls', 'loss_conf', 'loss_wh', 'loss_xy']
    assert all(len(v) == 3 for v in losses.values())
    log2 = math.log(2)
    # level 0: no positive, 12 negatives; level 1: 1 positive (16x16 anchor, wh target 0),
    # 47 negatives; level 2: 1 positive (wh target log(16/12)), 191 negatives.
    expected = dict(
        loss_cls=[0., 4 * log2, 4 * log2],
        loss_conf=[12 * log2, 48 * log2, 192 * log2],
        loss_xy=[0., 2 * 2 * log2, 2 * 2 * log2],  # loss_weight 2, two coordinates
        loss_wh=[0., 0., 2 * 2 * math.log(16 / 12)**2])
    for name, values in expected.items():
        for got, want in zip(losses[name], values):
            assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6), name
    sum(sum(v) for v in losses.values()).backward()
    assert pred_maps[2].grad.abs().sum() > 0


def test_loss_through_data_samples_and_no_gt_image():
    head = make_head(num_classes=4)
    head.init_weights()
    feats = tuple(torch.rand(2, 8, h, w) for h, w in FEAT_SIZES)
    samples = []
    for boxes, labels in (([[8, 8, 40, 40]], [1]), (torch.zeros(0, 4), [])):
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64)))
        sample.gt_instances = gt(boxes, labels)
        samples.append(sample)
    losses = head.loss(feats, samples)
    for values in losses.values():
        assert all(torch.isfinite(v) for v in values)
    assert sum(losses['loss_xy']) > 0


# ----------------------------------------------------------------------------- predict


def one_box_pred_maps(obj_logit=10., cls_logit=10.):
    """Raw maps with a single confident prediction: the 12x12 anchor of cell (2, 4) at
    stride 8 (centre (20, 36)), xy logits 0 (offset 0.5: the anchor centre), wh logits
    log 2 (twice the anchor size): the box (8, 24, 32, 48), class 1."""
    maps = [torch.full((1, 3 * 9, h, w), -10.) for h, w in FEAT_SIZES]
    row = maps[2][0].view(3, 9, 8, 8)[2, :, 4, 2]  # anchor 2, y=4, x=2
    row[:2] = 0.
    row[2:4] = math.log(2.)
    row[4] = obj_logit
    row[5 + 1] = cls_logit
    return maps


def test_predict_decodes_one_box_and_rescales():
    head = make_head(num_classes=4)
    meta = dict(img_shape=(64, 64), ori_shape=(32, 32), scale_factor=(2., 2.))
    result, = head.predict_by_feat(one_box_pred_maps(), [meta], rescale=False)
    assert result.labels.tolist() == [1]
    torch.testing.assert_close(result.bboxes, torch.tensor([[8., 24., 32., 48.]]))
    torch.testing.assert_close(result.scores, torch.sigmoid(torch.tensor([10.]))**2)
    rescaled, = head.predict_by_feat(one_box_pred_maps(), [meta], rescale=True)
    torch.testing.assert_close(rescaled.bboxes, torch.tensor([[4., 12., 16., 24.]]))


def test_conf_thr_filters_on_objectness_before_class_scores():
    """Class score sigmoid(10) passes score_thr, objectness sigmoid(-8) = 3.4e-4 is below
    conf_thr 0.005: dropped; without conf_thr the box stays, scored class x objectness."""
    head = make_head(num_classes=4)
    meta = dict(img_shape=(64, 64), scale_factor=(1., 1.))
    maps = one_box_pred_maps(obj_logit=-8.)
    assert len(head.predict_by_feat(maps, [meta])[0]) == 0
    cfg = dict(TEST_CFG, conf_thr=-1)
    result, = head.predict_by_feat(maps, [meta], cfg=cfg)
    assert len(result) == 1
    torch.testing.assert_close(result.scores,
                               torch.sigmoid(torch.tensor([10.])) * torch.sigmoid(torch.tensor(
                                   [-8.])))
    with pytest.raises(AssertionError, match='3 prediction maps'):
        head.predict_by_feat(maps[:2], [meta])
