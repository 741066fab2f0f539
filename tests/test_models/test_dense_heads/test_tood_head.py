"""TOODHead and TaskDecomposition: mmdetection's arguments and keys, deform sampling and layer
attention against straightforward references, the forward outputs by hand, the initial-epoch
switch of the assigner and loss, task-aligned targets and losses by hand, predict."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import shapes_of
from helpers_tood_vfnet_keys import task_decomposition, tood_head
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData
from torchvision.ops import generalized_box_iou_loss

from mmdet_lite.models.dense_heads import ATSSHead, TOODHead
from mmdet_lite.models.layers import TaskDecomposition
from mmdet_lite.registry import MODELS

TRAIN_CFG = dict(initial_epoch=4, initial_assigner=dict(type='ATSSAssigner', topk=9),
                 assigner=dict(type='TaskAlignedAssigner', topk=2), alpha=1, beta=6,
                 allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)


def make_head(strides=(8, ), octave_base_scale=2, **kwargs) -> TOODHead:
    """3 classes, 32 channels, 2 stacked convs, one square anchor per position; the COCO
    config's coder and losses."""
    cfg = dict(type='TOODHead', num_classes=3, in_channels=16, feat_channels=32,
               stacked_convs=2,
               anchor_generator=dict(type='AnchorGenerator', ratios=[1.0],
                                     octave_base_scale=octave_base_scale, scales_per_octave=1,
                                     strides=list(strides)),
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4,
                               target_stds=[0.1, 0.1, 0.2, 0.2]),
               loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, activated=True,
                             beta=2.0, loss_weight=1.0),
               loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.fixture
def set_epoch():
    """Set the MessageHub's 'epoch' (what RuntimeInfoHook records); restored afterwards."""
    hub = MessageHub.get_current_instance()
    missing = object()
    old = hub.get_info('epoch', missing)
    yield lambda epoch: hub.update_info('epoch', epoch)
    if old is missing:
        hub.pop_info('epoch')
    else:
        hub.update_info('epoch', old)


def meta(img_shape=(32, 32)) -> dict:
    return dict(img_shape=img_shape, pad_shape=img_shape, batch_input_shape=img_shape,
                ori_shape=img_shape, scale_factor=(1.0, 1.0))


# ----------------------------------------------------------------------------- definition


def test_arguments_and_defaults_are_mmdetections():
    params = inspect.signature(TOODHead.__init__).parameters
    assert list(params) == ['self', 'num_classes', 'in_channels', 'num_dcn', 'anchor_type',
                            'initial_loss_cls', 'kwargs']
    assert params['num_dcn'].default == 0
    assert params['anchor_type'].default == 'anchor_free'
    assert params['initial_loss_cls'].default == dict(
        type='FocalLoss', use_sigmoid=True, activated=True, gamma=2.0, alpha=0.25,
        loss_weight=1.0)
    assert MODELS.get('TOODHead') is TOODHead and issubclass(TOODHead, ATSSHead)


def test_unknown_anchor_type_is_rejected_as_an_assertion():
    with pytest.raises(AssertionError, match='anchor_type'):
        make_head(anchor_type='anchor_point')


def test_state_dict_keys_and_shapes_equal_mmdetection():
    head = make_head(strides=(8, 16, 32))
    assert shapes_of(head) == tood_head('', in_channels=16, feat_channels=32, num_classes=3,
                                        stacked_convs=2, num_levels=3)


def test_dcn_inter_convs_are_dcnv2_with_four_deform_groups():
    head = make_head(num_dcn=1)
    expected = tood_head('', in_channels=16, feat_channels=32, num_classes=3, stacked_convs=2,
                         num_levels=1)
    # ConvModule(conv_cfg=DCNv2, GN): modulated deform conv without bias, offsets + masks of
    # 4 groups x 9 taps x 3 values predicted by its conv_offset.
    expected['inter_convs.0.conv.conv_offset.weight'] = (4 * 9 * 3, 16, 3, 3)
    expected['inter_convs.0.conv.conv_offset.bias'] = (4 * 9 * 3, )
    assert shapes_of(head) == expected
    assert head.inter_convs[0].conv.deform_groups == 4


def test_train_cfg_builds_both_assigners_and_starts_with_atss():
    head = make_head()
    assert head.initial_epoch == 4 and (head.alpha, head.beta) == (1, 6)
    assert type(head.initial_assigner).__name__ == 'ATSSAssigner'
    assert type(head.alignment_assigner).__name__ == 'TaskAlignedAssigner'
    assert head.assigner is head.initial_assigner
    assert head.initial_loss_cls.activated and head.loss_cls.activated
    assert not hasattr(make_head(train_cfg=None), 'initial_assigner')


# ----------------------------------------------------------------------------- layers


def test_deform_sampling_with_zero_offsets_is_the_identity():
    feat = torch.rand(2, 4, 5, 6)
    out = make_head().deform_sampling(feat, torch.zeros(2, 8, 5, 6))
    assert torch.allclose(out, feat, atol=1e-6)


def test_deform_sampling_shifts_each_channel_by_its_own_offset():
    feat = torch.rand(1, 4, 5, 6)
    offset = torch.zeros(1, 8, 5, 6)
    offset[0, 0] = 1.0  # channel 0: dy = +1
    offset[0, 3] = -2.0  # channel 1: dx = -2
    offset[0, 4] = 0.5  # channel 2: dy = +0.5 (between two rows)
    out = make_head().deform_sampling(feat, offset)[0]
    f = feat[0]
    zero_row, zero_cols = torch.zeros(1, 6), torch.zeros(5, 2)
    assert torch.allclose(out[0], torch.cat([f[0, 1:], zero_row]), atol=1e-6)
    assert torch.allclose(out[1], torch.cat([zero_cols, f[1, :, :-2]], 1), atol=1e-6)
    # bilinear: half of each row; the last row's lower neighbour lies outside (zero)
    expected_2 = torch.cat([(f[2, :-1] + f[2, 1:]) / 2, f[2, -1:] / 2])
    assert torch.allclose(out[2], expected_2, atol=1e-6)
    assert torch.allclose(out[3], f[3], atol=1e-6)


@pytest.mark.parametrize('norm_cfg', [dict(type='GN', num_groups=4), None])
def test_task_decomposition_equals_reweighting_the_levels_then_a_1x1_conv(norm_cfg):
    torch.manual_seed(0)
    decomp = TaskDecomposition(8, 3, la_down_rate=4, norm_cfg=norm_cfg)
    for param in decomp.parameters():
        torch.nn.init.normal_(param, std=0.5)
    feat = torch.randn(2, 24, 5, 4)

    # reference: per-image level weights, scale each level's 8 channels, a plain 1x1 conv
    avg = feat.mean(dim=(2, 3), keepdim=True)
    att = decomp.layer_attention
    weights = torch.sigmoid(att[2](torch.relu(att[0](avg))))  # [2, 3, 1, 1]
    scaled = feat * weights.repeat_interleave(8, dim=1)
    # as mmdetection, the conv bias (there without a norm) is not added
    expected = F.conv2d(scaled, decomp.reduction_conv.conv.weight)
    if norm_cfg is not None:
        expected = decomp.reduction_conv.norm(expected)
    expected = torch.relu(expected)

    assert torch.allclose(decomp(feat), expected, atol=1e-5)
    assert torch.allclose(decomp(feat, avg), expected, atol=1e-5)
    assert shapes_of(decomp)['layer_attention.0.weight'] == (6, 24, 1, 1)
    if norm_cfg is not None:
        assert shapes_of(decomp) == task_decomposition('', 8, 3, 4)
    else:
        assert shapes_of(decomp)['reduction_conv.conv.bias'] == (8, )


def test_init_weights_gives_the_class_prior_and_small_offsets():
    head = make_head()
    head.init_weights()
    prior_bias = -math.log((1 - 0.01) / 0.01)
    assert torch.allclose(head.tood_cls.bias, torch.full((3, ), prior_bias))
    assert torch.allclose(head.cls_prob_module[-1].bias, torch.tensor([prior_bias]))
    assert head.reg_offset_module[-1].weight.std() < 0.003
    assert 0.005 < head.tood_reg.weight.std() < 0.015


# ----------------------------------------------------------------------------- forward


def head_with_constant_outputs(anchor_type='anchor_free', offset_bias=None) -> TOODHead:
    """Predictors zeroed: tood_reg outputs 0, the class logit 1.0, the class-prob logit -0.5,
    the offsets ``offset_bias`` (default 0)."""
    head = make_head(anchor_type=anchor_type)
    head.init_weights()
    with torch.no_grad():
        for conv in (head.tood_reg, head.tood_cls, head.cls_prob_module[-1],
                     head.reg_offset_module[-1]):
            conv.weight.zero_()
            conv.bias.zero_()
        head.tood_cls.bias.fill_(1.0)
        head.cls_prob_module[-1].bias.fill_(-0.5)
        if offset_bias is not None:
            head.reg_offset_module[-1].bias.copy_(torch.tensor(offset_bias))
    return head


def test_forward_anchor_free_boxes_are_unit_distances_around_the_anchor_centres():
    head = head_with_constant_outputs()
    cls_scores, bbox_preds = head((torch.rand(2, 16, 3, 4), ))
    assert isinstance(cls_scores, tuple) and isinstance(bbox_preds, tuple)
    assert cls_scores[0].shape == (2, 3, 3, 4) and bbox_preds[0].shape == (2, 4, 3, 4)
    # sqrt(sigmoid(1) * sigmoid(-0.5)) everywhere
    prob = math.sqrt(1 / (1 + math.exp(-1)) / (1 + math.exp(0.5)))
    assert torch.allclose(cls_scores[0], torch.full_like(cls_scores[0], prob), atol=1e-6)
    # exp(0) * scale 1 = distance 1 from the centre (x, y) in stride units
    ys, xs = torch.meshgrid(torch.arange(3.), torch.arange(4.), indexing='ij')
    expected = torch.stack([xs - 1, ys - 1, xs + 1, ys + 1])
    assert torch.allclose(bbox_preds[0], expected.expand(2, -1, -1, -1), atol=1e-6)


def test_forward_anchor_based_boxes_are_the_anchors_in_stride_units():
    head = head_with_constant_outputs('anchor_based')
    _, bbox_preds = head((torch.rand(1, 16, 3, 4), ))
    # zero deltas decode to the anchor: 16 px (2 strides) square centred at (8x, 8y)
    ys, xs = torch.meshgrid(torch.arange(3.), torch.arange(4.), indexing='ij')
    expected = torch.stack([xs - 1, ys - 1, xs + 1, ys + 1])[None]
    assert torch.allclose(bbox_preds[0], expected, atol=1e-5)


def test_resampled_boxes_with_crossed_corners_fall_back_to_the_unsampled_box():
    # x1 sampled 3 columns to the right: x1' = (x + 3) - 1 > x2 = x + 1 while inside the map
    # (x < 1 for a width of 4), so the unsampled box is kept; beyond the map x1' = 0.
    head = head_with_constant_outputs(offset_bias=[0., 3., 0., 0., 0., 0., 0., 0.])
    _, bbox_preds = head((torch.rand(1, 16, 2, 4), ))
    ys, xs = torch.meshgrid(torch.arange(2.), torch.arange(4.), indexing='ij')
    expected = torch.stack([torch.where(xs < 1, xs - 1, torch.zeros_like(xs)), ys - 1, xs + 1,
                            ys + 1])[None]
    assert torch.allclose(bbox_preds[0], expected, atol=1e-5)


# ----------------------------------------------------------------------------- targets


# One 32x32 image, 4x4 anchors (16 px) at (8x, 8y); a gt (2, 2, 26, 14) of class 1 contains
# the centres of anchors 5, 6 and 7 only. Predictions (pixels): anchor 5 the gt itself
# (IoU 1, class-1 score 0.5), anchor 6 (2, 2, 14, 14) (IoU 1/2, score 0.8), anchor 7
# (14, 2, 26, 14) (IoU 1/2, score 0.4), every other anchor an empty box (IoU 0).
# Alignment metrics score * IoU^6: 0.5, 0.8 / 64, 0.4 / 64: with topk=2, anchors 5 and 6.
GT = InstanceData(bboxes=torch.tensor([[2., 2., 26., 14.]]), labels=torch.tensor([1]))


def crafted_predictions():
    scores = torch.full((16, 3), 0.1)
    bboxes = torch.zeros(16, 4)
    for ind, score, box in [(5, 0.5, (2., 2., 26., 14.)), (6, 0.8, (2., 2., 14., 14.)),
                            (7, 0.4, (14., 2., 26., 14.))]:
        scores[ind, 1] = score
        bboxes[ind] = torch.tensor(box)
    return scores, bboxes


def anchors_and_flags(head):
    anchors, flags = head.get_anchors([(4, 4)], [meta()], device='cpu')
    return anchors, flags


def test_task_aligned_targets_by_hand(set_epoch):
    set_epoch(4)
    head = make_head()
    scores, bboxes = crafted_predictions()
    anchors, flags = anchors_and_flags(head)
    _, labels, label_weights, bbox_targets, metrics = head.get_targets(
        scores[None], bboxes[None], anchors, flags, [GT], [meta()])
    assert head.epoch == 4
    expected_labels = torch.full((1, 16), 3)
    expected_labels[0, [5, 6]] = 1
    assert torch.equal(labels[0], expected_labels)
    assert torch.equal(label_weights[0], torch.ones(1, 16))
    assert torch.equal(bbox_targets[0][0, [5, 6]], GT.bboxes.expand(2, 4))
    assert torch.all(bbox_targets[0][0, :5] == 0)
    # each metric / (the gt's largest + 1e-7) * the gt's largest IoU (1)
    expected_metrics = torch.zeros(1, 16)
    expected_metrics[0, 5] = 0.5 / (0.5 + 1e-7)
    expected_metrics[0, 6] = (0.8 / 64) / (0.5 + 1e-7)
    assert torch.allclose(metrics[0], expected_metrics, atol=1e-7)


def record_calls(assigner, name, calls):
    """Make ``assigner.assign`` append ``name`` to ``calls`` before assigning."""
    assign = assigner.assign

    def recording_assign(*args, **kwargs):
        calls.append(name)
        return assign(*args, **kwargs)

    assigner.assign = recording_assign


def test_before_initial_epoch_atss_assigns_and_metrics_are_one_for_positives(set_epoch):
    set_epoch(3)
    head = make_head()
    calls = []
    for name in ('initial_assigner', 'alignment_assigner'):
        record_calls(getattr(head, name), name, calls)
    scores, bboxes = crafted_predictions()
    anchors, flags = anchors_and_flags(head)
    _, labels, _, bbox_targets, metrics = head.get_targets(
        scores[None], bboxes[None], anchors, flags, [GT], [meta()])
    assert calls == ['initial_assigner'] and head.epoch == 3
    # exactly ATSSHead's targets, with the metric the box weight (1 at positives)
    atss = ATSSHead._get_targets_single(head, torch.cat(anchors[0]), torch.cat(flags[0]), [16],
                                        GT, meta())
    assert torch.equal(labels[0][0], atss[1])
    assert torch.equal(bbox_targets[0][0], atss[3])
    positives = atss[1] < 3
    assert positives.any() and torch.equal(metrics[0][0], positives.float())

    set_epoch(4)
    calls.clear()
    head.get_targets(scores[None], bboxes[None], anchors, flags, [GT], [meta()])
    assert calls == ['alignment_assigner']


def test_get_targets_without_an_epoch_explains_where_it_comes_from(set_epoch):
    set_epoch(None)
    head = make_head()
    scores, bboxes = crafted_predictions()
    anchors, flags = anchors_and_flags(head)
    with pytest.raises(RuntimeError, match='epoch'):
        head.get_targets(scores[None], bboxes[None], anchors, flags, [GT], [meta()])


# ----------------------------------------------------------------------------- losses


def as_head_outputs(scores, bboxes):
    """[16, 3] probabilities and [16, 4] pixel boxes -> one level of outputs (stride 8)."""
    return [scores.reshape(1, 4, 4, 3).permute(0, 3, 1, 2)], \
        [(bboxes / 8).reshape(1, 4, 4, 4).permute(0, 3, 1, 2)]


def qfl_with_prob(p, labels, quality, beta=2.0):
    """Quality focal loss on probabilities, summed: every entry towards 0, a positive's own
    class towards its quality."""
    target = torch.zeros_like(p)
    pos = labels < p.size(1)
    target[pos, labels[pos]] = quality[pos]
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p))
    return (bce * (target - p).abs().pow(beta)).sum()


def focal_with_prob(p, labels, gamma=2.0, alpha=0.25):
    one_hot = F.one_hot(labels, p.size(1) + 1)[:, :-1].float()
    loss = -(one_hot * alpha * (1 - p).pow(gamma) * torch.log(p) +
             (1 - one_hot) * (1 - alpha) * p.pow(gamma) * torch.log(1 - p))
    return loss.sum()


def test_task_aligned_losses_by_hand(set_epoch):
    set_epoch(5)
    head = make_head()
    scores, bboxes = crafted_predictions()
    losses = head.loss_by_feat(*as_head_outputs(scores, bboxes), [GT], [meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox'} and len(losses['loss_cls']) == 1

    labels = torch.full((16, ), 3)
    labels[[5, 6]] = 1
    metrics = torch.zeros(16)
    metrics[5], metrics[6] = 0.5 / (0.5 + 1e-7), (0.8 / 64) / (0.5 + 1e-7)
    norm = metrics.sum()  # > 1, so not clamped
    assert torch.allclose(losses['loss_cls'][0], qfl_with_prob(scores, labels, metrics) / norm,
                          rtol=1e-5)
    # GIoU of the positives' boxes in stride units, weighted by their metrics
    giou = generalized_box_iou_loss(bboxes[[5, 6]] / 8, GT.bboxes.expand(2, 4) / 8)
    expected_bbox = 2.0 * (giou * metrics[[5, 6]]).sum() / norm
    assert torch.allclose(losses['loss_bbox'][0], expected_bbox, rtol=1e-5)


def test_initial_stage_losses_by_hand(set_epoch):
    set_epoch(0)
    head = make_head()
    scores, bboxes = crafted_predictions()
    bboxes = bboxes + torch.tensor([1., 2., 3., 4.])  # non-degenerate everywhere
    anchors, flags = anchors_and_flags(head)
    _, labels, _, targets, _ = head.get_targets(scores[None], bboxes[None], anchors, flags,
                                                [GT], [meta()])
    labels, targets = labels[0][0], targets[0][0]
    pos = torch.nonzero(labels < 3).squeeze(1)
    losses = head.loss_by_feat(*as_head_outputs(scores, bboxes), [GT], [meta()])

    # focal loss on the labels, over the number of positives
    assert torch.allclose(losses['loss_cls'][0], focal_with_prob(scores, labels) / len(pos),
                          rtol=1e-5)
    # GIoU weighted by the centerness of the anchor centre in its gt, over their sum
    centres = torch.cat(anchors[0])[pos].reshape(-1, 2, 2).mean(1)
    l_r = torch.stack([centres[:, 0] - targets[pos, 0], targets[pos, 2] - centres[:, 0]], 1)
    t_b = torch.stack([centres[:, 1] - targets[pos, 1], targets[pos, 3] - centres[:, 1]], 1)
    centerness = torch.sqrt(l_r.min(1)[0] / l_r.max(1)[0] * t_b.min(1)[0] / t_b.max(1)[0])
    giou = generalized_box_iou_loss(bboxes[pos] / 8, targets[pos] / 8)
    expected = 2.0 * (giou * centerness).sum() / max(centerness.sum(), 1)
    assert torch.allclose(losses['loss_bbox'][0], expected, rtol=1e-5)


def test_loss_without_gts_is_zero_box_loss_and_finite(set_epoch):
    set_epoch(10)
    head = make_head()
    scores, bboxes = crafted_predictions()
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    losses = head.loss_by_feat(*as_head_outputs(scores, bboxes), [empty], [meta()])
    assert losses['loss_bbox'][0] == 0
    # every entry towards 0, normalised by 1 (the clamp)
    assert torch.allclose(losses['loss_cls'][0],
                          qfl_with_prob(scores, torch.full((16, ), 3), torch.zeros(16)))


# ----------------------------------------------------------------------------- predict


def test_predict_uses_the_probabilities_and_boxes_as_they_are():
    head = make_head()
    scores = torch.full((16, 3), 0.01)
    scores[5, 2] = 0.9
    scores[10, 0] = 0.3
    bboxes = torch.zeros(16, 4)
    bboxes[5] = torch.tensor([1., 2., 20., 22.])
    bboxes[10] = torch.tensor([0., 0., 8., 8.])
    results = head.predict_by_feat(*as_head_outputs(scores, bboxes), batch_img_metas=[meta()])
    pred = results[0]
    # no sigmoid on the scores, boxes times the stride (as_head_outputs divided by 8)
    assert torch.allclose(pred.scores, torch.tensor([0.9, 0.3]))
    assert torch.equal(pred.labels, torch.tensor([2, 0]))
    assert torch.allclose(pred.bboxes, torch.stack([bboxes[5], bboxes[10]]))
