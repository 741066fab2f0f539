"""RTMDet-Ins heads: keys and init, the dynamic convs, the Dice mask loss, and predictions.

Expected values are built here from mmdetection 3.3's definitions: the kernel vector of an
instance holds every dynamic layer's weights ([out, in], row-major), then every layer's
biases; the first layer reads (x, y) offsets ``(prior - point) / (8 * stride)`` followed by the
prototypes; ReLU between layers; mask logits are upsampled bilinearly (half-pixel centres,
edges clamped); the loss samples gt masks every ``mask_loss_stride`` pixels from half of it.
"""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import init_weights_quietly
from helpers_csp_keys import cspnext, cspnext_pafpn
from helpers_state_dict import conv_bn, shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import RTMDetInsHead, RTMDetInsSepBNHead
from mmdet_lite.models.dense_heads import rtmdet_ins_head as ins_module
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks
from mmdet_lite.utils import register_all_modules

register_all_modules()

STRIDES = [8, 16, 32]
FEAT = 8
IMG = 64
BN_CFG = dict(type='BN', requires_grad=True)
SILU = dict(type='SiLU', inplace=True)
TRAIN_CFG = dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13), allowed_border=-1,
                 pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100, mask_thr_binary=0.5)
# The rtmdet-ins_l config's head, minus the sizes.
HEAD = dict(
    type='RTMDetInsSepBNHead', stacked_convs=2, share_conv=True, pred_kernel_size=1,
    act_cfg=SILU, norm_cfg=BN_CFG,
    anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=STRIDES),
    bbox_coder=dict(type='DistancePointBBoxCoder'),
    loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
    loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
    loss_mask=dict(type='DiceLoss', loss_weight=2.0, eps=5e-6, reduction='mean'))
NUM_GEN_PARAMS = 169  # P = C = 8, 3 layers: 10*8 + 8*8 + 8*1 weights, 8 + 8 + 1 biases


def make_head(**kwargs) -> RTMDetInsSepBNHead:
    cfg = dict(HEAD, num_classes=2, in_channels=FEAT, feat_channels=FEAT,
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def make_feats(batch: int = 1):
    return tuple(torch.rand(batch, FEAT, IMG // s, IMG // s) for s in STRIDES)


def make_sample(bboxes=(), masks=None, labels=None, img_shape=(IMG, IMG), ori_shape=None,
                scale_factor=(1.0, 1.0)) -> DetDataSample:
    bboxes = torch.as_tensor(np.asarray(bboxes, dtype=np.float32)).reshape(-1, 4)
    labels = torch.zeros(len(bboxes), dtype=torch.long) if labels is None else \
        torch.as_tensor(labels)
    if masks is None:
        masks = np.zeros((len(bboxes), IMG, IMG), dtype=np.uint8)
    sample = DetDataSample(metainfo=dict(
        img_shape=img_shape, pad_shape=(IMG, IMG), batch_input_shape=(IMG, IMG),
        ori_shape=ori_shape or img_shape, scale_factor=scale_factor))
    sample.gt_instances = InstanceData(bboxes=bboxes, labels=labels,
                                       masks=BitmapMasks(masks, IMG, IMG))
    return sample


def rect_mask(x1, y1, x2, y2, size=IMG) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def resize_linear_1d(values, out_size: int, scale: float):
    """Linear resampling with half-pixel centres: output ``u`` reads input coordinate
    ``(u + 0.5) * scale - 0.5``, clamped at the edges."""
    n = len(values)
    out = []
    for u in range(out_size):
        c = max((u + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(c)), n - 1)
        i1 = min(i0 + 1, n - 1)
        t = c - i0
        out.append(values[i0] * (1 - t) + values[i1] * t)
    return out


def kernel_layout(num_prototypes=8, channels=8, num_layers=3):
    """Per layer (in, out) and the offsets of its weights and biases in a kernel vector."""
    shapes = [(num_prototypes + 2 if i == 0 else channels,
               1 if i == num_layers - 1 else channels) for i in range(num_layers)]
    weight_offsets, offset = [], 0
    for cin, cout in shapes:
        weight_offsets.append(offset)
        offset += cin * cout
    bias_offsets = []
    for _, cout in shapes:
        bias_offsets.append(offset)
        offset += cout
    return shapes, weight_offsets, bias_offsets, offset


def x_ramp_kernel(slope: float = 10.0, bias: float = -0.1) -> torch.Tensor:
    """A kernel whose mask logit is ``slope * relu(offset_x) + bias``: channel 0 of each
    hidden layer carries relu of the x offset (coordinate channel 0), nothing else is used."""
    shapes, w_off, b_off, total = kernel_layout()
    kernel = torch.zeros(total)
    kernel[w_off[0] + 0] = 1.0  # layer 0: out 0 <- in 0 (x offset)
    kernel[w_off[1] + 0] = 1.0  # layer 1: out 0 <- in 0
    kernel[w_off[2] + 0] = slope  # layer 2: logit <- in 0
    kernel[b_off[2]] = bias
    return kernel


def x_ramp_logits(prior_x: float, stride: float, slope=10.0, bias=-0.1, width=IMG // 8):
    """Logits of :func:`x_ramp_kernel` on each stride-8 column (offset-0 points 8 * j)."""
    return [slope * max((prior_x - 8 * j) / (8 * stride), 0.0) + bias for j in range(width)]


# ----------------------------------------------------------------------------- layers


def head_keys(in_c: int, feat: int, num_classes: int = 80, stacked: int = 2) -> dict:
    """RTMDetInsSepBNHead's state_dict from mmdetection's _init_layers: per level cls /
    kernel towers (reg_convs[l] is cls_convs[l], so its keys repeat cls_convs'), 1x1
    predictors (no rtm_obj: with_objectness=False), and mask_head."""
    keys = {}
    for level in range(3):
        for i in range(stacked):
            cin = in_c if i == 0 else feat
            for tower in ('cls_convs', 'reg_convs', 'kernel_convs'):
                keys.update(conv_bn(f'{tower}.{level}.{i}', cin, feat, 3))
        for name, out in (('rtm_cls', num_classes), ('rtm_reg', 4),
                          ('rtm_kernel', NUM_GEN_PARAMS)):
            keys[f'{name}.{level}.weight'] = (out, feat, 1, 1)
            keys[f'{name}.{level}.bias'] = (out, )
    keys['mask_head.fusion_conv.weight'] = (in_c, 3 * in_c, 1, 1)
    keys['mask_head.fusion_conv.bias'] = (in_c, )
    for i in range(4):
        keys.update(conv_bn(f'mask_head.stacked_convs.{i}', in_c if i == 0 else feat, feat, 3))
    keys['mask_head.projection.weight'] = (8, feat, 1, 1)
    keys['mask_head.projection.bias'] = (8, )
    return keys


@pytest.mark.parametrize('in_c', [96, 128])  # rtmdet-ins_tiny, rtmdet-ins_s
def test_sep_bn_head_keys_match_the_configs(in_c):
    head = RTMDetInsSepBNHead(num_classes=80, in_channels=in_c, feat_channels=in_c,
                              stacked_convs=2, act_cfg=SILU,
                              anchor_generator=dict(type='MlvlPointGenerator', offset=0,
                                                    strides=STRIDES))
    assert shapes_of(head) == head_keys(in_c, in_c)


def test_rtmdet_ins_tiny_detector_keys():
    cfg = dict(
        type='RTMDet',
        backbone=dict(type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=0.167,
                      widen_factor=0.375, channel_attention=True, act_cfg=SILU),
        neck=dict(type='CSPNeXtPAFPN', in_channels=[96, 192, 384], out_channels=96,
                  num_csp_blocks=1, expand_ratio=0.5, act_cfg=SILU),
        bbox_head=dict(HEAD, num_classes=80, in_channels=96, feat_channels=96),
        train_cfg=TRAIN_CFG, test_cfg=TEST_CFG)
    model = MODELS.build(cfg)
    expected = {**{f'backbone.{k}': v for k, v in
                   cspnext(deepen_factor=0.167, widen_factor=0.375).items()},
                **cspnext_pafpn('neck', [96, 192, 384], 96, num_csp_blocks=1),
                **{f'bbox_head.{k}': v for k, v in head_keys(96, 96).items()}}
    assert shapes_of(model) == expected


def test_plain_ins_head_keys_defaults():
    # RTMDetInsHead keeps ATSSHead's defaults: GN(32), 4 convs, 3x3 predictors, objectness,
    # a Scale per level; the mask branch follows the head's norm.
    head = RTMDetInsHead(num_classes=3, in_channels=64, feat_channels=64,
                         anchor_generator=dict(type='MlvlPointGenerator', offset=0,
                                               strides=STRIDES))
    expected = {}
    for i in range(4):
        for tower in ('cls_convs', 'reg_convs', 'kernel_convs'):
            expected[f'{tower}.{i}.conv.weight'] = (64, 64, 3, 3)
            expected[f'{tower}.{i}.gn.weight'] = (64, )
            expected[f'{tower}.{i}.gn.bias'] = (64, )
        expected[f'mask_head.stacked_convs.{i}.conv.weight'] = (64, 64, 3, 3)
        expected[f'mask_head.stacked_convs.{i}.gn.weight'] = (64, )
        expected[f'mask_head.stacked_convs.{i}.gn.bias'] = (64, )
    for name, out in (('rtm_cls', 3), ('rtm_reg', 4), ('rtm_obj', 1),
                      ('rtm_kernel', NUM_GEN_PARAMS)):
        expected[f'{name}.weight'] = (out, 64, 3, 3)
        expected[f'{name}.bias'] = (out, )
    for level in range(3):
        expected[f'scales.{level}.scale'] = ()
    expected.update({'mask_head.fusion_conv.weight': (64, 192, 1, 1),
                     'mask_head.fusion_conv.bias': (64, ),
                     'mask_head.projection.weight': (8, 64, 1, 1),
                     'mask_head.projection.bias': (8, )})
    assert shapes_of(head) == expected


def test_sep_bn_defaults_sharing_and_init():
    head = make_head()
    assert (head.num_prototypes, head.dyconv_channels, head.num_dyconvs,
            head.mask_loss_stride) == (8, 8, 3, 4)
    assert not head.with_objectness and head.share_conv and head.pred_kernel_size == 1
    assert type(head.loss_mask).__name__ == 'DiceLoss'
    assert (head.loss_mask.loss_weight, head.loss_mask.eps) == (2.0, 5e-6)
    for level in range(3):
        assert head.reg_convs[level] is head.cls_convs[level]  # mmdetection's quirk
        for i in range(2):
            assert head.cls_convs[level][i].conv is head.cls_convs[0][i].conv
            assert head.kernel_convs[level][i].conv is not head.kernel_convs[0][i].conv \
                or level == 0
        assert head.cls_convs[level][0].bn is not head.cls_convs[0][0].bn or level == 0
        # init: class bias for a 0.01 prior, box bias 1, kernel bias 0
        assert torch.allclose(head.rtm_cls[level].bias, torch.full((2, ), -math.log(99)))
        assert torch.equal(head.rtm_reg[level].bias, torch.ones(4))
        assert torch.equal(head.rtm_kernel[level].bias, torch.zeros(NUM_GEN_PARAMS))
        assert head.rtm_kernel[level].weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.equal(head.mask_head.fusion_conv.bias, torch.zeros(FEAT))


def test_mask_feat_module_fuses_levels_at_the_finest_grid():
    head = make_head().eval()
    feats = make_feats(2)
    mf = head.mask_head
    fused = torch.cat([feats[0]] + [
        F.interpolate(f, size=(8, 8), mode='bilinear', align_corners=False) for f in feats[1:]
    ], 1)
    expected = mf.projection(mf.stacked_convs(mf.fusion_conv(fused)))
    assert torch.allclose(mf(feats), expected)
    outs = head(feats)
    assert [tuple(o.shape) for o in outs[2]] == [(2, NUM_GEN_PARAMS, 8, 8),
                                                 (2, NUM_GEN_PARAMS, 4, 4),
                                                 (2, NUM_GEN_PARAMS, 2, 2)]
    assert outs[3].shape == (2, 8, 8, 8)
    # SepBN distances are relu(rtm_reg) * stride: never negative.
    assert all((b >= 0).all() for b in outs[1])


# ----------------------------------------------------------------------------- dynamic convs


@pytest.mark.parametrize('prototypes,channels,layers,expected', [
    (8, 8, 3, 169), (4, 6, 2, 6 * 6 + 6 + 6 + 1), (8, 8, 4, 80 + 8 + 2 * (64 + 8) + 8 + 1),
    (2, 16, 3, 4 * 16 + 16 + 16 * 16 + 16 + 16 + 1)])
def test_number_of_kernel_parameters(prototypes, channels, layers, expected):
    head = make_head(num_prototypes=prototypes, dyconv_channels=channels, num_dyconvs=layers)
    assert head.num_gen_params == expected
    assert head.rtm_kernel[0].out_channels == expected
    assert head.mask_head.projection.out_channels == prototypes


def reference_mask_logits(mask_feat, kernels, priors, num_prototypes, channels, num_layers):
    """One instance at a time: explicit offsets and one F.conv2d per layer."""
    shapes, w_off, b_off, _ = kernel_layout(num_prototypes, channels, num_layers)
    _, height, width = mask_feat.shape
    ys, xs = torch.meshgrid(torch.arange(height) * 8.0, torch.arange(width) * 8.0,
                            indexing='ij')
    out = []
    for kernel, (px, py, stride, _) in zip(kernels, priors.tolist()):
        offsets = torch.stack([(px - xs) / (8 * stride), (py - ys) / (8 * stride)])
        x = torch.cat([offsets, mask_feat])[None]  # [1, 2 + P, H, W]
        for i, (cin, cout) in enumerate(shapes):
            weight = kernel[w_off[i]:w_off[i] + cin * cout].reshape(cout, cin, 1, 1)
            x = F.conv2d(x, weight, kernel[b_off[i]:b_off[i] + cout])
            if i < num_layers - 1:
                x = F.relu(x)
        out.append(x[0, 0])
    return torch.stack(out)


@pytest.mark.parametrize('prototypes,channels,layers', [(8, 8, 3), (4, 6, 2), (3, 5, 4)])
def test_dynamic_convs_match_per_instance_loops(prototypes, channels, layers):
    head = make_head(num_prototypes=prototypes, dyconv_channels=channels, num_dyconvs=layers)
    mask_feat = torch.randn(prototypes, 8, 10)
    priors = torch.tensor([[0., 0., 8, 8], [40., 24., 8, 8], [16., 48., 16, 16],
                           [64., 32., 32, 32], [72., 8., 8, 8]])
    kernels = torch.randn(len(priors), head.num_gen_params)
    got = head._mask_predict_by_feat_single(mask_feat, kernels, priors)
    expected = reference_mask_logits(mask_feat, kernels, priors, prototypes, channels, layers)
    assert got.shape == (5, 8, 10)
    assert torch.allclose(got, expected, atol=1e-5)
    assert head._mask_predict_by_feat_single(mask_feat, kernels[:0], priors[:0]).shape == \
        (0, 8, 10)


# ----------------------------------------------------------------------------- mask loss


def dice_loss_by_hand(probs, target, eps=5e-6):
    probs, target = probs.flatten().double(), target.flatten().double()
    return 1 - 2 * (probs * target).sum() / ((probs * probs).sum() + eps + target.sum() + eps)


def test_mask_loss_of_coordinate_kernels_by_hand():
    head = make_head()
    num_priors = 64 + 16 + 4
    kernels = torch.randn(1, num_priors, NUM_GEN_PARAMS)
    kernels[0, 5] = x_ramp_kernel()
    kernels[0, 70] = x_ramp_kernel(slope=4.0, bias=0.3)
    priors = torch.tensor([[40., 24., 8, 8], [16., 40., 16, 16]])
    sampling = SimpleNamespace(pos_inds=torch.tensor([5, 70]), pos_priors=priors,
                               pos_assigned_gt_inds=torch.tensor([1, 0]))
    gt_masks = torch.from_numpy(np.stack([rect_mask(9, 11, 56, 50),
                                          rect_mask(0, 0, 30, 64)])).bool()
    loss = head.loss_mask_by_feat(torch.randn(1, 8, 8, 8), kernels, [sampling],
                                  [InstanceData(masks=gt_masks)])

    total = 0.0
    for (px, _, stride, _), slope, bias, gt in zip(priors.tolist(), (10.0, 4.0), (-0.1, 0.3),
                                                   (gt_masks[1], gt_masks[0])):
        # 8 stride-8 columns -> 16 stride-4 columns (the x2 upsampling), same for every row
        row = resize_linear_1d(x_ramp_logits(px, stride, slope, bias), 16, 0.5)
        probs = torch.sigmoid(torch.tensor(row, dtype=torch.float64)).expand(16, 16)
        target = gt[2::4, 2::4]  # every 4th pixel from 2: 16 x 16
        total += dice_loss_by_hand(probs, target)
    expected = 2.0 * total / (2 + torch.finfo(torch.float32).eps)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_by_feat_mask_term_with_constant_logits():
    # Every kernel gives the constant logit b, so each positive's Dice is the same and the
    # mask loss is 2 * (1 - dice(sigmoid(b), sampled gt)) however many positives there are.
    head = make_head()
    b = 0.7
    kernel = torch.zeros(NUM_GEN_PARAMS)
    kernel[-1] = b  # the last layer's bias
    sizes = [IMG // s for s in STRIDES]
    cls_scores = [torch.zeros(1, 2, n, n) for n in sizes]
    bbox_preds = [torch.full((1, 4, n, n), 12.0) for n in sizes]
    kernel_preds = [kernel.reshape(1, -1, 1, 1).expand(1, -1, n, n).clone() for n in sizes]
    mask = rect_mask(9, 11, 56, 50)  # rows 11..49, cols 9..55
    sample = make_sample([[9, 11, 56, 50]], mask[None], labels=[1])
    losses = head.loss_by_feat(cls_scores, bbox_preds, kernel_preds, torch.randn(1, 8, 8, 8),
                               [sample.gt_instances], [sample.metainfo])
    # Sampled rows 2 + 4k in [11, 50): 14..46 (9); columns in [9, 56): 10..54 (12).
    target_sum = 9 * 12
    assert int(torch.from_numpy(mask)[2::4, 2::4].sum()) == target_sum
    p = 1 / (1 + math.exp(-b))
    dice = 2 * p * target_sum / (256 * p * p + 5e-6 + target_sum + 5e-6)
    assert losses['loss_mask'].item() == pytest.approx(2 * (1 - dice), rel=1e-5)
    assert len(losses['loss_cls']) == len(losses['loss_bbox']) == 3
    # The data sample keeps its BitmapMasks (mmdetection replaces them with a tensor).
    assert isinstance(sample.gt_instances.masks, BitmapMasks)


def test_images_without_gt():
    head = make_head().eval()  # eval BN: every image's outputs independent of the batch
    feats = make_feats(2)
    empty = make_sample()
    full = make_sample([[8, 8, 48, 40]], rect_mask(8, 8, 48, 40)[None])

    losses = head.loss(tuple(f[:1] for f in feats), [empty])
    assert losses['loss_mask'].item() == 0 and losses['loss_mask'].requires_grad
    assert sum(losses['loss_bbox']).item() == 0
    assert sum(losses['loss_cls']).item() > 0
    losses['loss_mask'].backward()  # connected to the graph, zero gradients

    both = head.loss(feats, [empty, full])
    alone = head.loss(tuple(f[1:] for f in feats), [full])
    assert both['loss_mask'].item() > 0
    # The empty image adds no positives: the mask loss is the full image's alone.
    assert both['loss_mask'].item() == pytest.approx(alone['loss_mask'].item(), rel=1e-6)
    again = head.loss(feats, [empty, full])  # the samples are left usable
    assert again['loss_mask'].item() == pytest.approx(both['loss_mask'].item(), rel=1e-6)


def test_loss_rejects_wrong_number_of_levels():
    head = make_head()
    outs = head(make_feats())
    sample = make_sample()
    with pytest.raises(AssertionError):
        head.loss_by_feat(outs[0][:2], outs[1][:2], outs[2][:2], outs[3],
                          [sample.gt_instances], [sample.metainfo])


# ----------------------------------------------------------------------------- predictions


def one_detection_outputs(mask_feat_seed: int = 0):
    """Head outputs with one confident prior: class 1 at column 4, row 3 of level 0 (point
    (32, 24)), distances 8, and the x-ramp kernel everywhere."""
    sizes = [IMG // s for s in STRIDES]
    cls_scores = [torch.full((1, 2, n, n), -10.0) for n in sizes]
    cls_scores[0][0, 1, 3, 4] = 5.0
    bbox_preds = [torch.full((1, 4, n, n), 8.0) for n in sizes]
    kernel_preds = [x_ramp_kernel().reshape(1, -1, 1, 1).expand(1, -1, n, n).clone()
                    for n in sizes]
    mask_feat = torch.randn(1, 8, 8, 8, generator=torch.Generator().manual_seed(mask_feat_seed))
    return cls_scores, bbox_preds, kernel_preds, mask_feat


def test_predict_one_detection_with_its_mask_by_hand():
    head = make_head()
    meta = dict(img_shape=(IMG, IMG), ori_shape=(IMG, IMG), scale_factor=(1.0, 1.0))
    result = head.predict_by_feat(*one_detection_outputs(), batch_img_metas=[meta])[0]
    assert torch.allclose(result.bboxes, torch.tensor([[24., 16., 40., 32.]]))
    assert torch.allclose(result.scores, torch.sigmoid(torch.tensor([5.0])))
    assert result.labels.tolist() == [1]
    assert result.priors.tolist() == [[32., 24., 8., 8.]]
    # Logits per column 10 * relu((32 - 8j) / 64) - 0.1, upsampled x8 along x.
    row = resize_linear_1d(x_ramp_logits(32, 8), IMG, 1 / 8)
    expected = torch.tensor([v > 0 for v in row]).expand(IMG, IMG)
    assert result.masks.dtype == torch.bool and result.masks.shape == (1, IMG, IMG)
    assert torch.equal(result.masks[0], expected)
    assert expected[:, :35].all() and not expected[:, 35:].any()

    # Rescaled from a 60x62 input of a 30x31 original: boxes / 2, masks resized and cropped.
    meta = dict(img_shape=(60, 62), ori_shape=(30, 31), scale_factor=(2.0, 2.0))
    result = head.predict_by_feat(*one_detection_outputs(), batch_img_metas=[meta],
                                  rescale=True)[0]
    assert torch.allclose(result.bboxes, torch.tensor([[12., 8., 20., 16.]]))
    row = resize_linear_1d(row, 32, 2.0)[:31]
    assert torch.equal(result.masks[0], torch.tensor([v > 0 for v in row]).expand(30, 31))


def test_predict_contract_on_random_features():
    head = make_head(test_cfg=ConfigDict(dict(TEST_CFG, score_thr=0.0, max_per_img=7)))
    feats = make_feats(2)
    samples = [make_sample(img_shape=(60, 62), ori_shape=(30, 31), scale_factor=(2.0, 2.0)),
               make_sample()]
    results = head.predict(feats, samples, rescale=True)
    for result, (h, w) in zip(results, [(30, 31), (IMG, IMG)]):
        n = len(result)
        assert 0 < n <= 7
        assert result.masks.dtype == torch.bool and result.masks.shape == (n, h, w)
        assert result.bboxes.shape == (n, 4) and result.labels.shape == (n, )
        assert (result.scores[:-1] >= result.scores[1:]).all()
        assert ((result.labels >= 0) & (result.labels < 2)).all()
        assert result.kernels.shape == (n, NUM_GEN_PARAMS)
    # Without rescale the masks cover the padded input (8 x the prototype grid), as in
    # mmdetection, whatever img_shape is.
    results = head.predict(feats, samples, rescale=False)
    assert results[0].masks.shape[1:] == (IMG, IMG)


def test_predict_without_detections():
    head = make_head(test_cfg=ConfigDict(dict(TEST_CFG, score_thr=1.0)))
    samples = [make_sample(img_shape=(60, 62), ori_shape=(30, 31), scale_factor=(2.0, 2.0))]
    feats = make_feats()
    result = head.predict(feats, samples, rescale=True)[0]
    assert result.masks.shape == (0, 30, 31) and result.masks.dtype == torch.bool
    assert result.bboxes.shape == (0, 4) and result.scores.shape == (0, )
    result = head.predict(feats, samples, rescale=False)[0]
    assert result.masks.shape == (0, 60, 62)


def test_predict_needs_nms():
    head = make_head()
    meta = dict(img_shape=(IMG, IMG), ori_shape=(IMG, IMG), scale_factor=(1.0, 1.0))
    with pytest.raises(AssertionError, match='with_nms'):
        head.predict_by_feat(*one_detection_outputs(), batch_img_metas=[meta], with_nms=False)


def test_module_path_of_mmdetection():
    assert ins_module.RTMDetInsSepBNHead is RTMDetInsSepBNHead
    assert ins_module.MaskFeatModule.__name__ == 'MaskFeatModule'
    assert MODELS.get('RTMDetInsHead') is RTMDetInsHead


# ----------------------------------------------------------------------------- training


def disc_mask(cx, cy, r, size=IMG) -> np.ndarray:
    ys, xs = np.mgrid[:size, :size]
    return ((xs - cx)**2 + (ys - cy)**2 <= r * r).astype(np.uint8)


@pytest.mark.slow
def test_tiny_rtmdet_ins_overfits_one_mask():
    cfg = dict(
        type='RTMDet',
        backbone=dict(type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=0.167,
                      widen_factor=0.125, channel_attention=True, act_cfg=SILU,
                      norm_cfg=dict(type='BN', momentum=0.03, eps=0.001)),
        neck=dict(type='CSPNeXtPAFPN', in_channels=[32, 64, 128], out_channels=16,
                  num_csp_blocks=1, expand_ratio=0.5, act_cfg=SILU,
                  norm_cfg=dict(type='BN', momentum=0.03, eps=0.001)),
        bbox_head=dict(HEAD, num_classes=2, in_channels=16, feat_channels=16),
        train_cfg=TRAIN_CFG, test_cfg=dict(TEST_CFG, score_thr=0.01))
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    mask = disc_mask(30, 34, 14)
    sample = make_sample([[16, 20, 45, 49]], mask[None], labels=[1])
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, IMG, IMG, generator=generator) * 0.2
    image[0, :, torch.from_numpy(mask).bool()] += 1.0  # the object is visible
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    mask_losses = []
    for _ in range(60):
        losses = model.loss(image, [copy.deepcopy(sample)])
        total = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        mask_losses.append(losses['loss_mask'].item())
    assert np.mean(mask_losses[-5:]) < 0.5 * np.mean(mask_losses[:5])

    # Predict with batch statistics: after 60 steps the BN running averages (momentum 0.03)
    # still lag far behind the weights.
    with torch.no_grad():
        pred = model.predict(image, [copy.deepcopy(sample)])[0].pred_instances
    assert pred.labels[pred.scores.argmax()] == 1
    assert pred.masks.dtype == torch.bool and pred.masks.shape[1:] == (IMG, IMG)
    best = pred.masks[pred.scores.argmax()]
    gt = torch.from_numpy(mask).bool()
    assert (best & gt).sum() / (best | gt).sum() > 0.7
