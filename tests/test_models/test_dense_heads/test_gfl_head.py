"""GFLHead and Integral: mmdetection's arguments and keys, the expectation of the distance
distribution by hand, quality targets = IoU of the decoded box with its gt, losses against
independent formulas, predict."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from helpers_atss_gfl_keys import gfl_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import box_iou, generalized_box_iou_loss

from mmdet_lite.models.dense_heads import AnchorHead, ATSSHead, GFLHead
from mmdet_lite.models.dense_heads.gfl_head import Integral
from mmdet_lite.registry import MODELS

TRAIN_CFG = dict(assigner=dict(type='ATSSAssigner', topk=4), allowed_border=-1, pos_weight=-1,
                 debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)
REG_MAX = 4
BINS = REG_MAX + 1
STRIDE = 8
# As in test_atss_head.py: with topk=4, the gt (2, 2, 14, 14) of a 32x32 image has the
# anchor centred at (8, 8), index 5 of the 4x4 grid, as its only positive.
GT_BOX = (2., 2., 14., 14.)
POS = 5


def one_level_head(**kwargs) -> GFLHead:
    """3 classes, one stride-8 level of 16x16 anchors centred at (8 x, 8 y), distances
    0..4 strides; the COCO config's losses."""
    cfg = dict(type='GFLHead', num_classes=3, in_channels=32, feat_channels=32,
               stacked_convs=2, reg_max=REG_MAX,
               anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                                     scales_per_octave=1, strides=[STRIDE]),
               loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0,
                             loss_weight=1.0),
               loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
               loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def meta(img_shape=(32, 32)) -> dict:
    return dict(img_shape=img_shape, pad_shape=img_shape, batch_input_shape=img_shape,
                ori_shape=img_shape, scale_factor=(1.0, 1.0))


def gts(box=GT_BOX, label=1) -> InstanceData:
    return InstanceData(bboxes=torch.tensor([box], dtype=torch.float32),
                        labels=torch.tensor([label]))


def peaked_logits(bins) -> torch.Tensor:
    """Distance logits [4 * BINS] putting (all but ~1e-12 of) each side's mass on a bin."""
    logits = torch.zeros(4, BINS)
    logits[torch.arange(4), torch.tensor(bins)] = 30.0
    return logits.reshape(-1)


# ----------------------------------------------------------------------------- Integral


def test_integral_is_the_expectation_of_each_sides_softmax():
    integral = Integral(reg_max=REG_MAX)
    logits = torch.stack([
        torch.log(torch.tensor([1., 2., 3., 1., 1.])),  # probs /8: (0+2+6+3+4)/8
        torch.zeros(BINS),  # uniform: mean of 0..4
        torch.tensor([30., 0., 0., 0., 0.]),
        torch.tensor([0., 0., 0., 0., 30.]),
    ]).reshape(1, -1)
    expected = torch.tensor([[15 / 8, 2.0, 0.0, 4.0]])
    assert torch.allclose(integral(logits), expected, atol=1e-6)
    # any leading shape: rows of 4 * (reg_max + 1) logits become rows of 4 distances
    maps = torch.randn(3, 2, 4 * BINS)
    out = integral(maps)
    assert out.shape == (6, 4)
    probs = maps.reshape(6, 4, BINS).softmax(-1)
    assert torch.allclose(out, (probs * torch.arange(float(BINS))).sum(-1), atol=1e-6)


def test_integral_project_is_a_saved_buffer():
    integral = Integral()
    assert integral.reg_max == 16
    assert list(integral.state_dict()) == ['project']
    assert torch.equal(integral.project, torch.arange(17, dtype=torch.float32))
    assert list(integral.parameters()) == []


# ----------------------------------------------------------------------------- definition


def test_arguments_and_defaults_are_mmdetections():
    params = inspect.signature(GFLHead.__init__).parameters
    assert list(params)[:10] == ['self', 'num_classes', 'in_channels', 'stacked_convs',
                                 'conv_cfg', 'norm_cfg', 'loss_dfl', 'bbox_coder', 'reg_max',
                                 'init_cfg']
    defaults = {name: p.default for name, p in params.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == dict(
        stacked_convs=4, conv_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25),
        bbox_coder=dict(type='DistancePointBBoxCoder'), reg_max=16,
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.01,
                      override=dict(type='Normal', name='gfl_cls', std=0.01,
                                    bias_prob=0.01)))
    # mmdetection derives it from AnchorHead, not from ATSSHead
    assert issubclass(GFLHead, AnchorHead) and not issubclass(GFLHead, ATSSHead)
    assert MODELS.get('GFLHead') is GFLHead


def test_keys_of_the_coco_head():
    head = MODELS.build(dict(
        type='GFLHead', num_classes=80, in_channels=256, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16, 32, 64, 128])))
    expected = gfl_head(prefix='')
    assert len(expected) == 4 * 2 * 3 + 2 * 2 + 5 + 1
    assert expected['gfl_reg.weight'] == (68, 256, 3, 3)
    assert shapes_of(head) == expected
    assert type(head.relu).__name__ == 'ReLU' and not head.relu.inplace
    assert head.reg_decoded_bbox is False  # AnchorHead's default; GFL decodes anyway


def test_several_anchors_per_position_is_an_assertion_error():
    with pytest.raises(AssertionError, match='one box per position'):
        one_level_head(anchor_generator=dict(type='AnchorGenerator', ratios=[0.5, 1.0],
                                             octave_base_scale=2, scales_per_octave=1,
                                             strides=[STRIDE]))


def test_forward_shapes_and_per_level_scales():
    head = one_level_head(anchor_generator=dict(type='AnchorGenerator', ratios=[1.0],
                                                octave_base_scale=2, scales_per_octave=1,
                                                strides=[8, 16]))
    feats = (torch.rand(2, 32, 4, 6), torch.rand(2, 32, 2, 3))
    cls_scores, bbox_preds = head(feats)
    assert [c.shape for c in cls_scores] == [(2, 3, 4, 6), (2, 3, 2, 3)]
    assert [b.shape for b in bbox_preds] == [(2, 4 * BINS, 4, 6), (2, 4 * BINS, 2, 3)]
    with torch.no_grad():
        head.scales[0].scale.fill_(-2.0)
        assert torch.allclose(head(feats)[1][0], -2 * bbox_preds[0])


# ----------------------------------------------------------------------------- losses


class RecordingQFL(torch.nn.Module):
    """Wraps the head's QFL to record the (labels, scores) targets it is given."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss
        self.targets = []

    def forward(self, pred, target, **kwargs):
        self.targets.append(target)
        return self.loss(pred, target, **kwargs)


def outputs_with_positive(bins, cls_logit=0.0):
    cls_scores = torch.full((1, 3, 4, 4), cls_logit, requires_grad=True)
    bbox_preds = torch.zeros(1, 4 * BINS, 4, 4)
    bbox_preds[0, :, 1, 1] = peaked_logits(bins)  # anchor 5
    return [cls_scores], [bbox_preds.requires_grad_()]


def test_quality_targets_are_the_iou_of_the_decoded_box_with_its_gt():
    head = one_level_head()
    head.loss_cls = RecordingQFL(head.loss_cls)
    cls_scores, bbox_preds = outputs_with_positive(bins=(1, 1, 0, 2))
    head.loss_by_feat(cls_scores, bbox_preds, [gts()], [meta()])
    (labels, scores), = head.loss_cls.targets
    # in stride units the anchor centre is (1, 1): the box (1-1, 1-1, 1+0, 1+2)
    pred_box = torch.tensor([[0., 0., 1., 3.]])
    gt_box = torch.tensor([GT_BOX]) / STRIDE
    iou = box_iou(pred_box, gt_box)[0, 0]
    assert abs(iou.item() - 1.125 / 4.125) < 1e-6  # by hand: 0.75 x 1.5 over 3 + 2.25 - 1.125
    expected_scores = torch.zeros(16)
    expected_scores[POS] = iou
    assert torch.allclose(scores, expected_scores, atol=1e-6)
    expected_labels = torch.full((16, ), 3)
    expected_labels[POS] = 1
    assert torch.equal(labels, expected_labels)


def test_losses_match_independent_formulas():
    head = one_level_head()
    cls_scores, bbox_preds = outputs_with_positive(bins=(1, 1, 0, 2))
    losses = head.loss_by_feat(cls_scores, bbox_preds, [gts()], [meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_dfl'}
    assert all(len(v) == 1 for v in losses.values())

    pred_box = torch.tensor([[0., 0., 1., 3.]])
    gt_box = torch.tensor([GT_BOX]) / STRIDE
    iou = box_iou(pred_box, gt_box)[0, 0]
    # QFL: every logit 0 (p = 0.5) towards 0, the positive's class towards the IoU;
    # summed and divided by the one positive
    p = 0.5
    neg = -math.log(1 - p) * p**2
    pos = -(iou * math.log(p) + (1 - iou) * math.log(1 - p)) * (iou - p).abs()**2
    assert torch.allclose(losses['loss_cls'][0], 47 * neg + pos, atol=1e-6)

    # The positive's weight is its top class score, 0.5; the weight sum (0.5) is clamped to
    # 1 as the normaliser. GIoU in stride units, loss_weight 2.
    weight = 0.5
    giou = generalized_box_iou_loss(pred_box, gt_box)[0]
    assert torch.allclose(losses['loss_bbox'][0], 2 * weight * giou, atol=1e-6)
    # DFL: each side's target is 0.75 strides (centre (1, 1) to the gt sides), split over
    # bins 0 and 1 as 0.25 / 0.75; mean over the 4 sides, loss_weight 0.25
    log_probs = F.log_softmax(peaked_logits((1, 1, 0, 2)).reshape(4, BINS), dim=1)
    dfl = -(0.25 * log_probs[:, 0] + 0.75 * log_probs[:, 1])
    assert torch.allclose(losses['loss_dfl'][0], 0.25 * weight * dfl.mean(), rtol=1e-5)

    sum(v[0] for v in losses.values()).backward()
    assert bbox_preds[0].grad is not None and cls_scores[0].grad is not None


def test_targets_are_the_gt_boxes_whatever_reg_decoded_bbox_says():
    head = one_level_head()
    anchor_list, valid_list = head.get_anchors([(4, 4)], [meta()])
    anchors, labels, _, bbox_targets, _, avg_factor = head.get_targets(
        anchor_list, valid_list, [gts()], [meta()])
    assert head.reg_decoded_bbox is False
    assert torch.equal(bbox_targets[0][0, POS], torch.tensor(GT_BOX))
    assert bbox_targets[0][0].abs().sum(1).nonzero().flatten().tolist() == [POS]
    assert torch.equal(anchors[0][0, POS], torch.tensor([0., 0., 16., 16.]))
    assert avg_factor == 1


def test_no_positive_gives_zero_box_losses():
    head = one_level_head()
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    cls_scores, bbox_preds = outputs_with_positive(bins=(1, 1, 1, 1))
    losses = head.loss_by_feat(cls_scores, bbox_preds, [empty], [meta()])
    assert losses['loss_bbox'][0] == 0 and losses['loss_dfl'][0] == 0


# ----------------------------------------------------------------------------- predict


def test_predict_decodes_expected_distances_around_the_anchor_centre():
    head = one_level_head().eval()
    cls_scores = torch.full((1, 3, 4, 4), -10.0)
    cls_scores[0, 0, 1, 1] = 3.0
    bbox_preds = torch.zeros(1, 4 * BINS, 4, 4)
    bbox_preds[0, :, 1, 1] = peaked_logits((1, 1, 0, 2))
    results = head.predict_by_feat([cls_scores], [bbox_preds], batch_img_metas=[meta()])
    pred = results[0]
    assert len(pred) == 1 and pred.labels.tolist() == [0]
    assert torch.allclose(pred.scores, torch.sigmoid(torch.tensor([3.0])))
    # centre (8, 8) minus / plus (1, 1, 0, 2) strides of 8 px
    assert torch.allclose(pred.bboxes, torch.tensor([[0., 0., 8., 24.]]), atol=1e-4)


def test_training_raises_the_quality_of_the_positive():
    # The box losses are weighted by the positive's class score, which starts at ~0.01: the
    # total loss first grows as the score rises, so track the terms GFL learns instead.
    torch.manual_seed(0)
    head = one_level_head()
    head.init_weights()
    head.loss_cls = RecordingQFL(head.loss_cls)
    feats = (torch.rand(1, 32, 4, 4), )
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    ious, cls_losses = [], []
    for _ in range(30):
        losses = head.loss_by_feat(*head(feats), [gts()], [meta()])
        ious.append(head.loss_cls.targets[-1][1][POS].item())
        cls_losses.append(losses['loss_cls'][0].item())
        optimizer.zero_grad()
        sum(sum(v) for v in losses.values()).backward()
        optimizer.step()
    assert sum(ious[-5:]) / 5 > ious[0] + 0.2
    assert sum(cls_losses[-5:]) / 5 < 0.5 * max(cls_losses)
