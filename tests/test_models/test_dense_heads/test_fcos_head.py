"""FCOSHead: defaults and keys, forward (scales, norm_on_bbox, centerness branch), target
assignment against hand-computed cases, losses against independent formulas, predictions."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from helpers_fcos_keys import fcos_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from mmdet_lite.models.dense_heads import AnchorFreeHead, FCOSHead
from mmdet_lite.models.layers import NormedConv2d
from mmdet_lite.registry import MODELS

INF = 1e8
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)


def make_head(**kwargs) -> FCOSHead:
    """A small FCOS head: 3 classes, 8 channels, one conv per tower, GN of 4 groups."""
    cfg = dict(type='FCOSHead', num_classes=3, in_channels=8, feat_channels=8,
               stacked_convs=1, norm_cfg=dict(type='GN', num_groups=4),
               test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def gts(bboxes, labels) -> InstanceData:
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


def pts(*xy) -> torch.Tensor:
    return torch.tensor(xy, dtype=torch.float32).reshape(-1, 2)


BG = 3  # num_classes of make_head: the background label


# ----------------------------------------------------------------------------- layers


def test_registered_with_mmdetection_defaults():
    assert MODELS.get('FCOSHead') is FCOSHead and issubclass(FCOSHead, AnchorFreeHead)
    params = inspect.signature(FCOSHead.__init__).parameters
    assert list(params) == [
        'self', 'num_classes', 'in_channels', 'regress_ranges', 'center_sampling',
        'center_sample_radius', 'norm_on_bbox', 'centerness_on_reg', 'loss_cls', 'loss_bbox',
        'loss_centerness', 'norm_cfg', 'cls_predictor_cfg', 'init_cfg', 'kwargs']
    defaults = {name: p.default for name, p in params.items()}
    assert defaults['regress_ranges'] == ((-1, 64), (64, 128), (128, 256), (256, 512),
                                          (512, 1e8))
    assert defaults['center_sampling'] is False and defaults['center_sample_radius'] == 1.5
    assert defaults['norm_on_bbox'] is False and defaults['centerness_on_reg'] is False
    assert defaults['loss_cls'] == dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                        alpha=0.25, loss_weight=1.0)
    assert defaults['loss_bbox'] == dict(type='IoULoss', loss_weight=1.0)
    assert defaults['loss_centerness'] == dict(type='CrossEntropyLoss', use_sigmoid=True,
                                               loss_weight=1.0)
    assert defaults['norm_cfg'] == dict(type='GN', num_groups=32, requires_grad=True)
    assert defaults['cls_predictor_cfg'] is None
    assert defaults['init_cfg'] == dict(
        type='Normal', layer='Conv2d', std=0.01,
        override=dict(type='Normal', name='conv_cls', std=0.01, bias_prob=0.01))

    head = FCOSHead(num_classes=80, in_channels=256)
    # AnchorFreeHead's default strides (4..64), one Scale per stride.
    assert tuple(head.strides) == (4, 8, 16, 32, 64) and len(head.scales) == 5
    assert all(scale.scale.item() == 1.0 for scale in head.scales)


def test_state_dict_keys_and_shapes_match_mmdetection():
    head = FCOSHead(num_classes=80, in_channels=256, strides=[8, 16, 32, 64, 128])
    expected = fcos_head(prefix='', num_classes=80)
    assert len(expected) == 2 * 4 * 3 + 3 * 2 + 5
    assert shapes_of(head) == expected
    # conv_bias=True (the "imprv" configs) adds a bias to every tower conv despite GN.
    biased = FCOSHead(num_classes=80, in_channels=256, conv_bias=True)
    assert shapes_of(biased) == fcos_head(prefix='', conv_bias=True)


def test_cls_predictor_cfg_makes_a_1x1_normed_conv_and_leaves_the_config_alone():
    cfg = dict(type='NormedConv2d', tempearture=10)
    head = make_head(cls_predictor_cfg=cfg)
    assert isinstance(head.conv_cls, NormedConv2d)
    assert head.conv_cls.kernel_size == (1, 1) and head.conv_cls.padding == (0, 0)
    assert head.conv_cls.tempearture == 10 and head.conv_cls.out_channels == 3
    assert cfg == dict(type='NormedConv2d', tempearture=10)
    make_head(cls_predictor_cfg=cfg)  # the same config builds a second head


# ----------------------------------------------------------------------------- forward


def test_forward_returns_scores_distances_and_centerness_per_level():
    head = make_head(strides=[8, 16])
    feats = (torch.rand(2, 8, 8, 8), torch.rand(2, 8, 4, 4))
    cls_scores, bbox_preds, centernesses = head(feats)
    assert [tuple(s.shape) for s in cls_scores] == [(2, 3, 8, 8), (2, 3, 4, 4)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, 8, 8), (2, 4, 4, 4)]
    assert [tuple(c.shape) for c in centernesses] == [(2, 1, 8, 8), (2, 1, 4, 4)]


def constant_reg_head(reg_bias, **kwargs) -> FCOSHead:
    """conv_reg predicts ``reg_bias`` everywhere; level 1's Scale is 2."""
    head = make_head(strides=[8, 16], **kwargs)
    with torch.no_grad():
        head.conv_reg.weight.zero_()
        head.conv_reg.bias.copy_(torch.tensor(reg_bias))
        head.scales[1].scale.fill_(2.0)
    return head


def test_default_distances_are_exp_of_the_scaled_regression():
    head = constant_reg_head([0.0, 0.5, -1.0, 1.0])
    feats = (torch.rand(1, 8, 2, 2), torch.rand(1, 8, 1, 1))
    for training in (True, False):
        head.train(training)
        _, bbox_preds, _ = head(feats)
        assert torch.allclose(bbox_preds[0][0, :, 0, 0],
                              torch.tensor([0.0, 0.5, -1.0, 1.0]).exp())
        assert torch.allclose(bbox_preds[1][0, :, 0, 0],
                              torch.tensor([0.0, 1.0, -2.0, 2.0]).exp())


def test_norm_on_bbox_uses_a_relu_and_multiplies_by_the_stride_only_at_test_time():
    head = constant_reg_head([0.0, 0.5, -1.0, 1.0], norm_on_bbox=True)
    feats = (torch.rand(1, 8, 2, 2), torch.rand(1, 8, 1, 1))
    head.train()
    _, bbox_preds, _ = head(feats)
    assert torch.allclose(bbox_preds[0][0, :, 0, 0], torch.tensor([0.0, 0.5, 0.0, 1.0]))
    assert torch.allclose(bbox_preds[1][0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0, 2.0]))
    head.eval()
    _, bbox_preds, _ = head(feats)
    assert torch.allclose(bbox_preds[0][0, :, 0, 0], torch.tensor([0.0, 4.0, 0.0, 8.0]))
    assert torch.allclose(bbox_preds[1][0, :, 0, 0], torch.tensor([0.0, 16.0, 0.0, 32.0]))


@pytest.mark.parametrize('on_reg', [False, True])
def test_centerness_branch(on_reg):
    head = make_head(centerness_on_reg=on_reg)
    x = torch.rand(2, 8, 4, 4)
    _, _, cls_feat, reg_feat = AnchorFreeHead.forward_single(head, x)
    _, _, centerness = head.forward_single(x, head.scales[0], 8)
    expected = head.conv_centerness(reg_feat if on_reg else cls_feat)
    assert torch.allclose(centerness, expected)
    assert not torch.allclose(centerness, head.conv_centerness(cls_feat if on_reg else reg_feat))


# ----------------------------------------------------------------------------- targets


def test_a_point_regresses_the_box_it_lies_strictly_inside():
    head = make_head(strides=[8], regress_ranges=((-1, INF), ))
    points = [pts((4, 6), (0, 8), (20, 8), (16, 16))]
    labels, targets = head.get_targets(points, [gts([[0, 0, 16, 16]], [1])])
    # (4, 6): inside, distances (left, top, right, bottom); (0, 8) on the left side and
    # (16, 16) on the corner are not strictly inside; (20, 8) is outside.
    assert labels[0].tolist() == [1, BG, BG, BG]
    assert targets[0][0].tolist() == [4, 6, 12, 10]


def test_each_level_regresses_only_distances_in_its_range_both_ends_included():
    head = make_head(strides=[8, 16], regress_ranges=((-1, 10), (10, INF)))
    level_points = pts((4, 4), (8, 8), (6, 8))
    labels, targets = head.get_targets([level_points, level_points],
                                       [gts([[0, 0, 16, 16]], [2])])
    # Largest side distances: (4, 4) -> 12, (8, 8) -> 8, (6, 8) -> 10.
    assert labels[0].tolist() == [BG, 2, 2]
    assert labels[1].tolist() == [2, BG, 2]
    assert targets[0][1].tolist() == [8, 8, 8, 8] and targets[0][2].tolist() == [6, 8, 10, 8]
    assert targets[1][0].tolist() == [4, 4, 12, 12]


def test_a_point_in_several_boxes_takes_the_smallest_it_may_regress():
    big, small = [0, 0, 32, 32], [0, 0, 16, 16]
    head = make_head(strides=[8], regress_ranges=((-1, INF), ))
    labels, targets = head.get_targets([pts((8, 8), (24, 24))],
                                       [gts([big, small], [0, 2])])
    assert labels[0].tolist() == [2, 0]  # (8, 8) is in both: the small box wins
    assert targets[0].tolist() == [[8, 8, 8, 8], [24, 24, 8, 8]]

    # When the small box is out of the level's range, the big one is taken.
    head = make_head(strides=[8], regress_ranges=((16, INF), ))
    labels, targets = head.get_targets([pts((8, 8))], [gts([big, small], [0, 2])])
    assert labels[0].tolist() == [0] and targets[0].tolist() == [[8, 8, 24, 24]]


def test_center_sampling_keeps_the_points_near_the_centre_per_level():
    head = make_head(strides=[8, 16], regress_ranges=((-1, INF), (-1, INF)),
                     center_sampling=True, center_sample_radius=1.5)
    # Box centre (32, 16); central square half-side 1.5 * 8 = 12 on level 0 (x in (20, 44),
    # y in (4, 28)) and 1.5 * 16 = 24 on level 1 (x in (8, 56); y clipped to the box).
    level_points = pts((24, 16), (16, 16), (44, 16), (43, 16), (52, 30))
    labels, targets = head.get_targets([level_points, level_points],
                                       [gts([[0, 0, 64, 32]], [1])])
    assert labels[0].tolist() == [1, BG, BG, 1, BG]
    assert labels[1].tolist() == [1, 1, 1, 1, 1]
    # Targets stay the distances to the box itself, not to the central square.
    assert targets[0][0].tolist() == [24, 16, 40, 16]
    assert targets[1][4].tolist() == [52, 30, 12, 2]


def test_center_sampling_square_is_clipped_to_a_small_box():
    head = make_head(strides=[8], regress_ranges=((-1, INF), ), center_sampling=True)
    # The +-12 square around (4, 4) is clipped to the 8x8 box: (10, 4) is near the centre
    # but outside the box.
    labels, targets = head.get_targets([pts((6, 6), (10, 4))], [gts([[0, 0, 8, 8]], [0])])
    assert labels[0].tolist() == [0, BG]
    assert targets[0][0].tolist() == [6, 6, 2, 2]


def test_norm_on_bbox_divides_the_targets_by_the_level_stride():
    kwargs = dict(strides=[8, 16], regress_ranges=((-1, INF), (-1, INF)))
    level_points = pts((4, 6), (12, 12))
    gt = [gts([[0, 0, 16, 32]], [0])]
    _, pixels = make_head(**kwargs).get_targets([level_points, level_points], gt)
    _, normed = make_head(norm_on_bbox=True, **kwargs).get_targets(
        [level_points, level_points], gt)
    assert pixels[0][0].tolist() == [4, 6, 12, 26]
    assert torch.equal(normed[0], pixels[0] / 8)
    assert torch.equal(normed[1], pixels[1] / 16)


def test_targets_are_grouped_per_level_image_by_image():
    head = make_head(strides=[8, 16], regress_ranges=((-1, INF), (-1, INF)))
    points = [pts((4, 4), (12, 4)), pts((8, 8))]
    labels, targets = head.get_targets(points, [gts([[0, 0, 8, 8]], [1]),
                                                gts([[8, 0, 16, 16]], [2])])
    assert labels[0].tolist() == [1, BG, BG, 2]  # image 0's two points, then image 1's
    assert labels[1].tolist() == [BG, BG]  # (8, 8) lies on an edge of both boxes
    assert targets[0].shape == (4, 4) and targets[1].shape == (2, 4)
    assert targets[0][3].tolist() == [4, 4, 4, 12]


def test_an_image_without_objects_is_all_background():
    head = make_head(strides=[8], regress_ranges=((-1, INF), ))
    labels, targets = head.get_targets([pts((4, 4), (12, 4))],
                                       [gts(torch.zeros(0, 4).tolist(), [])])
    assert labels[0].tolist() == [BG, BG] and labels[0].dtype == torch.long
    assert torch.count_nonzero(targets[0]) == 0


def test_regress_ranges_must_match_the_levels():
    head = make_head(strides=[8, 16], regress_ranges=((-1, 64), (64, INF)))
    with pytest.raises(AssertionError, match='regress_ranges'):
        head.get_targets([pts((4, 4))], [gts([[0, 0, 8, 8]], [0])])


def test_centerness_target():
    head = make_head()
    targets = torch.tensor([[1., 2., 3., 4.], [5., 5., 5., 5.], [1., 9., 9., 1.]])
    expected = torch.tensor([math.sqrt(1 / 3 * 2 / 4), 1.0, math.sqrt(1 / 9 * 1 / 9)])
    assert torch.allclose(head.centerness_target(targets), expected)
    assert head.centerness_target(torch.zeros(0, 4)).shape == (0, )


# ----------------------------------------------------------------------------- losses


def loss_inputs(num_imgs=1):
    """One stride-8 level of 4x4 points over a 32x32 image; random outputs."""
    torch.manual_seed(1)
    cls_scores = [torch.randn(num_imgs, 3, 4, 4, requires_grad=True)]
    bbox_preds = [(torch.rand(num_imgs, 4, 4, 4) * 8 + 1).requires_grad_()]
    centernesses = [torch.randn(num_imgs, 1, 4, 4, requires_grad=True)]
    return cls_scores, bbox_preds, centernesses


def expected_losses(head, cls_scores, bbox_preds, centernesses, gt, iou_kind):
    """The three losses from the targets, with torchvision's focal / GIoU losses."""
    points = head.prior_generator.grid_priors([(4, 4)])
    labels, targets = head.get_targets(points, [gt])
    labels, targets = labels[0], targets[0]
    cls = cls_scores[0].permute(0, 2, 3, 1).reshape(-1, 3)
    pred = bbox_preds[0].permute(0, 2, 3, 1).reshape(-1, 4)
    ctr = centernesses[0].reshape(-1)
    pos = labels < 3
    num_pos = max(pos.sum().item(), 1)
    one_hot = F.one_hot(labels, 4)[:, :3].float()
    loss_cls = sigmoid_focal_loss(cls, one_hot, alpha=0.25, gamma=2.0,
                                  reduction='sum') / num_pos

    p = points[0]
    lt, rb = targets[pos], pred[pos]
    target_boxes = torch.cat([p[pos] - lt[:, :2], p[pos] + lt[:, 2:]], 1)
    pred_boxes = torch.cat([p[pos] - rb[:, :2], p[pos] + rb[:, 2:]], 1)
    weights = torch.sqrt((lt[:, [0, 2]].min(1)[0] / lt[:, [0, 2]].max(1)[0]) *
                         (lt[:, [1, 3]].min(1)[0] / lt[:, [1, 3]].max(1)[0]))
    if iou_kind == 'giou':
        per_box = generalized_box_iou_loss(pred_boxes, target_boxes, reduction='none')
    else:  # mmdetection's IoULoss default: -log(IoU)
        per_box = -torch.log(box_iou(pred_boxes, target_boxes).diagonal().clamp(min=1e-6))
    loss_bbox = (per_box * weights).sum() / weights.sum()
    loss_ctr = F.binary_cross_entropy_with_logits(ctr[pos], weights, reduction='sum') / num_pos
    return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_centerness=loss_ctr), pos.sum()


@pytest.mark.parametrize('iou_kind', ['iou', 'giou'])
def test_losses_match_independent_formulas(iou_kind):
    loss_bbox = (dict(type='GIoULoss', loss_weight=1.0) if iou_kind == 'giou' else
                 dict(type='IoULoss', loss_weight=1.0))
    head = make_head(strides=[8], regress_ranges=((-1, INF), ), loss_bbox=loss_bbox)
    gt = gts([[2, 3, 21, 30], [14, 10, 32, 20]], [0, 2])
    outs = loss_inputs()
    losses = head.loss_by_feat(*outs, [gt], [dict(img_shape=(32, 32))])
    expected, num_pos = expected_losses(head, *outs, gt, iou_kind)
    assert num_pos >= 4
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    for name, value in expected.items():
        assert torch.allclose(losses[name], value, atol=1e-4), name


def test_without_objects_only_the_classification_loss_is_nonzero_and_grads_flow():
    head = make_head(strides=[8], regress_ranges=((-1, INF), ))
    cls_scores, bbox_preds, centernesses = loss_inputs()
    losses = head.loss_by_feat(cls_scores, bbox_preds, centernesses,
                               [gts(torch.zeros(0, 4).tolist(), [])],
                               [dict(img_shape=(32, 32))])
    assert losses['loss_bbox'].item() == 0 and losses['loss_centerness'].item() == 0
    # No positive: the focal loss of all 16 x 3 negatives is divided by 1.
    expected = sigmoid_focal_loss(cls_scores[0].permute(0, 2, 3, 1).reshape(-1, 3),
                                  torch.zeros(16, 3), reduction='sum')
    assert torch.allclose(losses['loss_cls'], expected, atol=1e-5)
    sum(losses.values()).backward()
    assert bbox_preds[0].grad is not None and centernesses[0].grad is not None


def test_loss_through_the_head_decreases_on_a_tiny_overfit():
    head = make_head(strides=[8, 16], regress_ranges=((-1, 16), (16, INF)),
                     norm_on_bbox=True, centerness_on_reg=True, center_sampling=True,
                     loss_bbox=dict(type='GIoULoss', loss_weight=1.0))
    head.init_weights()
    feats = (torch.rand(2, 8, 8, 8), torch.rand(2, 8, 4, 4))
    gt = [gts([[4, 4, 28, 20]], [1]), gts([[10, 12, 20, 60]], [0])]
    metas = [dict(img_shape=(64, 64))] * 2
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    totals = []
    for _ in range(15):
        losses = head.loss_by_feat(*head(feats), gt, metas)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(math.isfinite(t) for t in totals)
    assert totals[-1] < 0.8 * totals[0]


# ----------------------------------------------------------------------------- predict


def test_predictions_multiply_scores_by_the_centerness_and_decode_around_the_points():
    head = make_head(strides=[8], regress_ranges=((-1, INF), ))
    cls_scores = [torch.full((1, 3, 2, 2), -10.0)]
    cls_scores[0][0, 2, 1, 0] = 2.0  # class 2 at the point (4, 12)
    bbox_preds = [torch.ones(1, 4, 2, 2)]
    bbox_preds[0][0, :, 1, 0] = torch.tensor([3.0, 2.0, 5.0, 30.0])
    centernesses = [torch.zeros(1, 1, 2, 2)]
    centernesses[0][0, 0, 1, 0] = 1.0
    results = head.predict_by_feat(cls_scores, bbox_preds, centernesses,
                                   batch_img_metas=[dict(img_shape=(16, 16),
                                                         scale_factor=(1.0, 1.0))])
    result = results[0]
    assert len(result) == 1 and result.labels.tolist() == [2]
    assert torch.allclose(result.scores, torch.sigmoid(torch.tensor([2.0])) *
                          torch.sigmoid(torch.tensor([1.0])))
    # (4 - 3, 12 - 2, 4 + 5, 12 + 30) clipped to the 16x16 image.
    assert result.bboxes.tolist() == [[1.0, 10.0, 9.0, 16.0]]
