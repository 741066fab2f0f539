"""RTMDetHead / RTMDetSepBNHead: keys, forward contract, targets and losses by hand, predict."""
import copy
import inspect
import math

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import box_iou, generalized_box_iou_loss

from mmdet_lite.models.dense_heads import RTMDetHead, RTMDetSepBNHead
from mmdet_lite.models.dense_heads import rtmdet_head as rtmdet_head_module
from mmdet_lite.models.utils import sigmoid_geometric_mean
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

TRAIN_CFG = dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13), allowed_border=-1,
                 pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=30000, min_bbox_size=0, score_thr=0.001,
                nms=dict(type='nms', iou_threshold=0.65), max_per_img=300)
QFL = dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0)
GIOU = dict(type='GIoULoss', loss_weight=2.0)

# mmdetection's rtmdet_tiny_8xb32-300e_coco.py head (rtmdet_l's with the tiny overrides).
TINY_HEAD = dict(
    type='RTMDetSepBNHead', num_classes=80, in_channels=96, stacked_convs=2, feat_channels=96,
    anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
    bbox_coder=dict(type='DistancePointBBoxCoder'), loss_cls=QFL, loss_bbox=GIOU,
    with_objectness=False, exp_on_reg=False, share_conv=True, pred_kernel_size=1,
    norm_cfg=dict(type='SyncBN'), act_cfg=dict(type='SiLU', inplace=True))


def one_level_head(**kwargs) -> RTMDetHead:
    """2 classes, one stride-16 level of points at (16 x, 16 y) (offset 0), QFL + GIoU."""
    cfg = dict(type='RTMDetHead', num_classes=2, in_channels=4, feat_channels=4,
               stacked_convs=1, norm_cfg=dict(type='BN'),
               anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[16]),
               bbox_coder=dict(type='DistancePointBBoxCoder'), loss_cls=QFL, loss_bbox=GIOU,
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def meta(img_shape=(64, 64), scale_factor=(1.0, 1.0), ori_shape=None) -> dict:
    return dict(img_shape=img_shape, pad_shape=img_shape, batch_input_shape=img_shape,
                ori_shape=ori_shape or img_shape, scale_factor=scale_factor)


# ----------------------------------------------------------------------------- layers


def sep_bn_expected_keys(levels: int, convs: int, in_ch: int, ch: int, classes: int,
                         kernel: int, objectness: bool) -> dict:
    """Keys of mmdetection's RTMDetSepBNHead: per level, ConvModules (conv without bias, as a
    norm follows, then ``bn``) and the 1x1 (``pred_kernel_size``) predictors."""
    expected = {}
    for level in range(levels):
        for tower in ('cls_convs', 'reg_convs'):
            for i in range(convs):
                prefix = f'{tower}.{level}.{i}'
                expected[f'{prefix}.conv.weight'] = (ch, in_ch if i == 0 else ch, 3, 3)
                for name in ('weight', 'bias', 'running_mean', 'running_var'):
                    expected[f'{prefix}.bn.{name}'] = (ch, )
                expected[f'{prefix}.bn.num_batches_tracked'] = ()
        preds = [('rtm_cls', classes), ('rtm_reg', 4)] + ([('rtm_obj', 1)] if objectness else [])
        for name, out in preds:
            expected[f'{name}.{level}.weight'] = (out, ch, kernel, kernel)
            expected[f'{name}.{level}.bias'] = (out, )
    return expected


def shapes(module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_sep_bn_head_keys_match_rtmdet_tiny():
    head = MODELS.build(copy.deepcopy(TINY_HEAD))
    expected = sep_bn_expected_keys(3, 2, 96, 96, 80, 1, objectness=False)
    assert len(expected) == 84
    assert shapes(head) == expected
    assert isinstance(head.cls_convs[2][1].bn, torch.nn.SyncBatchNorm)


def test_sep_bn_head_with_objectness_and_kernel_3_keys():
    head = RTMDetSepBNHead(num_classes=3, in_channels=8, feat_channels=16, stacked_convs=1,
                           pred_kernel_size=3,
                           anchor_generator=dict(type='MlvlPointGenerator', strides=[8, 16]))
    assert shapes(head) == sep_bn_expected_keys(2, 1, 8, 16, 3, 3, objectness=True)


def test_rtmdet_head_keys_from_atss_defaults():
    """RTMDetHead keeps ATSSHead's GN towers and 3x3 predictors, shared across levels, plus
    objectness and one Scale per level."""
    head = RTMDetHead(num_classes=80, in_channels=64, feat_channels=96,
                      anchor_generator=dict(type='MlvlPointGenerator', strides=[8, 16, 32]),
                      bbox_coder=dict(type='DistancePointBBoxCoder'))
    expected = {}
    for tower in ('cls_convs', 'reg_convs'):
        for i in range(4):  # ATSSHead's stacked_convs
            expected[f'{tower}.{i}.conv.weight'] = (96, 64 if i == 0 else 96, 3, 3)
            expected[f'{tower}.{i}.gn.weight'] = (96, )
            expected[f'{tower}.{i}.gn.bias'] = (96, )
    for name, out in (('rtm_cls', 80), ('rtm_reg', 4), ('rtm_obj', 1)):
        expected[f'{name}.weight'] = (out, 96, 3, 3)
        expected[f'{name}.bias'] = (out, )
    for level in range(3):
        expected[f'scales.{level}.scale'] = ()
    assert shapes(head) == expected
    assert head.cls_convs[0].gn.num_groups == 32
    assert isinstance(head.cls_convs[0].activate, torch.nn.ReLU)
    # ATSSHead's centerness loss is built, though RTMDet never uses it.
    assert type(head.loss_centerness).__name__ == 'CrossEntropyLoss'
    assert head.loss_centerness.use_sigmoid


def test_constructor_defaults_match_mmdet():
    def defaults(cls):
        return {name: p.default for name, p in inspect.signature(cls).parameters.items()
                if p.default is not inspect.Parameter.empty}

    head = defaults(RTMDetHead)
    assert head['with_objectness'] is True and head['act_cfg'] == dict(type='ReLU')
    assert head['pred_kernel_size'] == 3 and head['stacked_convs'] == 4
    assert head['conv_cfg'] is None and head['reg_decoded_bbox'] is True
    assert head['norm_cfg'] == dict(type='GN', num_groups=32, requires_grad=True)
    assert head['loss_centerness'] == dict(type='CrossEntropyLoss', use_sigmoid=True,
                                           loss_weight=1.0)
    assert head['init_cfg'] == dict(type='Normal', layer='Conv2d', std=0.01,
                                    override=dict(type='Normal', name='atss_cls', std=0.01,
                                                  bias_prob=0.01))
    assert defaults(RTMDetSepBNHead) == dict(
        share_conv=True, use_depthwise=False, norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='SiLU'), pred_kernel_size=1, exp_on_reg=False)


def test_share_conv_shares_conv_parameters_not_bn():
    head = MODELS.build(copy.deepcopy(TINY_HEAD))
    for tower in (head.cls_convs, head.reg_convs):
        for i in range(2):
            for level in (1, 2):
                assert tower[level][i].conv.weight is tower[0][i].conv.weight
                assert tower[level][i].bn is not tower[0][i].bn
                assert tower[level][i].bn.weight is not tower[0][i].bn.weight
    assert head.rtm_cls[1].weight is not head.rtm_cls[0].weight
    # parameters() counts a shared tensor once: 4 convs, 3 x 4 BNs x 2, 3 x 2 predictors x 2.
    assert len(list(head.parameters())) == 4 + 24 + 12

    separate = MODELS.build(dict(copy.deepcopy(TINY_HEAD), share_conv=False))
    assert separate.cls_convs[1][0].conv.weight is not separate.cls_convs[0][0].conv.weight
    assert len(list(separate.parameters())) == 12 + 24 + 12


def test_shared_conv_loads_a_checkpoint_consistently():
    """A checkpoint lists the shared conv under every level; after loading, all levels hold
    level 0's values (the tensors are one)."""
    head = MODELS.build(copy.deepcopy(TINY_HEAD))
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in head.state_dict().items()}
    state['cls_convs.1.0.conv.weight'] = state['cls_convs.0.0.conv.weight'].clone()
    state['cls_convs.2.0.conv.weight'] = state['cls_convs.0.0.conv.weight'].clone()
    head.load_state_dict(state, strict=True)
    assert torch.equal(head.cls_convs[2][0].conv.weight, state['cls_convs.0.0.conv.weight'])


def test_depthwise_with_share_conv_fails_as_in_mmdet():
    with pytest.raises(AttributeError, match='share_conv'):
        RTMDetSepBNHead(num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
                        use_depthwise=True,
                        anchor_generator=dict(type='MlvlPointGenerator', strides=[8, 16]))
    head = RTMDetSepBNHead(num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
                           use_depthwise=True, share_conv=False,
                           anchor_generator=dict(type='MlvlPointGenerator', strides=[8, 16]))
    assert 'cls_convs.1.0.depthwise_conv.conv.weight' in head.state_dict()


def test_init_weights_cls_bias_prior_and_small_normal():
    torch.manual_seed(0)
    head = MODELS.build(dict(copy.deepcopy(TINY_HEAD), with_objectness=True))
    head.init_weights()
    prior_bias = -math.log((1 - 0.01) / 0.01)
    for level in range(3):
        assert torch.allclose(head.rtm_cls[level].bias, torch.full((80, ), prior_bias))
        assert torch.allclose(head.rtm_obj[level].bias, torch.full((1, ), prior_bias))
        assert torch.all(head.rtm_reg[level].bias == 0)
        assert head.rtm_cls[level].weight.std().item() == pytest.approx(0.01, rel=0.2)
        assert torch.all(head.cls_convs[level][0].bn.weight == 1)
    assert head.cls_convs[0][0].conv.weight.std().item() == pytest.approx(0.01, rel=0.1)


# ----------------------------------------------------------------------------- forward


def test_rtmdet_head_forward_distances_are_scaled_exp_times_stride():
    head = RTMDetHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
                      norm_cfg=dict(type='BN'),
                      anchor_generator=dict(type='MlvlPointGenerator', strides=[8, 16]))
    with torch.no_grad():
        for conv, bias in ((head.rtm_reg, math.log(2.0)), (head.rtm_cls, 1.5),
                           (head.rtm_obj, -0.5)):
            conv.weight.zero_()
            conv.bias.fill_(bias)
        head.scales[0].scale.fill_(3.0)
        head.scales[1].scale.fill_(0.5)
    feats = (torch.rand(2, 8, 8, 8), torch.rand(2, 8, 4, 4))
    cls_scores, bbox_preds = head(feats)
    assert isinstance(cls_scores, tuple) and isinstance(bbox_preds, tuple)
    assert [tuple(s.shape) for s in cls_scores] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, 8, 8), (2, 4, 4, 4)]
    assert torch.allclose(bbox_preds[0], torch.full_like(bbox_preds[0], 3.0 * 2.0 * 8))
    assert torch.allclose(bbox_preds[1], torch.full_like(bbox_preds[1], 0.5 * 2.0 * 16))
    # With objectness the logit is that of sqrt(sigmoid(cls) * sigmoid(obj)).
    prob = math.sqrt(torch.sigmoid(torch.tensor(1.5)) * torch.sigmoid(torch.tensor(-0.5)))
    assert torch.allclose(cls_scores[1], torch.full_like(cls_scores[1],
                                                         math.log(prob / (1 - prob))), atol=1e-5)


@pytest.mark.parametrize('exp_on_reg', [False, True])
def test_sep_bn_forward_distances(exp_on_reg):
    head = RTMDetSepBNHead(num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1,
                           with_objectness=False, exp_on_reg=exp_on_reg,
                           anchor_generator=dict(type='MlvlPointGenerator', strides=[8, 16]))
    with torch.no_grad():
        for level, raw in enumerate((0.5, -0.25)):
            head.rtm_reg[level].weight.zero_()
            head.rtm_reg[level].bias.fill_(raw)
            head.rtm_cls[level].weight.zero_()
            head.rtm_cls[level].bias.fill_(0.75)
    cls_scores, bbox_preds = head((torch.rand(1, 8, 4, 4), torch.rand(1, 8, 2, 2)))
    for level, (raw, stride) in enumerate(((0.5, 8), (-0.25, 16))):
        value = (math.exp(raw) if exp_on_reg else raw) * stride
        assert torch.allclose(bbox_preds[level], torch.full((1, 4, 4 >> level, 4 >> level),
                                                            value))
        assert torch.allclose(cls_scores[level], torch.full_like(cls_scores[level], 0.75))


def test_sigmoid_geometric_mean_value_and_finite_gradient():
    x = torch.tensor([-2.0, 0.3, 4.0], requires_grad=True)
    y = torch.tensor([1.0, -0.7, 2.0], requires_grad=True)
    sigmoid_geometric_mean(x, y).sum().backward()
    xr, yr = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    reference = (xr.sigmoid() * yr.sigmoid()).sqrt()
    reference.sum().backward()
    assert torch.allclose(sigmoid_geometric_mean(x, y), reference)
    assert torch.allclose(x.grad, xr.grad) and torch.allclose(y.grad, yr.grad)
    # Where autograd through sqrt gives nan, the analytic gradient stays finite (0).
    far = torch.tensor([-200.0], requires_grad=True)
    sigmoid_geometric_mean(far, far).sum().backward()
    assert torch.isfinite(far.grad).all()


# ----------------------------------------------------------------------------- losses

GT_BOXES = torch.tensor([[10., 10., 40., 40.], [30., 4., 62., 26.]])
GT_LABELS = torch.tensor([0, 1])
# Predicted boxes of a 4x4 grid of stride-16 points (index y * 4 + x, point (16 x, 16 y)):
# 2x2 boxes around their points except these.
PRED_BOXES = {5: [11., 10., 40., 40.], 9: [12., 10., 40., 40.], 10: [10., 10., 40., 36.],
              7: [30., 4., 62., 26.]}


def fixed_outputs():
    """cls_scores [1, 2, 4, 4] and bbox_preds [1, 4, 4, 4] (distances) of one level."""
    points = torch.tensor([[16. * (i % 4), 16. * (i // 4)] for i in range(16)])
    boxes = torch.cat([points - 1, points + 1], dim=1)
    for idx, box in PRED_BOXES.items():
        boxes[idx] = torch.tensor(box)
    dists = torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], dim=1)  # [16, 4]
    logits = torch.stack([-1 + 0.1 * torch.arange(16.), -1.5 + 0.05 * torch.arange(16.)], 1)
    cls_scores = logits.T.reshape(1, 2, 4, 4).clone().requires_grad_()
    bbox_preds = dists.T.reshape(1, 4, 4, 4).clone().requires_grad_()
    return cls_scores, bbox_preds, points, boxes, logits


def hand_assignment(points, boxes, logits):
    """DynamicSoftLabelAssigner by hand on the candidates: gt index and IoU per positive."""
    inside = ((points[:, None] > GT_BOXES[None, :, :2])
              & (points[:, None] < GT_BOXES[None, :, 2:])).all(-1)  # [16, G]
    cand = inside.any(1).nonzero().squeeze(1).tolist()
    ious = box_iou(boxes[cand], GT_BOXES)  # [V, G]
    prob = logits[cand].sigmoid()
    cost = torch.zeros(len(cand), 2)
    for v in range(len(cand)):
        for g in range(2):
            target = torch.zeros(2)
            target[GT_LABELS[g]] = ious[v, g]
            bce = -(target * prob[v].log() + (1 - target) * (1 - prob[v]).log())
            cls_cost = (bce * (target - prob[v]) ** 2).sum()
            center = (GT_BOXES[g, :2] + GT_BOXES[g, 2:]) / 2
            distance = (points[cand[v]] - center).norm() / 16
            cost[v, g] = cls_cost - 3 * torch.log(ious[v, g] + 1e-7) + 10**(distance - 3)
    chosen = {}
    for g in range(2):
        k = max(1, int(ious[:, g].sort(descending=True).values[:13].sum()))
        for v in cost[:, g].argsort()[:k].tolist():
            chosen.setdefault(v, []).append(g)
    assigned = {}
    for v, gts in chosen.items():
        # A prior chosen by several gts goes to the one it is cheapest for.
        g = gts[0] if len(gts) == 1 else int(cost[v].argmin())
        assigned[cand[v]] = (g, float(ious[v, g]))
    return cand, assigned


def test_assignment_matches_hand_computed_cost():
    head = one_level_head()
    cls_scores, bbox_preds, points, boxes, logits = fixed_outputs()
    cand, expected = hand_assignment(points, boxes, logits)
    assert cand == [5, 6, 7, 9, 10]
    # gt 0 has top IoUs 0.967 + 0.933 + 0.867 + ... -> k = 2: priors 5 and 9 (cheapest);
    # gt 1 has one good prediction (prior 7, IoU 1) -> k = 1.
    assert sorted(expected) == [5, 7, 9]
    assert [expected[p][0] for p in (5, 7, 9)] == [0, 1, 0]
    assert expected[5][1] == pytest.approx(29 / 30) and expected[9][1] == pytest.approx(28 / 30)

    metas = [meta()]
    anchors, valid = head.get_anchors([(4, 4)], metas)
    flat_scores, decoded = head._flatten_and_decode([cls_scores], [bbox_preds], anchors[0])
    assert torch.allclose(decoded[0][0], boxes)
    gt = InstanceData(bboxes=GT_BOXES.clone(), labels=GT_LABELS.clone())
    _, labels, label_weights, bbox_targets, metrics, _ = head.get_targets(
        flat_scores, torch.cat(decoded, 1), anchors, valid, [gt], metas)
    expected_labels = torch.full((16, ), 2)
    expected_metrics = torch.zeros(16)
    for prior, (g, iou) in expected.items():
        expected_labels[prior] = GT_LABELS[g]
        expected_metrics[prior] = iou
        assert torch.equal(bbox_targets[0][0, prior], GT_BOXES[g])
    assert torch.equal(labels[0][0], expected_labels)
    assert torch.allclose(metrics[0][0], expected_metrics, atol=1e-6)
    assert torch.equal(label_weights[0][0], torch.ones(16))


def qfl_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Quality focal loss, summed: BCE(sigmoid(x), t) * |t - sigmoid(x)|^2 per entry."""
    prob = logits.sigmoid()
    bce = -(targets * torch.log(prob) + (1 - targets) * torch.log(1 - prob))
    return (bce * (targets - prob).abs()**2).sum()


def test_losses_match_independent_qfl_and_giou():
    head = one_level_head()
    cls_scores, bbox_preds, points, boxes, logits = fixed_outputs()
    _, expected = hand_assignment(points, boxes, logits)
    gt = InstanceData(bboxes=GT_BOXES.clone(), labels=GT_LABELS.clone())
    losses = head.loss_by_feat([cls_scores], [bbox_preds], [gt], [meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox'} and len(losses['loss_cls']) == 1

    targets = torch.zeros(16, 2)
    pos = sorted(expected)
    for prior in pos:
        g, iou = expected[prior]
        targets[prior, GT_LABELS[g]] = iou
    weights = torch.tensor([expected[p][1] for p in pos])
    avg = weights.sum()  # total IoU of the positives (> 1 here, so no clamp)
    assert losses['loss_cls'][0].item() == pytest.approx((qfl_sum(logits, targets) / avg).item(),
                                                         rel=1e-5)
    pos_gt = GT_BOXES[[expected[p][0] for p in pos]]
    giou = generalized_box_iou_loss(boxes[pos], pos_gt, reduction='none')
    assert losses['loss_bbox'][0].item() == pytest.approx(
        (2.0 * (giou * weights).sum() / avg).item(), rel=1e-5)
    sum(losses['loss_cls'] + losses['loss_bbox']).backward()
    assert cls_scores.grad.abs().sum() > 0 and bbox_preds.grad.abs().sum() > 0


def test_image_without_gt_is_all_negative():
    head = one_level_head()
    cls_scores, bbox_preds, points, boxes, logits = fixed_outputs()
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    losses = head.loss_by_feat([cls_scores], [bbox_preds], [empty], [meta()])
    # Every entry is pushed to 0; the normaliser clamps to 1; no box loss.
    assert losses['loss_cls'][0].item() == pytest.approx(
        qfl_sum(logits, torch.zeros(16, 2)).item(), rel=1e-5)
    assert losses['loss_bbox'][0].item() == 0
    sum(losses['loss_cls'] + losses['loss_bbox']).backward()
    assert torch.isfinite(bbox_preds.grad).all()


def test_batch_normalises_over_all_images():
    """An empty image adds its negatives to loss_cls and nothing to the normaliser."""
    head = one_level_head()
    cls_scores, bbox_preds, points, boxes, logits = fixed_outputs()
    gt = InstanceData(bboxes=GT_BOXES.clone(), labels=GT_LABELS.clone())
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    single = head.loss_by_feat([cls_scores], [bbox_preds], [gt], [meta()])
    batch = head.loss_by_feat([cls_scores.repeat(2, 1, 1, 1)], [bbox_preds.repeat(2, 1, 1, 1)],
                              [gt, empty], [meta(), meta()])
    avg = 29 / 30 + 28 / 30 + 1.0
    negatives = qfl_sum(logits, torch.zeros(16, 2))
    assert batch['loss_cls'][0].item() == pytest.approx(
        single['loss_cls'][0].item() + negatives.item() / avg, rel=1e-5)
    assert batch['loss_bbox'][0].item() == pytest.approx(single['loss_bbox'][0].item(), rel=1e-6)


def test_normalisers_are_averaged_over_ranks(monkeypatch):
    """Both normalisers go through the cross-rank mean: here another rank's total IoU is 5."""
    head = one_level_head()
    cls_scores, bbox_preds, *_ = fixed_outputs()
    gt = InstanceData(bboxes=GT_BOXES.clone(), labels=GT_LABELS.clone())
    local = head.loss_by_feat([cls_scores], [bbox_preds], [gt], [meta()])
    monkeypatch.setattr(rtmdet_head_module, 'reduce_mean', lambda t: (t + 5.0) / 2)
    merged = head.loss_by_feat([cls_scores], [bbox_preds], [gt], [meta()])
    avg = 29 / 30 + 28 / 30 + 1.0
    for key in ('loss_cls', 'loss_bbox'):
        assert merged[key][0].item() == pytest.approx(
            local[key][0].item() * avg / ((avg + 5.0) / 2), rel=1e-5)


def test_loss_from_features_runs_on_three_levels():
    head = MODELS.build(dict(copy.deepcopy(TINY_HEAD), num_classes=3, in_channels=8,
                             feat_channels=8, norm_cfg=dict(type='BN'),
                             train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG)))
    head.init_weights()
    feats = tuple(torch.rand(2, 8, 64 // s, 64 // s) for s in (8, 16, 32))
    samples = []
    for boxes in ([[4., 6., 40., 50.]], []):
        sample = DetDataSample(metainfo=meta())
        sample.gt_instances = InstanceData(bboxes=torch.tensor(boxes).reshape(-1, 4),
                                           labels=torch.zeros(len(boxes), dtype=torch.long))
        samples.append(sample)
    losses = head.loss(feats, samples)
    assert len(losses['loss_cls']) == 3 and len(losses['loss_bbox']) == 3
    total = sum(losses['loss_cls'] + losses['loss_bbox'])
    assert torch.isfinite(total) and total > 0


def test_non_square_stride_is_rejected_like_mmdet():
    head = one_level_head(anchor_generator=dict(type='MlvlPointGenerator', offset=0,
                                                strides=[(16, 8)]))
    cls_scores, bbox_preds, *_ = fixed_outputs()
    gt = InstanceData(bboxes=GT_BOXES.clone(), labels=GT_LABELS.clone())
    with pytest.raises(AssertionError, match='square'):
        head.loss_by_feat([cls_scores], [bbox_preds], [gt], [meta()])


# ----------------------------------------------------------------------------- predict


def predict_outputs():
    """One stride-16 level on a 64x64 input: 4 confident priors, the rest below score_thr."""
    logits = torch.full((16, 2), -10.0)
    dists = torch.ones(16, 4)
    for prior, label, logit, dist in ((5, 1, 3.0, [5., 6., 24., 24.]),   # [11, 10, 40, 40]
                                      (9, 1, 1.0, [4., 22., 24., 8.]),   # [12, 10, 40, 40]
                                      (10, 0, 2.0, [22., 22., 8., 4.]),  # [10, 10, 40, 36]
                                      (15, 0, 0.0, [4., 4., 30., 30.])):  # [44, 44, 78, 78]
        logits[prior, label] = logit
        dists[prior] = torch.tensor(dist)
    return (logits.T.reshape(1, 2, 4, 4), ), (dists.T.reshape(1, 4, 4, 4), )


def test_predict_rescales_clips_and_runs_classwise_nms(monkeypatch):
    head = one_level_head()
    outs = predict_outputs()
    monkeypatch.setattr(head, 'forward', lambda feats: outs)
    sample = DetDataSample(metainfo=meta(scale_factor=(2.0, 2.0), ori_shape=(32, 32)))
    results = head.predict((torch.zeros(1, 4, 4, 4), ), [sample], rescale=True)
    assert len(results) == 1 and isinstance(results[0], InstanceData)
    pred = results[0]
    # Prior 9 (label 1) overlaps prior 5 with IoU 28/29 > 0.65: suppressed. Prior 10 has
    # label 0, so it survives next to prior 5. Prior 15's box is clipped to the 64x64 input,
    # then all boxes are halved to the 32x32 original image.
    assert torch.allclose(pred.bboxes, torch.tensor([[5.5, 5., 20., 20.], [5., 5., 20., 18.],
                                                     [22., 22., 32., 32.]]))
    assert torch.equal(pred.labels, torch.tensor([1, 0, 0]))
    assert torch.allclose(pred.scores, torch.sigmoid(torch.tensor([3., 2., 0.])))

    no_nms = head.predict_by_feat(*outs, batch_img_metas=[sample.metainfo], rescale=False,
                                  with_nms=False)[0]
    assert no_nms.bboxes.shape == (4, 4) and len(no_nms.scores) == 4
    assert sorted(no_nms.labels.tolist()) == [0, 0, 1, 1]
    assert [12., 10., 40., 40.] in no_nms.bboxes.tolist()


def test_predict_from_features_gives_instances_per_image():
    # exp_on_reg: positive distances, so no box is dropped as empty at initialisation.
    head = MODELS.build(dict(copy.deepcopy(TINY_HEAD), num_classes=3, in_channels=8,
                             feat_channels=8, norm_cfg=dict(type='BN'), exp_on_reg=True,
                             test_cfg=ConfigDict(TEST_CFG, max_per_img=7)))
    head.init_weights()
    head.eval()
    feats = tuple(torch.rand(2, 8, 64 // s, 64 // s) for s in (8, 16, 32))
    samples = [DetDataSample(metainfo=meta(scale_factor=(0.5, 0.5), ori_shape=(128, 128)))
               for _ in range(2)]
    results = head.predict(feats, samples, rescale=True)
    assert len(results) == 2
    for res in results:
        assert res.bboxes.shape == (7, 4)
        assert res.scores.shape == (7, ) and res.labels.shape == (7, )
        assert res.bboxes.min() >= 0 and res.bboxes.max() <= 128
        assert res.labels.dtype == torch.long and res.labels.max() < 3
    assert torch.all(results[0].scores[:-1] >= results[0].scores[1:])
