"""VFNetHead: mmdetection's arguments and keys, the star-shaped deformable conv (offsets and
sampled points by hand), forward outputs, ATSS / FCOS targets and the losses against
independent formulas, the checkpoint-loading quirk, predict."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import shapes_of
from helpers_tood_vfnet_keys import vfnet_head
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import generalized_box_iou_loss

from mmdet_lite.models.dense_heads import (AnchorFreeHead, AnchorHead, ATSSHead, FCOSHead,
                                          VFNetHead)
from mmdet_lite.models.layers import DeformConv2d
from mmdet_lite.registry import MODELS

TRAIN_CFG = dict(assigner=dict(type='ATSSAssigner', topk=4), allowed_border=-1, pos_weight=-1,
                 debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)


def make_head(strides=(8, 16), **kwargs) -> VFNetHead:
    """3 classes, 32 channels, one conv per tower; ATSS on 2-stride anchors (topk=4).

    (Two levels at least: like mmdetection's, the head derives the last level's distance
    unit from the one before.)
    """
    regress_ranges = ((-1, 64), (64, 128), (128, 1e8))[:len(strides) - 1] + ((64, 1e8), )
    cfg = dict(type='VFNetHead', num_classes=3, in_channels=16, feat_channels=32,
               stacked_convs=1, strides=list(strides), regress_ranges=regress_ranges,
               anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                                     scales_per_octave=1, center_offset=0.0,
                                     strides=list(strides)),
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def meta(img_shape=(32, 32)) -> dict:
    return dict(img_shape=img_shape, pad_shape=img_shape, batch_input_shape=img_shape,
                ori_shape=img_shape, scale_factor=(1.0, 1.0))


# ----------------------------------------------------------------------------- definition


def test_arguments_and_defaults_are_mmdetections():
    params = inspect.signature(VFNetHead.__init__).parameters
    assert list(params) == [
        'self', 'num_classes', 'in_channels', 'regress_ranges', 'center_sampling',
        'center_sample_radius', 'sync_num_pos', 'gradient_mul', 'bbox_norm_type',
        'loss_cls_fl', 'use_vfl', 'loss_cls', 'loss_bbox', 'loss_bbox_refine', 'norm_cfg',
        'use_atss', 'reg_decoded_bbox', 'anchor_generator', 'init_cfg', 'kwargs']
    defaults = {name: p.default for name, p in params.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == dict(
        regress_ranges=((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8)),
        center_sampling=False, center_sample_radius=1.5, sync_num_pos=True, gradient_mul=0.1,
        bbox_norm_type='reg_denom',
        loss_cls_fl=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                         loss_weight=1.0),
        use_vfl=True,
        loss_cls=dict(type='VarifocalLoss', use_sigmoid=True, alpha=0.75, gamma=2.0,
                      iou_weighted=True, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.5),
        loss_bbox_refine=dict(type='GIoULoss', loss_weight=2.0),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True), use_atss=True,
        reg_decoded_bbox=True,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, center_offset=0.0,
                              strides=[8, 16, 32, 64, 128]),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.01,
                      override=dict(type='Normal', name='vfnet_cls', std=0.01,
                                    bias_prob=0.01)))
    # mmdetection's class order; the target mixins of the split files sit beside their heads
    heads = [cls for cls in VFNetHead.__mro__ if not cls.__name__.endswith('Mixin')]
    assert heads[1:5] == [ATSSHead, AnchorHead, FCOSHead, AnchorFreeHead]
    assert MODELS.get('VFNetHead') is VFNetHead


def test_default_head_keys_and_attributes():
    head = VFNetHead(80, 256, strides=[8, 16, 32, 64, 128])
    assert shapes_of(head) == vfnet_head('', stacked_convs=4)
    assert head.reg_denoms == [64, 128, 256, 512, 1024]  # the last: twice the one before
    assert head.cls_out_channels == 80 and head.use_sigmoid_cls
    assert type(head.loss_cls).__name__ == 'VarifocalLoss'
    assert head.prior_generator is head.fcos_prior_generator
    assert head.fcos_prior_generator.offset == 0.0  # the ATSS anchor centres
    assert head.atss_prior_generator.num_levels == 5
    no_atss = VFNetHead(80, 256, strides=[8, 16, 32, 64, 128], use_atss=False, use_vfl=False)
    assert no_atss.fcos_prior_generator.offset == 0.5
    assert type(no_atss.loss_cls).__name__ == 'FocalLoss'


def test_small_head_keys_and_shapes_equal_mmdetection():
    assert shapes_of(make_head(strides=(8, 16, 32))) == vfnet_head(
        '', in_channels=16, feat_channels=32, num_classes=3, stacked_convs=1, num_levels=3)


def test_checkpoint_without_version_metadata_loads_unrenamed():
    # AnchorFreeHead renames old '*_cls' keys to conv_cls when a state dict has no version
    # metadata; mmdetection's VFNetHead skips that (its own predictors end in _cls / _reg).
    head = make_head()
    state = {k: torch.rand_like(v) for k, v in head.state_dict().items()}  # no _metadata
    loaded = make_head()
    loaded.load_state_dict(state, strict=True)
    assert torch.equal(loaded.vfnet_cls.weight, state['vfnet_cls.weight'])
    assert torch.equal(loaded.vfnet_reg_refine_dconv.weight,
                       state['vfnet_reg_refine_dconv.weight'])


def test_deform_conv2d_is_mmcvs_layer():
    conv = DeformConv2d(32, 16, 3, 1, padding=1)
    assert list(shapes_of(conv)) == ['weight'] and conv.weight.shape == (16, 32, 3, 3)
    # Kaiming-uniform (ReLU gain): bound sqrt(6 / (32 * 9))
    bound = math.sqrt(6 / (32 * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert repr(conv).startswith('DeformConv2d(in_channels=32,\nout_channels=16,\n')
    with pytest.raises(AssertionError, match='bias'):
        DeformConv2d(4, 4, 3, bias=True)
    # zero offsets: a plain convolution
    x = torch.rand(1, 32, 5, 6)
    assert torch.allclose(conv(x, torch.zeros(1, 18, 5, 6)),
                          F.conv2d(x, conv.weight, padding=1), atol=1e-5)


# ----------------------------------------------------------------------------- star DCN


def test_dcn_base_offset_is_the_regular_3x3_grid():
    # (dy, dx) of taps 0..8, row-major: (-1, -1), (-1, 0), (-1, 1), (0, -1), ... (1, 1)
    expected = [-1, -1, -1, 0, -1, 1, 0, -1, 0, 0, 0, 1, 1, -1, 1, 0, 1, 1]
    head = make_head()
    assert head.dcn_base_offset.shape == (1, 18, 1, 1)
    assert head.dcn_base_offset.flatten().tolist() == expected


def test_star_offsets_by_hand():
    head = make_head()
    # (l, t, r, b) = (8, 16, 24, 32) px at stride 8 -> (1, 2, 3, 4) feature cells
    bbox_pred = torch.tensor([8., 16., 24., 32.]).reshape(1, 4, 1, 1).requires_grad_()
    offset = head.star_dcn_offset(bbox_pred, 0.1, 8)
    # taps at dy in (-t, 0, b) = (-2, 0, 4), dx in (-l, 0, r) = (-1, 0, 3), minus the grid
    expected = [-1, 0, -1, 0, -1, 2, 0, 0, 0, 0, 0, 2, 3, 0, 3, 0, 3, 2]
    assert offset.shape == (1, 18, 1, 1)
    assert torch.allclose(offset.flatten(), torch.tensor(expected, dtype=torch.float), atol=1e-6)
    # only gradient_mul of the gradient reaches the boxes: l and t appear negated on three
    # taps each, r and b on three taps each
    offset.sum().backward()
    assert torch.allclose(bbox_pred.grad.flatten(),
                          torch.tensor([-3., -3., 3., 3.]) * 0.1 / 8)


def test_star_conv_samples_the_corners_edge_midpoints_and_centre_of_the_box():
    head = make_head()
    ys, xs = torch.meshgrid(torch.arange(9.), torch.arange(9.), indexing='ij')
    feat = (10 * ys + xs)[None, None]  # value 10 y + x at (y, x)
    # at the point (4, 4): box (l, t, r, b) = (1, 2, 3, 4) cells
    bbox_pred = torch.zeros(1, 4, 9, 9)
    bbox_pred[0, :, 4, 4] = torch.tensor([8., 16., 24., 32.])
    offset = head.star_dcn_offset(bbox_pred, 0.1, 8)
    star = [(y, x) for y in (2, 4, 8) for x in (3, 4, 7)]  # (4 - t, 4, 4 + b) x (4 - l, ..)
    for tap, (y, x) in enumerate(star):
        conv = DeformConv2d(1, 1, 3, 1, padding=1)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight.view(-1)[tap] = 1.0  # picks this tap's sample
        out = conv(feat, offset)
        assert out[0, 0, 4, 4].item() == pytest.approx(10 * y + x, abs=1e-4), tap


# ----------------------------------------------------------------------------- forward


def zeroed(head: VFNetHead, cls_bias: float = 0.0) -> VFNetHead:
    with torch.no_grad():
        for conv in (head.vfnet_reg, head.vfnet_reg_refine, head.vfnet_cls):
            conv.weight.zero_()
            conv.bias.zero_()
        head.vfnet_cls.bias.fill_(cls_bias)
    return head


@pytest.mark.parametrize('bbox_norm_type,unit', [('reg_denom', (64, 128)), ('stride', (8, 16))])
def test_forward_outputs_by_hand(bbox_norm_type, unit):
    head = zeroed(make_head(bbox_norm_type=bbox_norm_type), cls_bias=-1.0)
    feats = (torch.rand(2, 16, 4, 5), torch.rand(2, 16, 2, 3))
    cls_scores, bbox_preds, refined = head(feats)
    assert isinstance(cls_scores, list) and len(cls_scores) == 2
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, 4, 5), (2, 3, 2, 3)]
    for level in range(2):
        # exp(0) * unit; the refinement multiplies by exp(0)
        assert torch.allclose(bbox_preds[level], torch.full_like(bbox_preds[level],
                                                                 unit[level]))
        assert torch.allclose(refined[level], bbox_preds[level])
        assert torch.allclose(cls_scores[level], torch.full_like(cls_scores[level], -1.0))
    head.eval()
    outs = head(feats)
    assert len(outs) == 2 and torch.allclose(outs[1][0], refined[0])


def test_unknown_bbox_norm_type_fails_at_forward_as_mmdetection():
    head = make_head(bbox_norm_type='log')
    with pytest.raises(NotImplementedError):
        head((torch.rand(1, 16, 2, 2), torch.rand(1, 16, 1, 1)))


# ----------------------------------------------------------------------------- targets


# 32x32 image, strides 8 and 16: 16 / 32 px anchors, points at (8x, 8y) / (16x, 16y). For the
# gt (2, 2, 14, 14) the ATSS candidates (topk=4) are anchor 5 of level 0 (IoU 0.5625), three
# of its neighbours (72/328) and the four level-1 anchors (144/1024); the threshold mean + std
# is about 0.37, so anchor 5 of level 0, point (8, 8), is the only positive.
GT = InstanceData(bboxes=torch.tensor([[2., 2., 14., 14.]]), labels=torch.tensor([1]))
POS = 5
SIZES = [(4, 4), (2, 2)]


def test_atss_targets_are_point_distances():
    head = make_head()
    points = head.fcos_prior_generator.grid_priors(SIZES)
    labels, label_weights, bbox_targets, bbox_weights = head.get_targets(
        [torch.zeros(1, 3, *size) for size in SIZES], points, [GT], [meta()])
    expected_labels = torch.full((16, ), 3)
    expected_labels[POS] = 1
    assert torch.equal(labels[0], expected_labels)
    assert torch.equal(labels[1], torch.full((4, ), 3))
    assert torch.equal(label_weights, torch.ones(20))
    # (8 - 2, 8 - 2, 14 - 8, 14 - 8)
    assert torch.equal(bbox_targets[0][POS], torch.tensor([6., 6., 6., 6.]))
    assert bbox_weights.shape == (20 * 4, )
    assert torch.equal(bbox_weights.reshape(20, 4)[POS], torch.ones(4))


def test_fcos_targets_without_atss():
    head = make_head(use_atss=False)
    points = head.fcos_prior_generator.grid_priors(SIZES)
    assert torch.equal(points[0][POS], torch.tensor([12., 12.]))  # offset 0.5
    labels, label_weights, bbox_targets, bbox_weights = head.get_targets(
        [torch.zeros(1, 3, *size) for size in SIZES], points, [GT], [meta()])
    assert label_weights is None and bbox_weights is None and head.norm_on_bbox is False
    # FCOS: points strictly inside the gt: (4, 4) and (12, 12), i.e. 0, 1, 4 and 5; their
    # largest distances (< 12) are in level 0's range only
    assert (labels[0] == 1).nonzero().flatten().tolist() == [0, 1, 4, 5]
    assert torch.equal(labels[1], torch.full((4, ), 3))
    assert torch.equal(bbox_targets[0][POS], torch.tensor([10., 10., 2., 2.]))


# ----------------------------------------------------------------------------- losses


def head_outputs():
    """Logits 0.3 everywhere (class 1 at the positive: 2.0); at the positive an initial box
    (l, t, r, b) = (4, 6, 8, 6) and an exact refined box; elsewhere 5 px distances."""
    cls_scores = [torch.full((1, 3, *size), 0.3) for size in SIZES]
    cls_scores[0][0, 1].view(-1)[POS] = 2.0
    bbox_preds = [torch.full((1, 4, *size), 5.0) for size in SIZES]
    bbox_preds[0][0, :, 1, 1] = torch.tensor([4., 6., 8., 6.])
    refined = [torch.full((1, 4, *size), 5.0) for size in SIZES]
    refined[0][0, :, 1, 1] = torch.tensor([6., 6., 6., 6.])
    return cls_scores, bbox_preds, refined


def flat_logits(cls_scores):
    return torch.cat([score.permute(0, 2, 3, 1).reshape(-1, 3) for score in cls_scores])


def vfl_sum(logits, q, alpha=0.75, gamma=2.0):
    p = logits.sigmoid()
    bce = -(q * torch.log(p) + (1 - q) * torch.log(1 - p))
    weight = torch.where(q > 0, q, alpha * p.pow(gamma))
    return (bce * weight).sum()


def test_losses_by_hand():
    head = make_head()
    outs = head_outputs()
    losses = head.loss_by_feat(*outs, [GT], [meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_bbox_rf'}

    # initial box (8 - 4, 8 - 6, 8 + 8, 8 + 6) = (4, 2, 16, 14) vs gt (2, 2, 14, 14):
    # IoU 120 / 168 = 5/7, enclosing box = union, so GIoU loss 2/7; weighted by its IoU and
    # divided by the IoU sum clamped to 1
    iou = 5 / 7
    assert losses['loss_bbox'].item() == pytest.approx(1.5 * (2 / 7) * iou / 1.0, rel=1e-5)
    giou = generalized_box_iou_loss(torch.tensor([4., 2., 16., 14.]), GT.bboxes[0])
    assert giou.item() == pytest.approx(2 / 7, rel=1e-5)
    assert losses['loss_bbox_rf'].item() == pytest.approx(0.0, abs=1e-6)
    # Varifocal: the positive's class-1 target is the refined IoU (1); others 0; one positive
    logits = flat_logits(outs[0])
    q = torch.zeros(20, 3)
    q[POS, 1] = 1.0
    assert losses['loss_cls'].item() == pytest.approx(vfl_sum(logits, q).item(), rel=1e-5)


def test_focal_loss_without_vfl():
    head = make_head(use_vfl=False)
    outs = head_outputs()
    losses = head.loss_by_feat(*outs, [GT], [meta()])
    logits = flat_logits(outs[0])
    one_hot = torch.zeros(20, 3)
    one_hot[POS, 1] = 1.0
    p = logits.sigmoid()
    focal = -(one_hot * 0.25 * (1 - p) ** 2 * torch.log(p) +
              (1 - one_hot) * 0.75 * p ** 2 * torch.log(1 - p))
    assert losses['loss_cls'].item() == pytest.approx(focal.sum().item(), rel=1e-5)


def test_loss_without_gts_is_finite_with_zero_box_losses():
    head = make_head()
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    outs = head_outputs()
    losses = head.loss_by_feat(*outs, [empty], [meta()])
    assert losses['loss_bbox'] == 0 and losses['loss_bbox_rf'] == 0
    logits = flat_logits(outs[0])
    # all negatives, normalised by max(num_pos, 1) = 1
    assert losses['loss_cls'].item() == pytest.approx(
        vfl_sum(logits, torch.zeros(20, 3)).item(), rel=1e-5)


# ----------------------------------------------------------------------------- predict


def test_predict_decodes_the_refined_distances_from_the_points():
    head = make_head().eval()
    cls_scores = [torch.full((1, 3, *size), -6.0) for size in SIZES]
    cls_scores[0][0, 2].view(-1)[POS] = 1.0
    refined = [torch.full((1, 4, *size), 2.0) for size in SIZES]
    refined[0][0, :, 1, 1] = torch.tensor([3., 4., 5., 30.])
    pred = head.predict_by_feat(cls_scores, refined, batch_img_metas=[meta()])[0]
    assert len(pred) == 1 and pred.labels.tolist() == [2]
    assert pred.scores.item() == pytest.approx(1 / (1 + math.exp(-1)))
    # point (8, 8): (8 - 3, 8 - 4, 8 + 5, 8 + 30) clipped to the 32x32 image
    assert pred.bboxes.tolist() == [[5., 4., 13., 32.]]
