"""AutoAssignHead: defaults and keys, init, forward (pixel distances, objectness on the reg
tower, corner points), the center prior, the positive / negative / center losses on
hand-computed cases, and a tiny overfit.

The loss hand cases use two levels (strides 8 and 16) of a 16x16 image with points at the cell
corners (offset 0): level 0 (0, 0), (8, 0), (0, 8), (8, 8); level 1 (0, 0).
"""
import inspect
import math

import pytest
import torch
from helpers_centernet_autoassign_keys import autoassign_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import AutoAssignHead, FCOSHead
from mmdet_lite.models.dense_heads.autoassign_head import CenterPrior
from mmdet_lite.registry import MODELS

TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)
SIZES = [(2, 2), (1, 1)]
META = dict(img_shape=(16, 16))


def make_head(**kwargs) -> AutoAssignHead:
    """Two classes, 8 channels, one conv per tower, GN of 4 groups, strides 8 and 16."""
    cfg = dict(type='AutoAssignHead', num_classes=2, in_channels=8, feat_channels=8,
               stacked_convs=1, strides=[8, 16], norm_cfg=dict(type='GN', num_groups=4),
               loss_bbox=dict(type='GIoULoss', loss_weight=5.0), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def gts(bboxes, labels) -> InstanceData:
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


def level_maps(flat: torch.Tensor):
    """Flat one-image rows [5, C] -> per level [1, C, h, w]."""
    return [flat[:4].T.reshape(1, -1, 2, 2), flat[4:].T.reshape(1, -1, 1, 1)]


# ----------------------------------------------------------------------------- layers


def test_registered_with_mmdetection_defaults():
    assert MODELS.get('AutoAssignHead') is AutoAssignHead
    assert issubclass(AutoAssignHead, FCOSHead)
    params = inspect.signature(AutoAssignHead.__init__).parameters
    assert list(params) == ['self', 'args', 'force_topk', 'topk', 'pos_loss_weight',
                            'neg_loss_weight', 'center_loss_weight', 'kwargs']
    defaults = {name: p.default for name, p in params.items()}
    assert defaults['force_topk'] is False and defaults['topk'] == 9
    assert defaults['pos_loss_weight'] == 0.25 and defaults['neg_loss_weight'] == 0.75
    assert defaults['center_loss_weight'] == 0.75
    params = inspect.signature(CenterPrior.__init__).parameters
    assert {name: p.default for name, p in params.items() if name != 'self'} == dict(
        force_topk=False, topk=9, num_classes=80, strides=(8, 16, 32, 64, 128))


def test_state_dict_keys_and_shapes_match_mmdetection():
    head = AutoAssignHead(num_classes=80, in_channels=256)
    assert shapes_of(head) == autoassign_head('', num_classes=80)
    assert torch.equal(head.center_prior.mean, torch.zeros(80, 2))
    assert torch.equal(head.center_prior.sigma, torch.ones(80, 2))
    assert head.center_prior.strides == head.strides == (4, 8, 16, 32, 64)


def test_conv_bias_is_forced_and_points_sit_at_cell_corners():
    assert make_head().conv_bias is True
    with pytest.raises(TypeError):
        make_head(conv_bias=False)
    points = make_head().prior_generator.grid_priors(SIZES)
    assert torch.equal(points[0], torch.tensor([[0., 0.], [8., 0.], [0., 8.], [8., 8.]]))


def test_init_weights_sets_the_cls_and_reg_biases():
    head = make_head()
    head.init_weights()
    assert torch.allclose(head.conv_cls.bias, torch.full((2, ), math.log(0.02 / 0.98)))
    assert torch.equal(head.conv_reg.bias, torch.full((4, ), 4.0))
    assert head.conv_reg.weight.std().item() < 0.05
    assert torch.equal(head.conv_centerness.bias, torch.zeros(1))


def test_forward_gives_pixel_distances_and_objectness_from_the_reg_tower():
    head = make_head()  # centerness_on_reg defaults to False: ignored by AutoAssign
    with torch.no_grad():
        head.conv_reg.weight.zero_()
        head.conv_reg.bias.copy_(torch.tensor([1., 0.5, 2., -1.]))
        head.scales[1].scale.fill_(2.)
    feats = (torch.rand(2, 8, 2, 2), torch.rand(2, 8, 1, 1))
    cls_scores, bbox_preds, objectnesses = head(feats)
    assert [tuple(t.shape) for t in objectnesses] == [(2, 1, 2, 2), (2, 1, 1, 1)]
    # clamp(scale * x, 0) * stride, in training too
    assert torch.equal(bbox_preds[0][0, :, 0, 0], torch.tensor([8., 4., 16., 0.]))
    assert torch.equal(bbox_preds[1][1, :, 0, 0], torch.tensor([32., 16., 64., 0.]))
    with torch.no_grad():
        head.cls_convs[0].conv.weight.add_(1.)
    assert torch.equal(head(feats)[2][0], objectnesses[0])


# ----------------------------------------------------------------------------- center prior


def test_center_prior_is_a_per_class_gaussian_in_stride_units():
    prior = CenterPrior(num_classes=2, strides=(8, 16))
    with torch.no_grad():
        prior.mean[1] = torch.tensor([0.5, 0.])
        prior.sigma[1] = torch.tensor([1., 2.])
    points = [torch.tensor([[8., 8.], [16., 8.]]), torch.tensor([[16., 16.]])]
    # Both boxes centred at (8, 8); the first of class 0 (mean 0, sigma 1), the second of
    # class 1. Point 2 is outside the first box.
    boxes = gts([[0, 0, 16, 16], [0, 0, 16, 16]], [0, 1])
    inside = torch.tensor([[True, True], [True, True], [False, True]])
    weights, mask = prior(points, boxes, inside)
    expected = torch.tensor([
        [1., math.exp(-0.25 / 2)],              # offsets (0, 0) strides
        [math.exp(-1 / 2), math.exp(-0.25 / 2)],  # (1, 0)
        [0., math.exp(-0.25 / 8)],              # (0.5, 0.5) at stride 16
    ])
    torch.testing.assert_close(weights, expected)
    assert torch.equal(mask, inside)


def test_force_topk_adds_the_nearest_points_of_a_box_without_points():
    prior = CenterPrior(force_topk=True, topk=2, num_classes=1, strides=(8, 16))
    points = [torch.tensor([[0., 0.], [8., 0.], [0., 8.], [8., 8.]]), torch.tensor([[0., 0.]])]
    inside = torch.zeros(5, 1, dtype=torch.bool)
    weights, mask = prior(points, gts([[1, 1, 3, 3]], [0]), inside)
    # Centre (2, 2): level 1's (0, 0) is 1/8 stride away on each axis, level 0's (0, 0) 1/4.
    assert mask.flatten().tolist() == [True, False, False, False, True]
    assert not inside.any()  # the input mask is left alone
    torch.testing.assert_close(weights.flatten(), torch.tensor(
        [math.exp(-1 / 16), 0., 0., 0., math.exp(-1 / 64)]))


# ----------------------------------------------------------------------------- loss terms


def test_positive_loss_reweights_points_by_confidence_and_prior():
    head = make_head()
    cls_score = torch.tensor([[0.8, 0.1], [0.4, 0.1], [0.9, 0.1]])
    objectness = torch.ones(3, 1)
    reg_loss = torch.tensor([[0.], [math.log(2)], [0.]])
    prior = torch.tensor([[1.], [0.5], [0.]])
    loss, = head.get_pos_loss_single(cls_score, objectness, reg_loss, gts([[0, 0, 1, 1]], [0]),
                                     prior)
    # p = cls * exp(-reg) = (0.8, 0.2, 0.9); weights exp(3p) * prior, normalised.
    w0, w1 = math.exp(2.4), 0.5 * math.exp(0.6)
    p = (0.8 * w0 + 0.2 * w1) / (w0 + w1)
    assert loss.item() == pytest.approx(-math.log(p) * 0.25, rel=1e-5)


def test_negative_loss_spares_points_whose_box_already_fits():
    head = make_head()
    cls_score = torch.tensor([[0.6, 0.2], [0.3, 0.4], [0.5, 0.7]])
    objectness = torch.tensor([[0.5], [1.0], [0.8]])
    inside = torch.tensor([[True, False], [True, False], [False, True]])
    # Best IoU of each point's box with any gt, repeated per gt and 0 outside the boxes.
    ious = torch.tensor([[0.5, 0.], [0., 0.], [0., 0.75]])
    loss, = head.get_neg_loss_single(cls_score, objectness, gts([[0, 0, 1, 1]] * 2, [0, 1]),
                                     ious, inside)
    # Box 0 (class 0): 1 / (1 - IoU) = 2, 1 -> normalised 1, 0 -> factors 0 and 1.
    # Box 1 (class 1): one point, normalised 1 -> factor 0.
    conf = (cls_score * objectness).flatten().tolist()
    factor = [0., 1., 1., 1., 1., 0.]
    expected = sum((c * f)**2 * -math.log(1 - c * f) for c, f in zip(conf, factor))
    assert loss.item() == pytest.approx(0.75 * expected, rel=1e-5)


def test_losses_on_a_hand_computed_case():
    head = make_head()
    # Box (2, 2, 14, 14), centre (8, 8): only the point (8, 8) lies strictly inside, with
    # prior weight 1. It predicts the box exactly (GIoU loss 0, IoU 1).
    dists = torch.ones(5, 4)
    dists[3] = 6.
    probs = level_maps(torch.zeros(5, 2)), level_maps(torch.zeros(5, 1))  # 0.5 each
    losses = head.loss_by_feat(probs[0], level_maps(dists), probs[1],
                               [gts([[2, 2, 14, 14]], [0])], [META])
    assert set(losses) == {'loss_pos', 'loss_neg', 'loss_center'}
    # P = 0.5 * 0.5 at every point and class.
    assert losses['loss_pos'].item() == pytest.approx(0.25 * math.log(4), rel=1e-5)
    # The inside point's class 0 is spared (factor 0); the other 9 entries count fully, over
    # the sum of the prior weights (1).
    assert losses['loss_neg'].item() == pytest.approx(
        0.75 * 9 * 0.25**2 * math.log(4 / 3), rel=1e-5)
    assert losses['loss_center'].item() == pytest.approx(0.75 * 1 / 1)


@pytest.mark.parametrize('force_topk, expected', [(False, 0.), (True, 0.75 * math.exp(1 / 64))])
def test_center_loss_of_a_box_without_points(force_topk, expected):
    head = make_head(force_topk=force_topk, topk=1)
    losses = head.loss_by_feat(level_maps(torch.zeros(5, 2)), level_maps(torch.ones(5, 4)),
                               level_maps(torch.zeros(5, 1)), [gts([[1, 1, 3, 3]], [1])],
                               [META])
    assert losses['loss_center'].item() == pytest.approx(expected, rel=1e-5)


def test_without_objects_only_the_negative_loss_is_nonzero_and_grads_reach_the_prior():
    head = make_head()
    outs = [[t.requires_grad_() for t in level_maps(torch.zeros(5, c))] for c in (2, 4, 1)]
    losses = head.loss_by_feat(*outs, [gts([], [])], [META])
    assert losses['loss_pos'].item() == 0 and losses['loss_center'].item() == 0
    assert losses['loss_neg'].item() == pytest.approx(0.75 * 10 * 0.25**2 * math.log(4 / 3),
                                                      rel=1e-5)
    sum(losses.values()).backward()
    assert head.center_prior.mean.grad is not None and head.center_prior.sigma.grad is not None
    assert all(t.grad is not None for level in outs for t in level)


def test_level_counts_must_agree():
    head = make_head()
    with pytest.raises(AssertionError, match='one tensor per level'):
        head.loss_by_feat(level_maps(torch.zeros(5, 2)), level_maps(torch.zeros(5, 4)),
                          level_maps(torch.zeros(5, 1))[:1], [gts([], [])], [META])


def test_loss_through_the_head_decreases_on_a_tiny_overfit():
    torch.manual_seed(0)
    head = make_head()
    head.init_weights()
    feats = (torch.rand(1, 8, 4, 4), torch.rand(1, 8, 2, 2))
    batch = [gts([[4, 4, 24, 28]], [1])]
    optim = torch.optim.SGD(head.parameters(), lr=0.01, momentum=0.9)
    history = []
    for _ in range(30):
        losses = head.loss_by_feat(*head(feats), batch, [dict(img_shape=(32, 32))])
        loss = sum(losses.values())
        history.append(loss.item())
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert history[-1] < 0.7 * history[0]
    # the prior is learnt too
    assert not torch.equal(head.center_prior.sigma[1], torch.ones(2))


# ----------------------------------------------------------------------------- predict


def test_predictions_multiply_scores_by_objectness_and_decode_around_corner_points():
    head = make_head().eval()
    cls = torch.full((5, 2), -10.)
    cls[3, 1] = 10.  # point (8, 8)
    dists = torch.zeros(5, 4)
    dists[3] = torch.tensor([6., 4., 2., 8.])
    meta = dict(img_shape=(16, 16), scale_factor=(1., 1.))
    result, = head.predict_by_feat(level_maps(cls), level_maps(dists),
                                   level_maps(torch.zeros(5, 1)), batch_img_metas=[meta],
                                   cfg=ConfigDict(TEST_CFG), rescale=False)
    assert result.labels.tolist() == [1]
    assert result.scores.item() == pytest.approx(torch.sigmoid(torch.tensor(10.)).item() / 2)
    assert torch.equal(result.bboxes, torch.tensor([[2., 4., 10., 16.]]))
