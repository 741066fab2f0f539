"""SOLOV2Head and its MaskFeatModule: CoordConv channels, keys, targets with (gt, cell)
duplicates, the dynamic-kernel loss and predictions against hand-computed values.

Same setup as test_solo_head.py: 64 x 64 input, P2-P6 of 16 ... 1 pixels, grids
[8, 6, 4, 3, 2]; the mask features are at stride 4 (16 x 16) and the grid divides
``16 * mask_stride`` = 64 pixels, so the positive cells are SOLO's:

- gt 1 (label 2, rows 16-31 x cols 8-39): level 0 cells 18, 19, 26, 27; level 1 cells 13, 14;
- gt 2 (label 1, an L: cols 0-15 and rows 48-63): level 2 cells 8, 9, 12, 13; level 3 cells 3,
  4, 6, 7.

Every target is the gt mask at stride 4 (pixels 4r+1, 4r+2 blended): rows 4-7 x cols 2-9 for
gt 1; cols 0-3 plus rows 12-15 for gt 2.
"""
import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import init_weights_quietly
from helpers_solo_keys import mask_feat_module, solov2_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import sigmoid_focal_loss

from mmdet_lite.models.dense_heads import SOLOHead, SOLOV2Head
from mmdet_lite.models.layers.solo_grid import generate_coordinate
from mmdet_lite.models.dense_heads.solov2_head import MaskFeatModule
from mmdet_lite.models.layers import ModulatedDeformConv2dPack
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks
from mmdet_lite.utils import register_all_modules

register_all_modules()

GRIDS = [8, 6, 4, 3, 2]
GN4 = dict(type='GN', num_groups=4, requires_grad=True)
TEST_CFG = dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05, kernel='gaussian',
                sigma=2.0, max_per_img=100)
MASK_FEAT = dict(feat_channels=8, start_level=0, end_level=3, out_channels=4, mask_stride=4,
                 norm_cfg=GN4)
SMALL = dict(num_classes=3, in_channels=8, feat_channels=16, stacked_convs=2,
             strides=[8, 8, 16, 32, 32],
             scale_ranges=((1, 24), (16, 48), (32, 96), (64, 192), (128, 512)),
             num_grids=GRIDS, norm_cfg=GN4)


def make_head(**kwargs) -> SOLOV2Head:
    cfg = dict(type='SOLOV2Head', **SMALL, mask_feature_head=dict(MASK_FEAT),
               test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    init_weights_quietly(head)
    return head


def make_feats(batch: int = 1):
    return tuple(torch.randn(batch, 8, 16 // 2**i, 16 // 2**i) for i in range(5))


def gts(masks: np.ndarray, bboxes, labels) -> InstanceData:
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32),
                        labels=torch.tensor(labels), masks=BitmapMasks(masks, 64, 64))


def two_gts() -> InstanceData:
    masks = np.zeros((2, 64, 64), dtype=np.uint8)
    masks[0, 16:32, 8:40] = 1
    masks[1, :, 0:16] = 1
    masks[1, 48:64, :] = 1
    return gts(masks, [[8, 16, 40, 32], [0, 0, 64, 64]], [2, 1])


def meta(img_shape=(64, 64), ori_shape=(64, 64)) -> dict:
    return dict(img_shape=img_shape, ori_shape=ori_shape, pad_shape=(64, 64),
                batch_input_shape=(64, 64), scale_factor=(1., 1.))


RECT = torch.zeros(16, 16, dtype=torch.uint8)
RECT[4:8, 2:10] = 1
ELL = torch.zeros(16, 16, dtype=torch.uint8)
ELL[:, 0:4] = 1
ELL[12:16, :] = 1
EXPECTED = {0: ([18, 19, 26, 27], 2, RECT), 1: ([13, 14], 2, RECT),
            2: ([8, 9, 12, 13], 1, ELL), 3: ([3, 4, 6, 7], 1, ELL), 4: ([], None, None)}


# ----------------------------------------------------------------------------- MaskFeatModule
def test_mask_feat_module_keys_and_coordconv_on_the_deepest_level():
    module = MaskFeatModule(in_channels=8, **MASK_FEAT)
    assert shapes_of(module) == mask_feat_module('', 8, 8, 4)
    # conv0 of levels 1, 2 read the neck channels, level 3 two more (x, y).
    assert [module.convs_all_levels[i].conv0.conv.in_channels for i in range(4)] == [8, 8, 8,
                                                                                        10]
    seen = []
    module.convs_all_levels[3].conv0.register_forward_pre_hook(
        lambda mod, inputs: seen.append(inputs[0]))
    feats = make_feats(2)
    out = module(feats)
    assert out.shape == (2, 4, 16, 16)  # stride 4, out_channels
    assert torch.equal(seen[0][:, 8:], generate_coordinate((2, 8, 2, 2), 'cpu'))
    assert torch.equal(seen[0][:, :8], feats[3])


def test_mask_feat_module_level_range_is_checked():
    with pytest.raises(AssertionError, match='start_level <= end_level'):
        MaskFeatModule(in_channels=8, feat_channels=8, start_level=2, end_level=1,
                       out_channels=4)
    with pytest.raises(AssertionError, match='needs levels 0..3'):
        MaskFeatModule(in_channels=8, **MASK_FEAT)(make_feats()[:3])


# ----------------------------------------------------------------------------- structure
def test_signature_defaults_are_mmdetections():
    assert issubclass(SOLOV2Head, SOLOHead) and MODELS.get('SOLOV2Head') is SOLOV2Head
    params = inspect.signature(SOLOV2Head.__init__).parameters
    assert params['mask_feature_head'].kind == inspect.Parameter.KEYWORD_ONLY
    assert params['mask_feature_head'].default is inspect.Parameter.empty
    assert params['dynamic_conv_size'].default == 1
    assert params['dcn_cfg'].default is None and params['dcn_apply_to_all_conv'].default
    assert params['init_cfg'].default == [
        dict(type='Normal', layer='Conv2d', std=0.01),
        dict(type='Normal', std=0.01, bias_prob=0.01, override=dict(name='conv_cls'))]
    mask_feat = inspect.signature(MaskFeatModule.__init__).parameters
    assert [mask_feat[k].default for k in ('mask_stride', 'conv_cfg', 'norm_cfg')] == [
        4, None, None]


def test_state_dict_keys_and_shapes():
    head = make_head()
    assert shapes_of(head) == solov2_head('', num_classes=3, in_channels=8, feat_channels=16,
                                          stacked_convs=2, mask_feat_channels=8,
                                          mask_out_channels=4)
    # dynamic_conv_size k: E * k * k kernel values per cell
    assert make_head(dynamic_conv_size=2).conv_kernel.out_channels == 16


def test_tower_convs_have_a_bias_only_without_norm_and_dcn_placement():
    head = make_head(norm_cfg=None)
    assert head.kernel_convs[0].conv.bias is not None and not head.kernel_convs[0].with_norm
    assert make_head().kernel_convs[0].conv.bias is None
    dcn = dict(type='DCNv2')
    every = make_head(dcn_cfg=dcn)
    assert all(isinstance(c.conv, ModulatedDeformConv2dPack)
               for c in [*every.kernel_convs, *every.cls_convs])
    light = make_head(dcn_cfg=dcn, dcn_apply_to_all_conv=False)
    assert [isinstance(c.conv, ModulatedDeformConv2dPack) for c in light.kernel_convs] == [
        False, True]
    with pytest.raises(AssertionError, match='dcn_cfg'):
        make_head(dcn_cfg='DCNv2')


def test_mask_feature_head_in_channels_follow_the_head():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        head = make_head(mask_feature_head=dict(MASK_FEAT, in_channels=32))
    assert any('changing mask_feature_head.in_channels to 8' in str(w.message) for w in caught)
    assert head.mask_feature_head.in_channels == 8 and head.mask_stride == 4


def test_kernel_tower_reads_coordinates_resized_to_the_grid():
    head = make_head()
    assert head.kernel_convs[0].conv.in_channels == 10
    assert head.cls_convs[0].conv.in_channels == 8
    seen = {'kernel': [], 'cls': []}  # inputs of the first conv, level by level
    head.kernel_convs[0].register_forward_pre_hook(
        lambda mod, inputs: seen['kernel'].append(inputs[0]))
    head.cls_convs[0].register_forward_pre_hook(
        lambda mod, inputs: seen['cls'].append(inputs[0]))
    feats = make_feats()
    kernels, cls_preds, mask_feats = head(feats)
    level0 = F.interpolate(feats[0], scale_factor=0.5, mode='bilinear')  # [1, 8, 8, 8]
    with_coord = torch.cat([level0, generate_coordinate(level0.size(), 'cpu')], 1)
    expected = F.interpolate(with_coord, size=8, mode='bilinear', align_corners=False)
    assert torch.allclose(seen['kernel'][0], expected)
    assert torch.allclose(seen['cls'][0], expected[:, :8])
    assert [tuple(k.shape) for k in kernels] == [(1, 4, g, g) for g in GRIDS]
    assert [tuple(c.shape) for c in cls_preds] == [(1, 3, g, g) for g in GRIDS]
    assert mask_feats.shape == (1, 4, 16, 16)


# ----------------------------------------------------------------------------- targets
def test_targets_match_the_hand_computed_cells_labels_and_masks():
    mask_targets, labels, pos_masks, pos_indexes = make_head()._get_targets_single(
        two_gts(), featmap_sizes=torch.Size([16, 16]))
    for lvl, (cells, label, target) in EXPECTED.items():
        assert pos_indexes[lvl] == cells
        assert pos_masks[lvl].nonzero().flatten().tolist() == cells
        expected_labels = torch.full((GRIDS[lvl]**2, ), 3)
        expected_labels[cells] = label if cells else 3
        assert torch.equal(labels[lvl].flatten(), expected_labels)
        assert mask_targets[lvl].shape == (len(cells), 16, 16)
        assert mask_targets[lvl].dtype == torch.uint8
        assert all(torch.equal(t, target) for t in mask_targets[lvl])


def test_a_cell_shared_by_two_gts_gets_both_masks_but_counts_once():
    masks = np.zeros((2, 64, 64), dtype=np.uint8)
    masks[:, 16:32, 8:40] = 1
    masks[1, 16:32, 8:12] = 0
    mask_targets, labels, pos_masks, pos_indexes = make_head()._get_targets_single(
        gts(masks, [[8, 16, 40, 32]] * 2, [0, 1]), featmap_sizes=torch.Size([16, 16]))
    assert pos_indexes[0] == [18, 19, 26, 27] * 2
    assert int(pos_masks[0].sum()) == 4 and labels[0].flatten()[18].item() == 1
    assert len(mask_targets[0]) == 8
    assert not torch.equal(mask_targets[0][0], mask_targets[0][4])


# ----------------------------------------------------------------------------- loss
def dice(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    pred, target = pred.flatten(1), target.flatten(1).float()
    return 1 - 2 * (pred * target).sum(1) / ((pred * pred).sum(1) + eps +
                                             (target * target).sum(1) + eps)


def test_loss_convolves_the_positive_kernels_over_the_mask_features():
    head = make_head()
    kernels, cls_preds, mask_feats = head(make_feats())
    losses = head.loss_by_feat(kernels, cls_preds, mask_feats, [two_gts()], [meta()])
    assert set(losses) == {'loss_mask', 'loss_cls'}
    expected_mask, logits, onehot = 0, [], []
    for lvl, (cells, label, target) in EXPECTED.items():
        cell_kernels = kernels[lvl][0].flatten(1)[:, cells]  # [E, P]
        if cells:
            # a 1x1 dynamic conv is a weighted sum of the E feature channels
            logits_map = torch.einsum('ep,ehw->phw', cell_kernels, mask_feats[0])
            expected_mask = expected_mask + dice(logits_map.sigmoid(),
                                                 target[None].expand(len(cells), -1, -1)).sum()
        logits.append(cls_preds[lvl][0].permute(1, 2, 0).reshape(-1, 3))
        level_onehot = torch.zeros(GRIDS[lvl]**2, 3)
        if cells:
            level_onehot[cells, label] = 1
        onehot.append(level_onehot)
    assert torch.allclose(losses['loss_mask'], 3.0 * expected_mask / 14)
    expected_cls = sigmoid_focal_loss(torch.cat(logits), torch.cat(onehot), alpha=0.25,
                                      gamma=2.0, reduction='sum') / 15
    assert torch.allclose(losses['loss_cls'], expected_cls)


def test_duplicated_gt_doubles_the_mask_loss_but_not_the_positive_count():
    head = make_head()
    outs = head(make_feats())
    masks = np.zeros((2, 64, 64), dtype=np.uint8)
    masks[:, 16:32, 8:40] = 1
    single = head.loss_by_feat(*outs, [gts(masks[:1], [[8, 16, 40, 32]], [0])], [meta()])
    double = head.loss_by_feat(*outs, [gts(masks, [[8, 16, 40, 32]] * 2, [0, 0])], [meta()])
    assert torch.allclose(double['loss_mask'], 2 * single['loss_mask'])
    assert torch.allclose(double['loss_cls'], single['loss_cls'])


def test_loss_of_images_without_objects_is_zero_with_a_graph():
    head = make_head()
    sample = DetDataSample(metainfo=meta())
    sample.gt_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                       labels=torch.zeros(0, dtype=torch.long),
                                       masks=BitmapMasks(np.zeros((0, 64, 64), np.uint8), 64,
                                                         64))
    losses = head.loss(make_feats(), [sample])
    assert losses['loss_mask'].item() == 0 and losses['loss_mask'].requires_grad
    assert torch.isfinite(losses['loss_cls'])
    sum(losses.values()).backward()


# ----------------------------------------------------------------------------- predict
def test_predict_runs_the_kernel_of_the_scoring_cell():
    head = make_head()
    kernels = [torch.zeros(1, 4, g, g) for g in GRIDS]  # zero kernel: probability 0.5
    cls_logits = [torch.full((1, 3, g, g), -10.) for g in GRIDS]
    kernels[2][0, 0, 1, 1] = 1.0  # level 2, cell (1, 1) reads channel 0 ...
    cls_logits[2][0, 1, 1, 1] = 5.0  # ... and is class 1
    mask_feats = torch.full((1, 4, 16, 16), -10.)
    mask_feats[0, 0, 2:10] = 10.  # rows 2-9 of every column
    result = head.predict_by_feat(kernels, cls_logits, mask_feats, batch_img_metas=[meta()])[0]
    assert result.labels.tolist() == [1]
    maskness = torch.sigmoid(torch.tensor(10.))
    assert torch.allclose(result.scores, torch.sigmoid(torch.tensor([5.])) * maskness)
    expected = torch.zeros(1, 64, 64, dtype=torch.bool)
    expected[0, 8:40] = True  # x mask_stride 4, bilinear
    assert result.masks.dtype == torch.bool and torch.equal(result.masks, expected)
    assert torch.equal(result.bboxes, torch.zeros(1, 4))
    # Cropped to img_shape, resized to ori_shape.
    result = head.predict_by_feat(kernels, cls_logits, mask_feats,
                                  batch_img_metas=[meta((48, 64), (24, 32))])[0]
    assert result.masks.shape == (1, 24, 32)


def test_predict_without_detections_returns_mmdetections_empty_results():
    head = make_head().eval()
    head.test_cfg['score_thr'] = 1.0
    sample = DetDataSample(metainfo=meta(ori_shape=(30, 40)))
    with torch.no_grad():
        result = head.predict(make_feats(), [sample])[0]
    assert result.masks.shape == (0, 30, 40) and result.bboxes.shape == (0, 4)
    assert result.labels.dtype == result.masks.dtype == torch.float32  # mmdetection's quirk


def test_predict_of_random_outputs_is_sorted_and_bounded():
    head = make_head().eval()
    head.test_cfg.update(score_thr=0.0, filter_thr=0.0, max_per_img=7)
    samples = [DetDataSample(metainfo=meta(ori_shape=(50, 60))) for _ in range(2)]
    with torch.no_grad():
        results = head.predict(make_feats(2), samples)
    for result in results:
        assert 0 < len(result) <= 7 and result.masks.shape[1:] == (50, 60)
        assert torch.all(result.scores[:-1] >= result.scores[1:])
        assert result.labels.dtype == torch.int64 and torch.all(result.labels < 3)
