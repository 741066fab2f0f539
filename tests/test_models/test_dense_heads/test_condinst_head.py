"""CondInst heads: aligned_bilinear, relative coordinates, the dynamic parameters and convs,
mask targets and loss, the box head's mask-centroid sampling and positives, predictions.

Expected values are hand-computed or come from straightforward references written here from
mmdetection 3.3's definitions (mmdet/models/dense_heads/condinst_head.py and
mmdet/models/utils/misc.py): an instance's parameter vector holds every dynamic layer's
weights ([out, in], row-major) then every layer's biases; the first layer reads
``(point - location) / (stride * size_of_interest)`` then the mask features; ReLU between
layers; gt masks are sampled every ``mask_out_stride`` pixels from half of it.
"""
import numpy as np
import pytest
import torch
from helpers import init_weights_quietly
from helpers_condinst_keys import condinst_bbox_head, condinst_mask_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import CondInstBboxHead, CondInstMaskHead, FCOSHead
from mmdet_lite.models.dense_heads.condinst_head import MaskFeatModule
from mmdet_lite.models.dense_heads.condinst_mask_head import (aligned_bilinear,
                                                              relative_coordinate_maps)
from mmdet_lite.registry import MODELS
from mmdet_lite.structures.mask import BitmapMasks
from mmdet_lite.utils import register_all_modules

register_all_modules()

INF = 1e8
GN = dict(type='GN', num_groups=4, requires_grad=True)
BN = dict(type='BN', requires_grad=True)
DICE = dict(type='DiceLoss', use_sigmoid=True, activate=True, eps=5e-6, loss_weight=1.0)
TEST_CFG = ConfigDict(nms_pre=1000, min_bbox_size=0, score_thr=0.0,
                      nms=dict(type='nms', iou_threshold=0.6), max_per_img=100, mask_thr=0.5)


def bbox_head_cfg(**kwargs) -> dict:
    """The COCO config's box head, 8 channels wide, on two levels (strides 8 and 16)."""
    cfg = dict(type='CondInstBboxHead', num_params=169, num_classes=2, in_channels=8,
               stacked_convs=1, feat_channels=8, strides=[8, 16],
               regress_ranges=((-1, 64), (64, INF)), norm_on_bbox=True,
               centerness_on_reg=True, center_sampling=True, conv_bias=True, norm_cfg=GN,
               loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                             loss_weight=1.0),
               loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
               loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True,
                                    loss_weight=1.0),
               test_cfg=TEST_CFG)
    cfg.update(kwargs)
    return cfg


def mask_head(**kwargs) -> CondInstMaskHead:
    """The COCO config's mask head on 8-channel levels (one stacked conv)."""
    cfg = dict(type='CondInstMaskHead', num_layers=3, feat_channels=8, size_of_interest=8,
               mask_out_stride=4, max_masks_to_train=300,
               mask_feature_head=dict(in_channels=8, feat_channels=8, start_level=0,
                                      end_level=2, out_channels=8, mask_stride=8,
                                      num_stacked_convs=1, norm_cfg=BN),
               loss_mask=DICE, test_cfg=TEST_CFG)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    init_weights_quietly(head)
    return head


def rect_masks(rects, height=64, width=64) -> BitmapMasks:
    """One mask per (x1, y1, x2, y2) pixel rectangle, x2/y2 excluded."""
    masks = np.zeros((len(rects), height, width), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, rects):
        mask[y1:y2, x1:x2] = 1
    return BitmapMasks(masks, height, width)


# ----------------------------------------------------------------------------- aligned_bilinear


def test_aligned_bilinear_hand_case():
    # Pad -> [[0,2,2],[4,6,6],[4,6,6]]; align_corners resize to 5x5 samples at half steps;
    # shift one pixel down/right; crop to 4x4.
    x = torch.tensor([[0., 2.], [4., 6.]])[None, None]
    expected = torch.tensor([[0., 0., 1., 2.],
                             [0., 0., 1., 2.],
                             [2., 2., 3., 4.],
                             [4., 4., 5., 6.]])
    assert torch.allclose(aligned_bilinear(x, 2)[0, 0], expected)


def reference_aligned_bilinear(x: np.ndarray, factor: int) -> np.ndarray:
    """Output pixel o samples the input at max(o - factor // 2, 0) / factor, bilinearly,
    beyond the last row/column repeating it."""
    h, w = x.shape

    def axis(n_in, n_out):
        pos = np.maximum(np.arange(n_out) - factor // 2, 0) / factor
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), pos - lo

    y0, y1, fy = axis(h, factor * h)
    x0, x1, fx = axis(w, factor * w)
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bottom = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


@pytest.mark.parametrize('factor', [2, 3, 4, 8])
def test_aligned_bilinear_matches_a_direct_reference(factor):
    x = torch.randn(2, 3, 5, 7)
    out = aligned_bilinear(x, factor)
    assert out.shape == (2, 3, 5 * factor, 7 * factor)
    for b in range(2):
        for c in range(3):
            expected = reference_aligned_bilinear(x[b, c].double().numpy(), factor)
            assert np.allclose(out[b, c].numpy(), expected, atol=1e-5)
    # every input pixel is reproduced at the centre of its cell
    s = factor // 2
    assert torch.allclose(out[..., s::factor, s::factor], x, atol=1e-6)


def test_aligned_bilinear_factor_one_and_bad_input():
    x = torch.randn(1, 1, 3, 3)
    assert aligned_bilinear(x, 1) is x
    with pytest.raises(AssertionError):
        aligned_bilinear(x[0], 2)
    with pytest.raises(AssertionError):
        aligned_bilinear(x, 0)
    with pytest.raises(AssertionError):
        aligned_bilinear(x, 1.5)


# ----------------------------------------------------------------------------- coordinates


def test_relative_coordinates_hand_case():
    # A 2x3 mask grid at stride 8 (points at offset 0: x 0, 8, 16; y 0, 8).
    locations = torch.tensor([[0., 0.], [8., 0.], [16., 0.], [0., 8.], [8., 8.], [16., 8.]])
    centers = torch.tensor([[12., 4.], [20., 36.]])
    strides = torch.tensor([16., 32.])
    coords = relative_coordinate_maps(locations, centers, strides, 8, (2, 3))
    assert coords.shape == (2, 2, 2, 3)
    # instance 0: unit 16 * 8 = 128
    assert torch.allclose(coords[0, 0], torch.tensor([[12., 4., -4.], [12., 4., -4.]]) / 128)
    assert torch.allclose(coords[0, 1], torch.tensor([[4., 4., 4.], [-4., -4., -4.]]) / 128)
    # instance 1: unit 32 * 8 = 256
    assert torch.allclose(coords[1, 0], torch.tensor([[20., 12., 4.], [20., 12., 4.]]) / 256)
    assert torch.allclose(coords[1, 1], torch.tensor([[36.] * 3, [28.] * 3]) / 256)


@pytest.mark.parametrize('size_of_interest', [8, 6, 5])
def test_relative_coordinates_equal_a_direct_division(size_of_interest):
    locations = torch.rand(12, 2) * 100
    centers = torch.rand(4, 2) * 100
    strides = torch.tensor([8., 16., 64., 128.])
    coords = relative_coordinate_maps(locations, centers, strides, size_of_interest, (3, 4))
    direct = (centers[:, :, None] - locations.T[None]) / (
        strides[:, None, None] * size_of_interest)  # [N, 2, H*W]
    assert torch.equal(coords, direct.reshape(4, 2, 3, 4))


# ----------------------------------------------------------------------------- dynamic params


@pytest.mark.parametrize('num_layers, weight_nums, bias_nums', [
    (2, [10 * 8, 8 * 1], [8, 1]),
    (3, [10 * 8, 8 * 8, 8 * 1], [8, 8, 1]),
    (4, [10 * 8, 8 * 8, 8 * 8, 8 * 1], [8, 8, 8, 1]),
])
def test_dynamic_param_counts(num_layers, weight_nums, bias_nums):
    # 8 mask-feature channels + 2 coordinates in, 8 hidden channels, 1 mask logit out.
    head = mask_head(num_layers=num_layers)
    assert head.in_channels == 8 and head.mask_feat_stride == 8
    assert head.weight_nums == weight_nums and head.bias_nums == bias_nums
    assert head.num_params == sum(weight_nums) + sum(bias_nums)
    # the default (3 layers) fills the box head's default num_params
    assert mask_head().num_params == MODELS.build(bbox_head_cfg()).num_params == 169


def test_parse_dynamic_params_splits_weights_then_biases():
    head = mask_head()
    params = torch.arange(2 * 169, dtype=torch.float32).reshape(2, 169)
    weights, biases = head.parse_dynamic_params(params)
    assert [tuple(w.shape) for w in weights] == [(16, 10, 1, 1), (16, 8, 1, 1), (2, 8, 1, 1)]
    assert [tuple(b.shape) for b in biases] == [(16, ), (16, ), (2, )]
    # weights at [0, 80), [80, 144), [144, 152); biases at [152, 160), [160, 168), 168
    for n in range(2):
        p = params[n]
        assert torch.equal(weights[0][8 * n:8 * n + 8, :, 0, 0], p[0:80].reshape(8, 10))
        assert torch.equal(weights[1][8 * n:8 * n + 8, :, 0, 0], p[80:144].reshape(8, 8))
        assert torch.equal(weights[2][n, :, 0, 0], p[144:152])
        assert torch.equal(biases[0][8 * n:8 * n + 8], p[152:160])
        assert torch.equal(biases[1][8 * n:8 * n + 8], p[160:168])
        assert biases[2][n] == p[168]


def reference_instance_mask(inputs: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """One instance's three 1x1 layers as matrix products over [C, H, W] inputs."""
    w0, w1, w2 = p[0:80].reshape(8, 10), p[80:144].reshape(8, 8), p[144:152].reshape(1, 8)
    b0, b1, b2 = p[152:160], p[160:168], p[168:169]
    h = torch.relu(torch.einsum('oc,chw->ohw', w0, inputs) + b0[:, None, None])
    h = torch.relu(torch.einsum('oc,chw->ohw', w1, h) + b1[:, None, None])
    return (torch.einsum('oc,chw->ohw', w2, h) + b2[:, None, None])[0]


def test_forward_single_runs_each_instance_conv_stack_then_upsamples():
    head = mask_head()
    mask_feat = torch.randn(8, 4, 6)  # stride 8
    info = InstanceData(param_preds=torch.randn(3, 169) * 0.3,
                        points=torch.tensor([[4., 4.], [20., 12.], [40., 24.]]),
                        strides=torch.tensor([8., 8., 16.]))
    (mask_logits, ) = head.forward_single(mask_feat, info)
    assert mask_logits.shape == (3, 8, 12)  # stride 8 -> mask_out_stride 4
    # the mask grid's points are cell centres: (i + 0.5) * 8
    locations = torch.stack(torch.meshgrid(torch.arange(6.) * 8 + 4, torch.arange(4.) * 8 + 4,
                                           indexing='xy'), -1).reshape(-1, 2)
    for n in range(3):
        rel = (info.points[n][:, None] - locations.T) / (info.strides[n] * 8)  # [2, 24]
        inputs = torch.cat([rel.reshape(2, 4, 6), mask_feat])
        expected = reference_instance_mask(inputs, info.param_preds[n])
        assert torch.allclose(mask_logits[n], aligned_bilinear(expected[None, None], 2)[0, 0],
                              atol=1e-5)


def test_forward_without_instances_gives_an_empty_map_per_image():
    head = mask_head()
    feats = [torch.randn(2, 8, 8 // 2**i, 8 // 2**i) for i in range(3)]
    empty = InstanceData(param_preds=torch.zeros(0, 169), points=torch.zeros(0, 2),
                         strides=torch.zeros(0))
    one = InstanceData(param_preds=torch.randn(1, 169), points=torch.tensor([[12., 20.]]),
                       strides=torch.tensor([8.]))
    outs = head(feats, [empty, one])
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0][0].shape == (0, 1, 8, 8)  # mmdetection's empty shape
    assert outs[0][1].shape == (1, 16, 16)


# ----------------------------------------------------------------------------- MaskFeatModule


def test_mask_feat_module_keys_fusion_and_init():
    module = MaskFeatModule(in_channels=8, feat_channels=16, start_level=0, end_level=2,
                            out_channels=8, mask_stride=8, num_stacked_convs=2, norm_cfg=BN)
    init_weights_quietly(module)
    expected = condinst_mask_head('m', in_channels=8, feat_channels=16, num_stacked_convs=2)
    assert shapes_of(module) == {k[len('m.mask_feature_head.'):]: v
                                 for k, v in expected.items()}
    module.eval()
    feats = [torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2),
             torch.randn(1, 8, 1, 1)]  # the fourth level is not used
    fused = (module.convs_all_levels[0](feats[0])
             + aligned_bilinear(module.convs_all_levels[1](feats[1]), 2)
             + aligned_bilinear(module.convs_all_levels[2](feats[2]), 4))
    expected_out = module.conv_pred(module.conv_branch(fused))
    assert torch.allclose(module(feats), expected_out, atol=1e-6)
    # init: Normal(std=0.01) for every conv; Kaiming-uniform (a=1, fan_out) only reaches
    # conv_pred (on the containers mmengine's kaiming_init does nothing).
    assert module.conv_branch[0].conv.weight.std() < 0.02
    assert module.convs_all_levels[0].conv0.conv.weight.std() < 0.02
    # kaiming_uniform_ with nonlinearity='relu' (a only matters for leaky_relu): gain
    # sqrt(2), fan_out = 8 outputs * 1 * 1, bound = gain * sqrt(3 / fan_out)
    bound = 2 ** 0.5 * (3 / 8) ** 0.5
    assert 0.1 < module.conv_pred.weight.std() and module.conv_pred.weight.abs().max() <= bound
    assert torch.all(module.conv_pred.bias == 0)


def test_mask_feat_module_rejects_bad_levels():
    with pytest.raises(AssertionError):
        MaskFeatModule(8, 8, start_level=2, end_level=1, out_channels=8)


# ----------------------------------------------------------------------------- mask targets


def test_mask_targets_are_sampled_at_mask_out_stride():
    head = mask_head(max_masks_to_train=-1)
    # 16x16 masks; stride 4 samples rows/cols 2, 6, 10, 14.
    gt = InstanceData(bboxes=torch.zeros(2, 4),
                      masks=rect_masks([(1, 5, 7, 11), (10, 0, 16, 3)], 16, 16))
    preds = torch.randn(3, 4, 4)
    info = InstanceData(pos_assigned_gt_inds=torch.tensor([1, 0, 1]),
                        scores=torch.zeros(3, 2), centernesses=torch.zeros(3, 1))
    kept, targets, num_pos = head._get_targets_single(preds, gt, info)
    mask0 = torch.zeros(4, 4)
    mask0[1:3, 0:2] = 1  # rows 6, 10 and cols 2, 6 are inside
    mask1 = torch.zeros(4, 4)
    mask1[0, 2:] = 1  # row 2; cols 10 and 14
    assert num_pos == 3 and torch.equal(kept, preds)
    assert torch.equal(targets, torch.stack([mask1, mask0, mask1]))


def test_max_masks_to_train_keeps_a_random_subset_with_matching_targets():
    head = mask_head(max_masks_to_train=2)
    gt = InstanceData(bboxes=torch.zeros(3, 4),
                      masks=rect_masks([(0, 0, 4, 4), (4, 4, 8, 8), (8, 8, 12, 12)], 16, 16))
    gt_inds = torch.tensor([2, 0, 1, 2, 0])
    preds = gt_inds.float()[:, None, None].expand(5, 4, 4).clone()  # each tagged by its gt
    info = InstanceData(pos_assigned_gt_inds=gt_inds, scores=torch.zeros(5, 2),
                        centernesses=torch.zeros(5, 1))
    kept, targets, num_pos = head._get_targets_single(preds, gt, info)
    assert num_pos == 2 and kept.shape == (2, 4, 4)
    all_targets = gt.masks.to_tensor(torch.float32, 'cpu')[:, 2::4, 2::4]
    for pred, target in zip(kept, targets):
        assert torch.equal(target, all_targets[int(pred[0, 0])])


def test_topk_masks_per_img_keeps_the_best_scored_positives_of_each_gt():
    head = mask_head(max_masks_to_train=-1, topk_masks_per_img=4)
    gt = InstanceData(bboxes=torch.zeros(2, 4),
                      masks=rect_masks([(0, 0, 4, 4), (4, 4, 8, 8)], 16, 16))
    gt_inds = torch.tensor([0, 1, 0, 0])
    preds = torch.arange(4.)[:, None, None].expand(4, 4, 4).clone()
    # 4 masks / 2 gts = 2 per gt; gt 0 has three: quality sigmoid(max score) *
    # sigmoid(centerness) ranks positive 3 (high score), then 0 (high centerness), then 2.
    scores = torch.tensor([[0., -1.], [0., 0.], [-2., -3.], [3., 0.]])
    centernesses = torch.tensor([[2.], [0.], [-1.], [0.]])
    info = InstanceData(pos_assigned_gt_inds=gt_inds, scores=scores, centernesses=centernesses)
    kept, targets, num_pos = head._get_targets_single(preds, gt, info)
    assert num_pos == 3
    assert kept[:, 0, 0].tolist() == [3., 0., 1.]  # gt 0's best two, then gt 1's only one
    all_targets = gt.masks.to_tensor(torch.float32, 'cpu')[:, 2::4, 2::4]
    assert torch.equal(targets, all_targets[[0, 0, 1]])


def dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 5e-6) -> torch.Tensor:
    """mmdetection's default (non-naive, V-Net) Dice loss of one mask."""
    p = logits.sigmoid().flatten()
    t = target.flatten()
    return 1 - 2 * (p * t).sum() / ((p * p).sum() + eps + (t * t).sum() + eps)


def test_loss_is_the_dice_sum_over_the_number_of_masks():
    head = mask_head()
    gts = [InstanceData(bboxes=torch.zeros(1, 4), masks=rect_masks([(0, 0, 8, 12)], 16, 16)),
           InstanceData(bboxes=torch.zeros(2, 4),
                        masks=rect_masks([(0, 0, 4, 4), (6, 2, 16, 16)], 16, 16)),
           InstanceData(bboxes=torch.zeros(1, 4), masks=rect_masks([(0, 0, 4, 4)], 16, 16))]
    preds = [torch.randn(2, 4, 4), torch.randn(1, 4, 4), torch.zeros(0, 1, 4, 4)]
    infos = [InstanceData(pos_assigned_gt_inds=torch.tensor([0, 0])),
             InstanceData(pos_assigned_gt_inds=torch.tensor([1])),
             InstanceData(pos_assigned_gt_inds=torch.zeros(0, dtype=torch.long))]
    for info in infos:
        info.scores = torch.zeros(len(info.pos_assigned_gt_inds), 2)
        info.centernesses = torch.zeros(len(info.pos_assigned_gt_inds), 1)
    loss = head.loss_by_feat(preds, gts, [{}] * 3, positive_infos=infos)['loss_mask']
    t0 = gts[0].masks.to_tensor(torch.float32, 'cpu')[0, 2::4, 2::4]
    t1 = gts[1].masks.to_tensor(torch.float32, 'cpu')[1, 2::4, 2::4]
    expected = (dice(preds[0][0], t0) + dice(preds[0][1], t0) + dice(preds[1][0], t1)) / 3
    assert torch.allclose(loss, expected, atol=1e-6)


def test_loss_without_positives_is_zero_and_needs_positive_infos():
    head = mask_head()
    gt = InstanceData(bboxes=torch.zeros(0, 4), masks=rect_masks([], 16, 16))
    info = InstanceData(pos_assigned_gt_inds=torch.zeros(0, dtype=torch.long),
                        scores=torch.zeros(0, 2), centernesses=torch.zeros(0, 1))
    loss = head.loss_by_feat([torch.zeros(0, 1, 4, 4)], [gt], [{}], positive_infos=[info])
    assert loss['loss_mask'].item() == 0
    with pytest.raises(AssertionError):
        head.loss_by_feat([torch.zeros(0, 1, 4, 4)], [gt], [{}], positive_infos=None)


# ----------------------------------------------------------------------------- mask predictions


def test_predicted_masks_are_cropped_to_img_shape_and_resized_to_ori_shape():
    head = mask_head()
    # Logits at stride 4 of a 16x16 padded input: the left half positive.
    logits = torch.full((1, 4, 4), -10.)
    logits[:, :, :2] = 10.
    bboxes = torch.tensor([[0., 0., 8., 12.]])
    meta = dict(img_shape=(12, 16), ori_shape=(24, 32), scale_factor=(0.5, 0.5))
    masks = head._predict_by_feat_single(logits, bboxes, meta, rescale=False)
    assert masks.shape == (1, 12, 16) and masks.dtype == torch.bool
    # input pixel 1 sits at output 4 * 1 + 2 = 6, pixel 2 at 10: the edge falls in between
    assert masks[0, :, :8].all() and not masks[0, :, 9:].any()
    masks = head._predict_by_feat_single(logits, bboxes, meta, rescale=True)
    assert masks.shape == (1, 24, 32)
    assert masks[0, :, :16].all() and not masks[0, :, 18:].any()
    assert torch.equal(bboxes, torch.tensor([[0., 0., 16., 24.]]))  # divided in place


def test_predict_by_feat_without_detections_gives_empty_masks_at_ori_shape():
    head = mask_head()
    results = InstanceData(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                           labels=torch.zeros(0, dtype=torch.long))
    meta = dict(img_shape=(16, 16), ori_shape=(20, 30), scale_factor=(1., 1.))
    (out, ) = head.predict_by_feat([torch.zeros(0, 1, 4, 4)], [results], [meta])
    assert out.masks.shape == (0, 20, 30) and out.masks.dtype == torch.bool


# ----------------------------------------------------------------------------- box head


def test_bbox_head_defaults_keys_and_forward():
    head = MODELS.build(bbox_head_cfg())
    init_weights_quietly(head)
    assert isinstance(head, FCOSHead)
    assert CondInstBboxHead(num_classes=2, in_channels=8).num_params == 169
    assert shapes_of(head) == condinst_bbox_head('', num_classes=2, in_channels=8,
                                                 feat_channels=8, stacked_convs=1,
                                                 num_levels=2)
    feats = (torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4))
    cls_scores, bbox_preds, centernesses, param_preds = head(feats)
    assert [tuple(p.shape) for p in param_preds] == [(2, 169, 8, 8), (2, 169, 4, 4)]
    # The FCOS outputs are FCOSHead's; the parameters come from the regression tower.
    fcos = MODELS.build({k: v for k, v in bbox_head_cfg(type='FCOSHead').items()
                         if k != 'num_params'})
    fcos.load_state_dict({k: v for k, v in head.state_dict().items()
                          if not k.startswith('controller')})
    for got, want in zip((cls_scores, bbox_preds, centernesses), fcos(feats)):
        assert all(torch.allclose(g, w) for g, w in zip(got, want))
    reg_feat = head.reg_convs[0](feats[1])
    assert torch.allclose(param_preds[1], head.controller(reg_feat), atol=1e-6)


def level_points(head):
    return head.prior_generator.grid_priors([(8, 8), (4, 4)])


def test_center_sampling_uses_the_mask_centroid_when_there_are_masks():
    head = MODELS.build(bbox_head_cfg())
    # gt 0: box (0, 0, 48, 48), mask only its left 8-pixel strip: centroid (3.5, 23.5);
    # gt 1: box and mask (32, 32, 64, 64): centroid (47.5, 47.5). Squares of half-side
    # 1.5 * 8 = 12 on P3 (points at 4, 12, ..., 60); both boxes are below P4's range.
    gt = InstanceData(bboxes=torch.tensor([[0., 0., 48., 48.], [32., 32., 64., 64.]]),
                      labels=torch.tensor([1, 0]),
                      masks=rect_masks([(0, 0, 8, 48), (32, 32, 64, 64)]))
    labels, _, pos_inds, pos_gt_inds = head.get_targets(level_points(head), [gt])
    # gt 0: x in {4, 12}, y in {12, 20, 28}; gt 1: x, y in {36, 44, 52}
    gt0 = [y * 8 + x for y in (1, 2, 3) for x in (0, 1)]
    gt1 = [y * 8 + x for y in (4, 5, 6) for x in (4, 5, 6)]
    assert pos_inds[0].tolist() == sorted(gt0 + gt1)
    assert pos_gt_inds[0].tolist() == [0] * 6 + [1] * 9
    assert labels[0][gt0].tolist() == [1] * 6 and labels[0][gt1].tolist() == [0] * 9
    assert int((labels[0] < 2).sum()) == 15 and bool((labels[1] == 2).all())  # P3; P4

    # Without masks the squares sit at the box centres, as FCOS's.
    del gt.masks
    labels, targets, pos_inds, _ = head.get_targets(level_points(head), [gt])
    gt0 = [y * 8 + x for y in (2, 3) for x in (2, 3)]  # centre 24: x, y in {20, 28}
    gt1 = [y * 8 + x for y in (5, 6) for x in (5, 6)]  # centre 48: x, y in {44, 52}
    assert pos_inds[0].tolist() == sorted(gt0 + gt1)
    fcos = MODELS.build({k: v for k, v in bbox_head_cfg(type='FCOSHead').items()
                         if k != 'num_params'})
    fcos_labels, fcos_targets = fcos.get_targets(level_points(head), [gt])
    assert all(torch.equal(a, b) for a, b in zip(labels, fcos_labels))
    assert all(torch.equal(a, b) for a, b in zip(targets, fcos_targets))


def test_losses_are_fcos_losses_and_positive_infos_point_at_the_positives():
    head = MODELS.build(bbox_head_cfg())
    init_weights_quietly(head)
    feats = (torch.randn(2, 8, 8, 8), torch.randn(2, 8, 4, 4))
    outs = head(feats)
    gts = [InstanceData(bboxes=torch.tensor([[4., 6., 40., 30.]]), labels=torch.tensor([1])),
           InstanceData(bboxes=torch.tensor([[20., 16., 60., 60.], [0., 0., 20., 24.]]),
                        labels=torch.tensor([0, 1]))]
    losses = head.loss_by_feat(*outs, gts, [{}, {}])
    fcos = MODELS.build({k: v for k, v in bbox_head_cfg(type='FCOSHead').items()
                         if k != 'num_params'})
    fcos_losses = fcos.loss_by_feat(*outs[:3], gts, [{}, {}])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    for name in losses:
        assert torch.allclose(losses[name], fcos_losses[name])

    infos = head.get_positive_infos()
    _, _, pos_inds, pos_gt_inds = head.get_targets(
        [p[:, :2] for p in head.prior_generator.grid_priors([(8, 8), (4, 4)])], gts)
    cls_scores, _, centernesses, param_preds = outs
    for img, info in enumerate(infos):
        assert len(info) > 0
        assert torch.equal(info.pos_inds, pos_inds[img])
        assert torch.equal(info.pos_assigned_gt_inds, pos_gt_inds[img])
        for k, index in enumerate(info.pos_inds.tolist()):
            level, pos = (0, index) if index < 64 else (1, index - 64)
            stride, width = (8, 8) if level == 0 else (16, 4)
            y, x = divmod(pos, width)
            assert info.points[k].tolist() == [(x + 0.5) * stride, (y + 0.5) * stride]
            assert info.strides[k] == stride
            assert torch.equal(info.param_preds[k], param_preds[level][img, :, y, x])
            assert torch.equal(info.scores[k], cls_scores[level][img, :, y, x])
            assert torch.equal(info.centernesses[k], centernesses[level][img, :, y, x])


def test_get_positive_infos_before_a_loss_fails():
    head = MODELS.build(bbox_head_cfg())
    with pytest.raises(AssertionError):
        head.get_positive_infos()


def test_detections_carry_the_parameters_point_and_stride_they_came_from():
    head = MODELS.build(bbox_head_cfg()).eval()
    init_weights_quietly(head)
    feats = (torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4))
    with torch.no_grad():
        cls_scores, bbox_preds, centernesses, param_preds = head(feats)
    meta = dict(img_shape=(64, 64), scale_factor=(1., 1.))
    (results, ) = head.predict_by_feat(cls_scores, bbox_preds, centernesses, param_preds,
                                       batch_img_metas=[meta])
    assert 0 < len(results) <= 100
    assert set(results.keys()) == {'bboxes', 'scores', 'labels', 'param_preds', 'points',
                                   'strides'}
    for k in range(len(results)):
        stride = int(results.strides[k])
        level = {8: 0, 16: 1}[stride]
        x, y = [int(v // stride) for v in results.points[k]]
        assert torch.equal(results.param_preds[k], param_preds[level][0, :, y, x])
        label = results.labels[k]
        score = (cls_scores[level][0, label, y, x].sigmoid()
                 * centernesses[level][0, 0, y, x].sigmoid())
        assert torch.allclose(results.scores[k], score)
        dist = bbox_preds[level][0, :, y, x]  # pixels at eval (norm_on_bbox)
        px, py = results.points[k]
        box = torch.stack([px - dist[0], py - dist[1], px + dist[2], py + dist[3]])
        assert torch.allclose(results.bboxes[k], box.clamp(0, 64), atol=1e-4)
