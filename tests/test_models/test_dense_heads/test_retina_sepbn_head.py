"""RetinaSepBNHead: keys and defaults from mmdetection's definition, tower convs shared across
levels with per-level BNs, forward against a hand-written reference, init, and loss/predict
on the EfficientNet-B3 RetinaNet config."""
import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_finite_losses, init_weights_quietly, make_batch, make_det_sample
from helpers_state_dict import bn, shapes_of
from mmengine.config import Config, ConfigDict

from mmdet_lite.models.dense_heads import RetinaSepBNHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

register_all_modules()

EFFB3 = (Path(__file__).resolve().parents[3] / 'configs' / 'efficientnet' /
         'retinanet_effb3_fpn_8xb4-crop896-1x_coco.py')
RETINA_ANCHORS = dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                      ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32])
FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
TRAIN_CFG = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0,
                  ignore_iof_thr=-1),
    sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)


def make_head(**kwargs) -> RetinaSepBNHead:
    """3 levels (strides 8/16/32), 2-conv BN towers, 8 -> 16 channels, 3 classes, 9 anchors."""
    cfg = dict(type='RetinaSepBNHead', num_classes=3, num_ins=3, in_channels=8,
               feat_channels=16, stacked_convs=2, norm_cfg=dict(type='BN'),
               anchor_generator=RETINA_ANCHORS, loss_cls=FOCAL,
               loss_bbox=dict(type='L1Loss', loss_weight=1.0),
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def feats(batch: int = 2, sizes=(8, 4, 2), channels: int = 8):
    return tuple(torch.randn(batch, channels, s, s) for s in sizes)


# ----------------------------------------------------------------------------- layers


def expected_keys(num_ins, convs, in_c, feat_c, num_classes, anchors, with_bn=True):
    """mmdetection's layout: ``{cls,reg}_convs.{level}.{j}`` ConvModules for every level (a
    BN makes the conv bias-free; without a norm the conv has a bias), then the shared 3x3
    ``retina_cls`` / ``retina_reg`` reading ``feat_channels``."""
    keys = {}
    for level in range(num_ins):
        for tower in ('cls_convs', 'reg_convs'):
            for j in range(convs):
                prefix = f'{tower}.{level}.{j}'
                keys[f'{prefix}.conv.weight'] = (feat_c, in_c if j == 0 else feat_c, 3, 3)
                if with_bn:
                    keys.update(bn(f'{prefix}.bn', feat_c))
                else:
                    keys[f'{prefix}.conv.bias'] = (feat_c, )
    keys.update({'retina_cls.weight': (anchors * num_classes, feat_c, 3, 3),
                 'retina_cls.bias': (anchors * num_classes, ),
                 'retina_reg.weight': (anchors * 4, feat_c, 3, 3),
                 'retina_reg.bias': (anchors * 4, )})
    return keys


def test_state_dict_keys_and_shapes_match_mmdet():
    assert shapes_of(make_head()) == expected_keys(3, 2, 8, 16, 3, 9)
    assert shapes_of(make_head(norm_cfg=None, num_ins=2, stacked_convs=1)) == \
        expected_keys(2, 1, 8, 16, 3, 9, with_bn=False)


def test_effb3_config_head_keys():
    head = make_head(num_classes=80, num_ins=5, in_channels=256, feat_channels=256,
                     stacked_convs=4, anchor_generator=dict(RETINA_ANCHORS,
                                                            strides=[8, 16, 32, 64, 128]))
    assert shapes_of(head) == expected_keys(5, 4, 256, 256, 80, 9)


def test_defaults_match_mmdet():
    params = inspect.signature(RetinaSepBNHead.__init__).parameters
    assert list(params)[1:4] == ['num_classes', 'num_ins', 'in_channels']
    assert {k: params[k].default for k in ('stacked_convs', 'conv_cfg', 'norm_cfg',
                                           'init_cfg')} == dict(
        stacked_convs=4, conv_cfg=None, norm_cfg=None, init_cfg=None)
    # No anchor_generator of its own: AnchorHead's (scales 8/16/32 on strides 4..64).
    head = RetinaSepBNHead(num_classes=80, num_ins=5, in_channels=256)
    assert head.prior_generator.strides == [(4, 4), (8, 8), (16, 16), (32, 32), (64, 64)]
    assert head.feat_channels == 256 and len(head.cls_convs[0]) == 4
    assert head.init_cfg is None  # AnchorHead's Normal(Conv2d) default is replaced
    assert isinstance(head.relu, torch.nn.ReLU)


def test_init_cfg_is_rejected_as_an_assertion_error():
    with pytest.raises(AssertionError, match='init_cfg must be None'):
        make_head(init_cfg=dict(type='Normal', layer='Conv2d', std=0.01))
    with pytest.raises(ValueError):
        make_head(init_cfg=dict(type='Normal', layer='Conv2d', std=0.01))


def test_tower_convs_are_level_0s_and_bns_are_per_level():
    head = make_head()
    for tower in (head.cls_convs, head.reg_convs):
        for j in range(2):
            for level in (1, 2):
                assert tower[level][j].conv is tower[0][j].conv
                assert tower[level][j].conv.weight is tower[0][j].conv.weight
                assert tower[level][j] is not tower[0][j]
                assert tower[level][j].bn is not tower[0][j].bn
    assert head.cls_convs[0][0].conv is not head.reg_convs[0][0].conv
    # parameters() counts a shared tensor once: 2 towers x 2 convs (no bias), 3 levels x
    # 2 towers x 2 BNs x (weight, bias), 2 predictors x (weight, bias).
    assert len(list(head.parameters())) == 4 + 24 + 4


def test_gradient_of_one_level_reaches_the_shared_conv_but_not_other_bns():
    head = make_head()
    cls_scores, bbox_preds = head(feats())
    (cls_scores[2].sum() + bbox_preds[2].sum()).backward()
    assert head.cls_convs[0][0].conv.weight.grad.abs().sum() > 0
    assert head.cls_convs[2][0].bn.weight.grad.abs().sum() > 0
    assert head.cls_convs[0][0].bn.weight.grad is None
    assert head.reg_convs[1][1].bn.weight.grad is None


def test_checkpoint_with_the_conv_under_every_level_loads_strictly():
    head = make_head()
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in head.state_dict().items()}
    for level in (1, 2):
        state[f'reg_convs.{level}.1.conv.weight'] = state['reg_convs.0.1.conv.weight']
    head.load_state_dict(state, strict=True)
    for level in range(3):
        assert torch.equal(head.reg_convs[level][1].conv.weight,
                           state['reg_convs.0.1.conv.weight'])
        assert torch.equal(head.reg_convs[level][1].bn.running_mean,
                           state[f'reg_convs.{level}.1.bn.running_mean'])


# ----------------------------------------------------------------------------- forward


def test_forward_shapes_per_level():
    head = make_head()
    cls_scores, bbox_preds = head(feats())
    assert isinstance(cls_scores, list) and isinstance(bbox_preds, list)
    assert [tuple(c.shape) for c in cls_scores] == [(2, 27, s, s) for s in (8, 4, 2)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 36, s, s) for s in (8, 4, 2)]
    # Fewer maps than num_ins use the first towers.
    cls_scores, _ = head(feats()[:2])
    assert len(cls_scores) == 2


def reference_forward(head, x, level):
    """conv (level 0's weights) -> level's BN (eval: running statistics) -> ReLU, per tower,
    then the shared predictors, written with torch.nn.functional."""
    outs = []
    for tower, pred in ((head.cls_convs, head.retina_cls), (head.reg_convs, head.retina_reg)):
        y = x
        for j in range(head.stacked_convs):
            norm = tower[level][j].bn
            y = F.conv2d(y, tower[0][j].conv.weight, padding=1)  # level 0's conv
            y = (y - norm.running_mean[:, None, None]) / torch.sqrt(
                norm.running_var[:, None, None] + norm.eps)
            y = F.relu(y * norm.weight[:, None, None] + norm.bias[:, None, None])
        outs.append(F.conv2d(y, pred.weight, pred.bias, padding=1))
    return outs


def test_forward_matches_a_functional_reference_with_per_level_statistics():
    head = make_head()
    init_weights_quietly(head)
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    head.eval()
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        cls_scores, bbox_preds = head((x, x, x))
        for level in range(3):
            ref_cls, ref_reg = reference_forward(head, x, level)
            assert torch.allclose(cls_scores[level], ref_cls, atol=1e-5)
            assert torch.allclose(bbox_preds[level], ref_reg, atol=1e-5)
    # Same input, same convs: only the per-level BNs make the levels differ.
    assert not torch.allclose(cls_scores[0], cls_scores[1])


# ----------------------------------------------------------------------------- init


def test_init_weights_prior_bias_and_small_normal_convs():
    head = make_head(num_classes=80, feat_channels=64)
    with torch.no_grad():
        for level in range(3):
            head.cls_convs[level][0].bn.weight.fill_(3.0)
            head.reg_convs[level][1].bn.bias.fill_(2.0)
    init_weights_quietly(head)
    # sigmoid(bias) = 0.01: bias = -log((1 - 0.01) / 0.01)
    assert torch.allclose(head.retina_cls.bias, torch.full((720, ), -math.log(99)))
    assert torch.all(head.retina_reg.bias == 0)
    for module in (head.retina_cls, head.retina_reg, head.cls_convs[0][1].conv,
                   head.reg_convs[2][0].conv):
        # Normal(0.01), not PyTorch's default (std ~ 1 / sqrt(3 * fan_in), 0.024 to 0.07).
        assert module.weight.std().item() == pytest.approx(0.01, rel=0.15)
    # mmdetection's base init only reaches direct children: the ConvModules inside the
    # ModuleLists never run their own init, so the BNs keep what they held.
    for level in range(3):
        assert torch.all(head.cls_convs[level][0].bn.weight == 3)
        assert torch.all(head.reg_convs[level][1].bn.bias == 2)


def test_init_weights_zeroes_tower_conv_bias_without_norm():
    head = make_head(norm_cfg=None)
    with torch.no_grad():
        head.cls_convs[0][0].conv.bias.fill_(1.0)
    init_weights_quietly(head)
    assert torch.all(head.cls_convs[2][0].conv.bias == 0)


# ----------------------------------------------------------------------------- training


def test_tiny_head_overfits_fixed_features():
    torch.manual_seed(0)
    head = make_head(feat_channels=8)
    init_weights_quietly(head)
    head.train()
    x = feats(batch=2)
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 56]], [0, 2]),
               make_det_sample([[4, 30, 36, 60]], [1])]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    history = []
    for _ in range(20):
        losses = head.loss(x, samples)
        total = sum(sum(v) for v in losses.values())
        history.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1] < 0.5 * history[0]


def test_effb3_retinanet_loss_and_predict():
    """The EfficientNet-B3 RetinaNet config with its RetinaSepBNHead (SyncBN without a
    process group normalizes like BN on CPU), on 64x64 images without the 896 padding."""
    model_cfg = Config.fromfile(str(EFFB3)).model
    assert model_cfg.bbox_head.type == 'RetinaSepBNHead' and model_cfg.bbox_head.num_ins == 5
    model_cfg.backbone.init_cfg = None  # the checkpoint would be a download
    model_cfg.data_preprocessor.batch_augments = None
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    init_weights_quietly(model)
    head = model.bbox_head
    assert isinstance(head, RetinaSepBNHead)
    assert head.cls_convs[4][3].conv is head.cls_convs[0][3].conv
    assert torch.allclose(head.retina_cls.bias, torch.full((720, ), -math.log(99)))

    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 56]], [3, 17]),
               make_det_sample([[4, 30, 36, 60]], [5])]
    model.train()
    data = model.data_preprocessor(make_batch(samples), True)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert all(len(v) == 5 for v in losses.values())
    assert_finite_losses(losses)
    sum(sum(v) for v in losses.values()).backward()
    assert head.cls_convs[0][0].conv.weight.grad is not None
    assert head.cls_convs[4][0].bn.weight.grad is not None

    model.eval()
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        cls_scores, bbox_preds = head(model.extract_feat(data['inputs']))
        preds = model(data['inputs'], data['data_samples'], mode='predict')
    # P3..P7 of a 64x64 input: 8, 4, 2, 1, 1.
    assert [tuple(c.shape[-2:]) for c in cls_scores] == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert [c.shape[1] for c in cls_scores] == [720] * 5
    assert [b.shape[1] for b in bbox_preds] == [36] * 5
    assert len(preds) == 2
    for pred in preds:
        result = pred.pred_instances
        assert result.bboxes.shape == (len(result), 4) and result.scores.shape == (len(result), )
        assert result.labels.dtype == torch.long
        assert torch.all((result.labels >= 0) & (result.labels < 80))
