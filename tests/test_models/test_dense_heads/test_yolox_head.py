"""YOLOXHead: layers and keys, SimOTA targets and losses, predictions."""
import logging
import math
import types

import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import conv_bn, dw_sep_bn, shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import box_iou

from mmdet_lite.engine.hooks import YOLOXModeSwitchHook
from mmdet_lite.models.dense_heads import YOLOXHead
from mmdet_lite.registry import MODELS

TRAIN_CFG = ConfigDict(assigner=dict(type='SimOTAAssigner', center_radius=2.5))
TEST_CFG = ConfigDict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65))


def make_head(**kwargs) -> YOLOXHead:
    cfg = dict(type='YOLOXHead', num_classes=2, in_channels=8, feat_channels=8,
               train_cfg=TRAIN_CFG, test_cfg=TEST_CFG)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def expected_head_shapes(channels: int, num_classes: int, depthwise: bool) -> dict:
    """mmdetection's YOLOXHead layout: per level, 2 + 2 tower convs (ConvModule or
    DepthwiseSeparableConvModule, BN, no conv bias) then three 1x1 convs with bias."""
    shapes = {}
    for tower in ('multi_level_cls_convs', 'multi_level_reg_convs'):
        for level in range(3):
            for i in range(2):
                prefix = f'{tower}.{level}.{i}'
                shapes.update(dw_sep_bn(prefix, channels, channels, 3) if depthwise else
                              conv_bn(prefix, channels, channels, 3))
    for name, c_out in (('conv_cls', num_classes), ('conv_reg', 4), ('conv_obj', 1)):
        for level in range(3):
            shapes[f'multi_level_{name}.{level}.weight'] = (c_out, channels, 1, 1)
            shapes[f'multi_level_{name}.{level}.bias'] = (c_out, )
    return shapes


# ----------------------------------------------------------------------------- layers


def test_yolox_s_head_state_dict_matches_mmdet():
    # yolox_s: in_channels=feat_channels=128, 80 classes, BN + Swish.
    head = YOLOXHead(num_classes=80, in_channels=128, feat_channels=128)
    assert shapes_of(head) == expected_head_shapes(128, 80, depthwise=False)


def test_yolox_nano_depthwise_head_state_dict_matches_mmdet():
    head = YOLOXHead(num_classes=80, in_channels=64, feat_channels=64, use_depthwise=True)
    assert shapes_of(head) == expected_head_shapes(64, 80, depthwise=True)


def test_mmdet_defaults():
    head = YOLOXHead(num_classes=3, in_channels=16)
    assert (head.feat_channels, head.stacked_convs, tuple(head.strides)) == (256, 2, (8, 16, 32))
    assert not head.use_depthwise and not head.dcn_on_last_conv and head.conv_bias == 'auto'
    assert head.norm_cfg == dict(type='BN', momentum=0.03, eps=0.001)
    assert head.act_cfg == dict(type='Swish')
    assert head.multi_level_cls_convs[0][0].activate.__class__.__name__ == 'Swish'
    assert head.multi_level_cls_convs[0][0].bn.momentum == 0.03
    assert type(head.loss_bbox).__name__ == 'IoULoss'
    assert (head.loss_bbox.mode, head.loss_bbox.eps, head.loss_bbox.loss_weight,
            head.loss_bbox.reduction) == ('square', 1e-16, 5.0, 'sum')
    for loss in (head.loss_cls, head.loss_obj):
        assert type(loss).__name__ == 'CrossEntropyLoss' and loss.use_sigmoid
        assert (loss.reduction, loss.loss_weight) == ('sum', 1.0)
    assert type(head.loss_l1).__name__ == 'L1Loss' and head.loss_l1.reduction == 'sum'
    assert head.use_l1 is False
    # Priors on the cell corners.
    assert head.prior_generator.offset == 0
    assert not hasattr(head, 'assigner')  # only built with a train_cfg


def test_init_sets_cls_and_obj_bias_to_prior_probability_001():
    head = make_head()
    bias = -math.log((1 - 0.01) / 0.01)
    for level in range(3):
        assert torch.allclose(head.multi_level_conv_cls[level].bias, torch.full((2, ), bias))
        assert torch.allclose(head.multi_level_conv_obj[level].bias, torch.full((1, ), bias))
        assert not torch.allclose(head.multi_level_conv_reg[level].bias,
                                  torch.full((4, ), bias))


def test_dcn_on_last_conv_makes_the_last_tower_conv_deformable():
    head = YOLOXHead(num_classes=2, in_channels=8, feat_channels=8, dcn_on_last_conv=True)
    keys = head.state_dict()
    # DCNv2: offsets and masks (3 x 9 channels) from a 3x3 conv; the first conv is plain.
    assert tuple(keys['multi_level_cls_convs.0.1.conv.conv_offset.weight'].shape) == (27, 8, 3, 3)
    assert 'multi_level_cls_convs.0.0.conv.conv_offset.weight' not in keys


def test_conv_bias_must_be_auto_or_bool():
    with pytest.raises(AssertionError, match='conv_bias'):
        YOLOXHead(num_classes=2, in_channels=8, conv_bias='yes')
    with pytest.warns(UserWarning, match='Unnecessary conv bias'):  # mmcv's, with BN
        head = YOLOXHead(num_classes=2, in_channels=8, feat_channels=8, conv_bias=True)
    assert 'multi_level_cls_convs.0.0.conv.bias' in head.state_dict()


def test_forward_gives_cls_bbox_obj_per_level():
    head = make_head()
    feats = tuple(torch.rand(2, 8, 64 // s, 64 // s) for s in (8, 16, 32))
    cls_scores, bbox_preds, objectnesses = head(feats)
    assert [tuple(t.shape) for t in cls_scores] == [(2, 2, s, s) for s in (8, 4, 2)]
    assert [tuple(t.shape) for t in bbox_preds] == [(2, 4, s, s) for s in (8, 4, 2)]
    assert [tuple(t.shape) for t in objectnesses] == [(2, 1, s, s) for s in (8, 4, 2)]


# ----------------------------------------------------------------------------- loss
# One stride-8 level of 4x4 cells (a 32x32 image), two classes. Prior k = y * 4 + x has its
# corner at (8x, 8y) and the centre used for the assignment at (8x + 4, 8y + 4).
# Gt A = [0, 0, 16, 16] (class 1) holds the centres of priors 0, 1, 4, 5; gt B =
# [16, 16, 32, 32] (class 0) those of 10, 11, 14, 15. Every prior predicts a ~1 px box at its
# cell centre except four that overlap a gt well:
#   prior 0: [0, 2, 16, 14]  IoU(A) 0.75     prior 1: [0, 0, 16, 14.4]  IoU(A) 0.9
#   prior 5: [1, 1, 15, 15]  IoU(A) 0.766    prior 15: [16, 16, 32, 28.8] IoU(B) 0.8
# Dynamic k: A int(0.75 + 0.9 + 0.766 + tiny) = 2, B max(1, int(0.8 + tiny)) = 1.
# Prior 5 is confident in the wrong class (class-0 logit 1.5, objectness logit 3): with the
# class score sqrt(sigmoid(cls) * sigmoid(obj)) = 0.88 for class 0, its class cost exceeds
# prior 0's by more than its better IoU saves, so A takes priors 1 and 0; B takes 15.
# (Without the square root prior 5 would win over prior 0.)

GT_A, GT_B = [0., 0., 16., 16.], [16., 16., 32., 32.]
GOOD_PREDS = {  # prior -> (dx, dy, log w, log h) in strides from the corner
    0: (1.0, 1.0, math.log(2.0), math.log(1.5)),
    1: (0.0, 0.9, math.log(2.0), math.log(1.8)),
    5: (0.0, 0.0, math.log(1.75), math.log(1.75)),
    15: (0.0, -0.2, math.log(2.0), math.log(1.6)),
}


def hand_case_outputs():
    """Fixed head outputs ([1, C, 4, 4] each) of the case above; some obj/cls logits vary so
    that the BCE terms are not all alike."""
    bbox = torch.tensor([0.5, 0.5, -2.0, -2.0]).view(1, 4, 1, 1).repeat(1, 1, 4, 4)
    for prior, values in GOOD_PREDS.items():
        bbox[0, :, prior // 4, prior % 4] = torch.tensor(values)
    cls = torch.zeros(1, 2, 4, 4)
    cls[0, :, 1, 1] = torch.tensor([1.5, 5.0])  # prior 5: confident, partly in class 0
    cls[0, 0, 0, 1] = 0.3  # prior 1, class 0 (a wrong class)
    obj = torch.linspace(-1.0, 1.0, 16).view(1, 1, 4, 4)
    obj[0, 0, 1, 1] = 3.0  # prior 5
    return cls, bbox, obj


def gt_instances(boxes, labels):
    return InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


def decode_hand(prior: int, values) -> list:
    """Box of a prior's (dx, dy, log w, log h), written out."""
    x0, y0 = 8.0 * (prior % 4), 8.0 * (prior // 4)
    cx, cy = x0 + values[0] * 8, y0 + values[1] * 8
    w, h = 8 * math.exp(values[2]), 8 * math.exp(values[3])
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def bce(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logit)
    return -(target * torch.log(p) + (1 - target) * torch.log(1 - p))


def simota_by_hand(cls, bbox, obj, gts, labels):
    """SimOTA on the 16 priors, written out: candidates, cost, dynamic k, conflicts."""
    boxes = torch.tensor([decode_hand(k, bbox[0, :, k // 4, k % 4].tolist()) for k in range(16)])
    centers = torch.tensor([[8.0 * (k % 4) + 4, 8.0 * (k // 4) + 4] for k in range(16)])
    gts = torch.tensor(gts)
    probs = (torch.sigmoid(cls[0].reshape(2, 16).t()) *
             torch.sigmoid(obj[0].reshape(1, 16).t())).sqrt()  # [16, 2]
    cx, cy = centers[:, 0:1], centers[:, 1:2]
    in_box = (cx > gts[:, 0]) & (cx < gts[:, 2]) & (cy > gts[:, 1]) & (cy < gts[:, 3])
    gcx, gcy = (gts[:, 0] + gts[:, 2]) / 2, (gts[:, 1] + gts[:, 3]) / 2
    in_ctr = ((cx - gcx).abs() < 2.5 * 8) & ((cy - gcy).abs() < 2.5 * 8)
    cand = (in_box | in_ctr).any(1)
    ious = box_iou(boxes, gts)  # [16, G]
    cost = torch.full((16, len(labels)), float('inf'))
    for k in range(16):
        for g, label in enumerate(labels):
            onehot = F.one_hot(torch.tensor(label), 2).float()
            cls_cost = -(onehot * probs[k].log() + (1 - onehot) * (1 - probs[k]).log()).sum()
            cost[k, g] = cls_cost + 3 * -math.log(ious[k, g] + 1e-7) + (
                0 if in_box[k, g] and in_ctr[k, g] else 1e5)
    cand_idx = cand.nonzero().flatten()
    chosen = {}
    for g in range(len(labels)):
        k_g = max(1, int(ious[cand_idx, g].topk(min(10, len(cand_idx))).values.sum()))
        for k in cand_idx[cost[cand_idx, g].argsort()[:k_g]].tolist():
            chosen.setdefault(k, []).append(g)
    return {k: min(gs, key=lambda g: cost[k, g]) for k, gs in chosen.items()}, ious


def test_simota_positives_match_the_cost_computed_by_hand():
    head = make_head(strides=(8, ))
    cls, bbox, obj = hand_case_outputs()
    matched, _ = simota_by_hand(cls, bbox, obj, [GT_A, GT_B], [1, 0])
    assert matched == {0: 0, 1: 0, 15: 1}  # prior 5 loses on its wrong-class cost
    flat_cls, flat_bbox, flat_obj, priors = head._flatten_outputs([cls], [bbox], [obj])
    decoded = head._bbox_decode(priors, flat_bbox)
    pos_mask, cls_target, obj_target, bbox_target, _, num_pos = head._get_targets_single(
        priors, flat_cls[0], decoded[0], flat_obj[0], gt_instances([GT_A, GT_B], [1, 0]), {})
    assert num_pos == 3 and pos_mask.nonzero().flatten().tolist() == [0, 1, 15]
    assert obj_target.flatten().tolist() == [float(k in (0, 1, 15)) for k in range(16)]
    assert torch.equal(bbox_target, torch.tensor([GT_A, GT_A, GT_B]))
    # IoU-aware class targets: the predicted box's IoU with its gt, in the gt's class.
    assert torch.allclose(cls_target, torch.tensor([[0., .75], [0., .9], [.8, 0.]]), atol=1e-5)


def test_losses_match_bce_and_square_iou_by_hand():
    head = make_head(strides=(8, ))
    cls, bbox, obj = hand_case_outputs()
    losses = head.loss_by_feat([cls], [bbox], [obj], [gt_instances([GT_A, GT_B], [1, 0])],
                               [dict(img_shape=(32, 32))])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_obj'}  # no L1 until switched on
    pos = [0, 1, 15]
    num_pos = 3.0
    obj_target = torch.tensor([float(k in pos) for k in range(16)])
    assert losses['loss_obj'].item() == pytest.approx(
        bce(obj.flatten(), obj_target).sum().item() / num_pos, rel=1e-5)

    pred_boxes = torch.tensor([decode_hand(k, GOOD_PREDS[k]) for k in pos])
    gts = torch.tensor([GT_A, GT_A, GT_B])
    ious = box_iou(pred_boxes, gts).diagonal()
    assert ious.tolist() == pytest.approx([0.75, 0.9, 0.8], abs=1e-5)
    cls_logits = cls[0].reshape(2, 16).t()[pos]  # [3, 2]
    cls_target = torch.stack([ious[0] * torch.tensor([0., 1.]), ious[1] * torch.tensor([0., 1.]),
                              ious[2] * torch.tensor([1., 0.])])
    assert losses['loss_cls'].item() == pytest.approx(
        bce(cls_logits, cls_target).sum().item() / num_pos, rel=1e-5)
    assert losses['loss_bbox'].item() == pytest.approx(
        5.0 * (1 - ious**2).sum().item() / num_pos, rel=1e-5)


def l1_by_hand() -> float:
    """|raw prediction - gt encoded from the corner prior|, summed over positives, / 3."""
    total = 0.0
    for prior, gt in ((0, GT_A), (1, GT_A), (15, GT_B)):
        x0, y0 = 8.0 * (prior % 4), 8.0 * (prior // 4)
        cx, cy, w, h = (gt[0] + gt[2]) / 2, (gt[1] + gt[3]) / 2, gt[2] - gt[0], gt[3] - gt[1]
        target = [(cx - x0) / 8, (cy - y0) / 8, math.log(w / 8), math.log(h / 8)]
        total += sum(abs(p - t) for p, t in zip(GOOD_PREDS[prior], target))
    return total / 3


def test_l1_loss_only_when_use_l1():
    head = make_head(strides=(8, ))
    head.use_l1 = True
    cls, bbox, obj = hand_case_outputs()
    losses = head.loss_by_feat([cls], [bbox], [obj], [gt_instances([GT_A, GT_B], [1, 0])],
                               [dict(img_shape=(32, 32))])
    assert losses['loss_l1'].item() == pytest.approx(l1_by_hand(), rel=1e-5)


def test_image_without_gt_adds_only_objectness_negatives():
    head = make_head(strides=(8, ))
    cls, bbox, obj = hand_case_outputs()
    two = [torch.cat([t, t]) for t in (cls, bbox, obj)]
    metas = [dict(img_shape=(32, 32))] * 2
    with_empty = head.loss_by_feat(*([t] for t in two), [gt_instances([GT_A, GT_B], [1, 0]),
                                                         gt_instances([], [])], metas)
    single = head.loss_by_feat([cls], [bbox], [obj], [gt_instances([GT_A, GT_B], [1, 0])],
                               metas[:1])
    # Same 3 positives; the empty image's 16 priors are objectness negatives.
    extra_obj = bce(obj.flatten(), torch.zeros(16)).sum().item() / 3
    assert with_empty['loss_obj'].item() == pytest.approx(
        single['loss_obj'].item() + extra_obj, rel=1e-5)
    assert with_empty['loss_cls'].item() == pytest.approx(single['loss_cls'].item(), rel=1e-5)


def test_no_gt_at_all_gives_finite_losses_connected_to_every_branch():
    head = make_head()
    head.use_l1 = True
    feats = tuple(torch.rand(2, 8, 64 // s, 64 // s) for s in (8, 16, 32))
    outs = head(feats)
    losses = head.loss_by_feat(*outs, [gt_instances([], [])] * 2, [dict(img_shape=(64, 64))] * 2)
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_obj', 'loss_l1'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_cls'] == 0 and losses['loss_bbox'] == 0 and losses['loss_l1'] == 0
    # num_pos is 0, so the normalizer is 1: loss_obj is the plain BCE sum against 0.
    flat_obj = torch.cat([o.permute(0, 2, 3, 1).reshape(-1) for o in outs[2]])
    assert losses['loss_obj'].item() == pytest.approx(
        bce(flat_obj, torch.zeros_like(flat_obj)).sum().item(), rel=1e-5)
    sum(losses.values()).backward()
    for name, param in head.named_parameters():
        assert param.grad is not None, name


def test_loss_without_train_cfg_says_what_is_missing():
    head = YOLOXHead(num_classes=2, in_channels=8, feat_channels=8)
    cls, bbox, obj = hand_case_outputs()
    with pytest.raises(AssertionError, match='train_cfg'):
        head.loss_by_feat([cls] * 3, [bbox] * 3, [obj] * 3, [gt_instances([GT_A], [0])],
                          [dict(img_shape=(32, 32))])


def test_mode_switch_hook_turns_on_the_l1_loss():
    model = torch.nn.Module()
    model.bbox_head = make_head(strides=(8, ))
    hook = YOLOXModeSwitchHook(num_last_epochs=2)
    runner = types.SimpleNamespace(
        model=model, epoch=0, max_epochs=5, logger=logging.getLogger('yolox_head_test'),
        train_dataloader=types.SimpleNamespace(
            dataset=types.SimpleNamespace(update_skip_type_keys=lambda keys: None),
            persistent_workers=False))
    cls, bbox, obj = hand_case_outputs()

    def losses():
        return model.bbox_head.loss_by_feat([cls], [bbox], [obj],
                                            [gt_instances([GT_A, GT_B], [1, 0])],
                                            [dict(img_shape=(32, 32))])

    for epoch in (0, 1):  # switches once epoch + 1 >= 5 - 2
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        assert 'loss_l1' not in losses()
    runner.epoch = 2
    hook.before_train_epoch(runner)
    assert losses()['loss_l1'].item() == pytest.approx(l1_by_hand(), rel=1e-5)


# ----------------------------------------------------------------------------- predict


def one_level_outputs():
    """Three confident priors on a stride-8 4x4 map: 0 and 1 class 0 with heavily
    overlapping boxes, 5 class 1 with the same box as prior 0; all else ~0 score."""
    cls = torch.full((1, 2, 4, 4), -10.0)
    obj = torch.full((1, 1, 4, 4), -10.0)
    bbox = torch.zeros(1, 4, 4, 4)
    cls[0, 0, 0, 0], obj[0, 0, 0, 0] = 2.0, 1.0  # prior 0: 0.881 * 0.731
    cls[0, 0, 0, 1], obj[0, 0, 0, 1] = 1.0, 1.0  # prior 1
    cls[0, 1, 1, 1], obj[0, 0, 1, 1] = 3.0, 0.5  # prior 5
    bbox[0, :, 0, 0] = torch.tensor([1.0, 1.0, math.log(2.0), math.log(2.0)])  # [0, 0, 16, 16]
    bbox[0, :, 0, 1] = torch.tensor([0.0, 1.0, math.log(2.0), math.log(2.0)])  # [0, 0, 16, 16]
    bbox[0, :, 1, 1] = torch.tensor([0.0, 0.0, math.log(2.0), math.log(2.0)])  # [0, 0, 16, 16]
    return [cls], [bbox], [obj]


def test_predict_without_nms_keeps_scores_cls_times_obj_in_prior_order():
    head = make_head(strides=(8, ))
    cls, bbox, obj = one_level_outputs()
    meta = dict(img_shape=(32, 32), scale_factor=(2.0, 0.5))
    (res, ) = head.predict_by_feat(cls, bbox, obj, [meta], rescale=False, with_nms=False)
    sig = torch.sigmoid
    expected = torch.stack([sig(torch.tensor(2.)) * sig(torch.tensor(1.)),
                            sig(torch.tensor(1.)) * sig(torch.tensor(1.)),
                            sig(torch.tensor(3.)) * sig(torch.tensor(.5))])
    assert torch.allclose(res.scores, expected)
    assert res.labels.tolist() == [0, 0, 1]
    assert torch.allclose(res.bboxes, torch.tensor([[0., 0., 16., 16.]] * 3))


def test_predict_rescales_to_the_original_image():
    head = make_head(strides=(8, ))
    cls, bbox, obj = one_level_outputs()
    meta = dict(img_shape=(32, 32), scale_factor=(2.0, 0.5))  # (w, h) scale of the resize
    (res, ) = head.predict_by_feat(cls, bbox, obj, [meta], rescale=True, with_nms=False)
    assert torch.allclose(res.bboxes, torch.tensor([[0., 0., 8., 32.]] * 3))


def test_predict_nms_is_per_class_and_keeps_everything_it_does_not_suppress():
    head = make_head(strides=(8, ))
    cls, bbox, obj = one_level_outputs()
    # max_per_img is not applied by YOLOX (as in mmdetection).
    cfg = ConfigDict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65), max_per_img=1)
    (res, ) = head.predict_by_feat(cls, bbox, obj, [dict(scale_factor=(1., 1.))], cfg=cfg)
    # Prior 1 (same box and class as prior 0, lower score) is suppressed; prior 5 is
    # another class. Highest score first: prior 0 (0.644), then prior 5 (0.593).
    sig = torch.sigmoid
    assert res.labels.tolist() == [0, 1]
    assert torch.allclose(res.scores, torch.stack([
        sig(torch.tensor(2.)) * sig(torch.tensor(1.)),
        sig(torch.tensor(3.)) * sig(torch.tensor(.5))]))


def test_predict_with_nothing_above_score_thr_gives_empty_results():
    head = make_head(strides=(8, ))
    cls, bbox, obj = one_level_outputs()
    cfg = ConfigDict(score_thr=0.9, nms=dict(type='nms', iou_threshold=0.65))
    for with_nms in (True, False):
        (res, ) = head.predict_by_feat(cls, bbox, obj, [dict(scale_factor=(2., 2.))], cfg=cfg,
                                       rescale=True, with_nms=with_nms)
        assert tuple(res.bboxes.shape) == (0, 4)
        assert tuple(res.scores.shape) == (0, ) and tuple(res.labels.shape) == (0, )


def test_predict_score_thr_applies_to_cls_times_obj():
    head = make_head(strides=(8, ))
    cls, bbox, obj = one_level_outputs()
    # Prior 1 scores sigmoid(1)^2 = 0.534; priors 0 and 5 score 0.644 and 0.593.
    cfg = dict(score_thr=0.55, nms=dict(type='nms', iou_threshold=0.65))
    (res, ) = head.predict_by_feat(cls, bbox, obj, [dict(scale_factor=(1., 1.))], cfg=cfg,
                                   with_nms=False)
    assert res.labels.tolist() == [0, 1]
