"""The ResNet-50 variant configs of the classic zoo (dcn, dcnv2, gcnet, empirical_attention,
gn, gn+ws): mmdetection 3.3's values, its state_dict keys, and loss / predict on a small image.

Each config overrides only a few values of the Faster / Mask R-CNN R-50 FPN configs; the
tests write those overrides out from mmdetection's files and check that everything else is
the base's. Expected keys come from mmdetection's definitions (tests/helpers_hrnet_keys.py).
"""
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, make_batch, make_det_sample
from helpers_hrnet_keys import fpn, rcnn_heads, resnet50
from helpers_state_dict import shapes_of
from mmcv.cnn.bricks import ConvWS2d
from mmengine.config import Config
from torch import nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
FASTER = 'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
MASK = 'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
C3_C5 = (False, True, True, True)
C4_C5 = (False, False, True, True)
GN = dict(type='GN', num_groups=32, requires_grad=True)
WS = dict(type='ConvWS')


def dcn(kind: str, groups: int = 1) -> dict:
    return dict(type=kind, deform_groups=groups, fallback_on_stride=False)


def gcb(ratio: float) -> list:
    return [dict(cfg=dict(type='ContextBlock', ratio=ratio), stages=C3_C5,
                 position='after_conv3')]


def attention(kind: str) -> list:
    return [dict(cfg=dict(type='GeneralizedAttention', spatial_range=-1, num_heads=8,
                          attention_type=kind, kv_stride=2),
                 stages=C4_C5, position='after_conv2')]


def gn_schedule(milestones, max_epochs: int = 24) -> dict:
    return dict(
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
            dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
                 milestones=milestones, gamma=0.1)])


# Backbone overrides of each mmdetection config (ResNet-50 FPN base, 1x schedule).
BACKBONE_ONLY = {
    'dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py':
        (FASTER, dict(dcn=dcn('DCN'), stage_with_dcn=C3_C5)),
    'dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py':
        (MASK, dict(dcn=dcn('DCN'), stage_with_dcn=C3_C5)),
    'dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py':
        (FASTER, dict(dcn=dcn('DCNv2'), stage_with_dcn=C3_C5)),
    'dcnv2/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco.py':
        (FASTER, dict(dcn=dcn('DCNv2', 4), stage_with_dcn=C3_C5)),
    'dcnv2/mask-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py':
        (MASK, dict(dcn=dcn('DCNv2'), stage_with_dcn=C3_C5)),
    'gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py': (MASK, dict(plugins=gcb(1. / 4))),
    'gcnet/mask-rcnn_r50-gcb-r16-c3-c5_fpn_1x_coco.py': (MASK, dict(plugins=gcb(1. / 16))),
    'empirical_attention/faster-rcnn_r50-attn1111_fpn_1x_coco.py':
        (FASTER, dict(plugins=attention('1111'))),
    'empirical_attention/faster-rcnn_r50-attn0010_fpn_1x_coco.py':
        (FASTER, dict(plugins=attention('0010'))),
    'empirical_attention/faster-rcnn_r50-attn1111-dcn_fpn_1x_coco.py':
        (FASTER, dict(plugins=attention('1111'), dcn=dcn('DCN'), stage_with_dcn=C3_C5)),
    'empirical_attention/faster-rcnn_r50-attn0010-dcn_fpn_1x_coco.py':
        (FASTER, dict(plugins=attention('0010'), dcn=dcn('DCN'), stage_with_dcn=C3_C5)),
}


def load(path: str) -> Config:
    register_all_modules()
    return Config.fromfile(str(CONFIGS / path))


@pytest.mark.parametrize('name', sorted(BACKBONE_ONLY))
def test_backbone_only_configs_are_mmdetections(name):
    base_name, overrides = BACKBONE_ONLY[name]
    cfg, base = load(name), load(base_name)
    assert cfg.model.backbone == dict(base.model.backbone, **overrides)
    for key in set(base.model) - {'backbone'}:
        assert cfg.model[key] == base.model[key], key
    assert set(cfg.model) == set(base.model)
    assert cfg.train_cfg == base.train_cfg and cfg.param_scheduler == base.param_scheduler


def _check_norm_everywhere(cfg: Config, base: Config, conv_cfg, with_mask: bool) -> None:
    """The GN / GN+WS overrides of backbone, neck and heads; the rest is the base's."""
    ws = {} if conv_cfg is None else dict(conv_cfg=conv_cfg)
    assert cfg.model.backbone == dict(base.model.backbone, norm_cfg=GN, **ws)
    assert cfg.model.neck == dict(base.model.neck, norm_cfg=GN, **ws)
    assert cfg.model.roi_head.bbox_head == dict(
        base.model.roi_head.bbox_head, type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
        norm_cfg=GN, **ws)
    if with_mask:
        assert cfg.model.roi_head.mask_head == dict(base.model.roi_head.mask_head,
                                                    norm_cfg=GN, **ws)
    roi_rest = set(base.model.roi_head) - {'bbox_head', 'mask_head'}
    assert all(cfg.model.roi_head[k] == base.model.roi_head[k] for k in roi_rest)
    for key in ('type', 'rpn_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key] == base.model[key], key


@pytest.mark.parametrize('name,milestones,epochs', [
    ('gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py', [16, 22], 24),
    ('gn/mask-rcnn_r50_fpn_gn-all_3x_coco.py', [28, 34], 36)])
def test_gn_all_configs_are_mmdetections(name, milestones, epochs):
    cfg, base = load(name), load(MASK)
    init_cfg = dict(type='Pretrained', checkpoint='open-mmlab://detectron/resnet50_gn')
    base.model.backbone.init_cfg = init_cfg
    _check_norm_everywhere(cfg, base, None, with_mask=True)
    # Detectron's GN checkpoint expects BGR images with mean subtraction only.
    assert cfg.model.data_preprocessor == dict(
        base.model.data_preprocessor, mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False)
    schedule = gn_schedule(milestones, epochs)
    assert cfg.train_cfg == schedule['train_cfg']
    assert cfg.param_scheduler == schedule['param_scheduler']


@pytest.mark.parametrize('name,base_name,milestones', [
    ('gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py', FASTER, None),
    ('gn+ws/mask-rcnn_r50_fpn_gn-ws-all_2x_coco.py', MASK, [16, 22]),
    ('gn+ws/mask-rcnn_r50_fpn_gn-ws-all_20-23-24e_coco.py', MASK, [20, 23])])
def test_gn_ws_configs_are_mmdetections(name, base_name, milestones):
    cfg, base = load(name), load(base_name)
    base.model.backbone.init_cfg = dict(type='Pretrained',
                                        checkpoint='open-mmlab://jhu/resnet50_gn_ws')
    _check_norm_everywhere(cfg, base, WS, with_mask=base_name == MASK)
    assert cfg.model.data_preprocessor == base.model.data_preprocessor
    if milestones is None:
        assert cfg.train_cfg == base.train_cfg and cfg.param_scheduler == base.param_scheduler
    else:
        schedule = gn_schedule(milestones)
        assert cfg.train_cfg == schedule['train_cfg']
        assert cfg.param_scheduler == schedule['param_scheduler']


# name -> expected keys
def _keys(with_mask: bool, norm_kind=None, **backbone) -> dict:
    shared_convs = 4 if norm_kind else 0
    return {**resnet50('backbone', norm_kind=norm_kind or 'bn', **backbone),
            **fpn('neck', norm_kind=norm_kind),
            **rcnn_heads(with_mask, norm_kind=norm_kind, shared_convs=shared_convs)}


EXPECTED_KEYS = {
    'dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py':
        lambda: _keys(False, dcn='DCN', stage_with_dcn=C3_C5),
    'dcn/mask-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py':
        lambda: _keys(True, dcn='DCN', stage_with_dcn=C3_C5),
    'dcnv2/faster-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py':
        lambda: _keys(False, dcn='DCNv2', stage_with_dcn=C3_C5),
    'dcnv2/faster-rcnn_r50-mdconv-group4-c3-c5_fpn_1x_coco.py':
        lambda: _keys(False, dcn='DCNv2', deform_groups=4, stage_with_dcn=C3_C5),
    'dcnv2/mask-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py':
        lambda: _keys(True, dcn='DCNv2', stage_with_dcn=C3_C5),
    'gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py':
        lambda: _keys(True, gcb_ratio=1. / 4, gcb_stages=C3_C5),
    'gcnet/mask-rcnn_r50-gcb-r16-c3-c5_fpn_1x_coco.py':
        lambda: _keys(True, gcb_ratio=1. / 16, gcb_stages=C3_C5),
    'empirical_attention/faster-rcnn_r50-attn1111_fpn_1x_coco.py':
        lambda: _keys(False, attention_type='1111', attention_stages=C4_C5),
    'empirical_attention/faster-rcnn_r50-attn0010_fpn_1x_coco.py':
        lambda: _keys(False, attention_type='0010', attention_stages=C4_C5),
    'empirical_attention/faster-rcnn_r50-attn1111-dcn_fpn_1x_coco.py':
        lambda: _keys(False, attention_type='1111', attention_stages=C4_C5, dcn='DCN',
                      stage_with_dcn=C3_C5),
    'empirical_attention/faster-rcnn_r50-attn0010-dcn_fpn_1x_coco.py':
        lambda: _keys(False, attention_type='0010', attention_stages=C4_C5, dcn='DCN',
                      stage_with_dcn=C3_C5),
    'gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py': lambda: _keys(True, 'gn'),
    'gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py': lambda: _keys(False, 'gn'),
    'gn+ws/mask-rcnn_r50_fpn_gn-ws-all_2x_coco.py': lambda: _keys(True, 'gn'),
}


def test_expected_key_counts():
    # Faster R-CNN R-50 FPN has 348 entries, Mask R-CNN 360 (test_coco_state_dict.py).
    # DCN: 13 offset convs (weight + bias) in stages 2-4.
    assert len(EXPECTED_KEYS['dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py']()) == 348 + 26
    # GCB: 13 blocks x 8 entries.
    assert len(EXPECTED_KEYS['gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py']()) == 360 + 104
    # attn1111: 9 blocks x 10 entries; attn0010 + DCN: 9 x 6 + 26.
    assert len(EXPECTED_KEYS[
        'empirical_attention/faster-rcnn_r50-attn1111_fpn_1x_coco.py']()) == 348 + 90
    assert len(EXPECTED_KEYS[
        'empirical_attention/faster-rcnn_r50-attn0010-dcn_fpn_1x_coco.py']()) == 348 + 80
    # GN-all Mask R-CNN: 53 backbone norms of 2 entries instead of 5 (-159), FPN convs
    # lose their bias and gain a 2-entry GN (+8), the box head gets 4 convs + GN (+12 - 2 for
    # the second fc), the mask head's 4 convs lose their bias and gain a GN (+4).
    assert len(EXPECTED_KEYS['gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py']()) == \
        360 - 159 + 8 + 10 + 4


@pytest.mark.parametrize('name', sorted(EXPECTED_KEYS))
def test_state_dict_keys_and_shapes(name):
    model = MODELS.build(load(name).model)
    assert shapes_of(model) == EXPECTED_KEYS[name]()


def test_gn_ws_builds_weight_standardized_convs_where_mmdetection_does():
    model = MODELS.build(load('gn+ws/mask-rcnn_r50_fpn_gn-ws-all_2x_coco.py').model)
    backbone_convs = [m for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(backbone_convs) == 53 and all(isinstance(m, ConvWS2d) for m in backbone_convs)
    assert all(isinstance(m.conv, ConvWS2d) for m in model.neck.lateral_convs)
    assert all(isinstance(m.conv, ConvWS2d) for m in model.neck.fpn_convs)
    assert all(isinstance(m.conv, ConvWS2d) for m in model.roi_head.bbox_head.shared_convs)
    assert all(isinstance(m.conv, ConvWS2d) for m in model.roi_head.mask_head.convs)
    # The RPN convs and the mask logits / deconv are plain layers in mmdetection too.
    assert type(model.rpn_head.rpn_conv) is nn.Conv2d
    assert type(model.roi_head.mask_head.conv_logits) is nn.Conv2d
    assert type(model.roi_head.mask_head.upsample) is nn.ConvTranspose2d
    assert all(isinstance(m.gn, nn.GroupNorm) and m.gn.num_groups == 32
               for m in model.neck.fpn_convs)


def build_small(name: str):
    """The config's model (random construction-time weights) with lighter sampling."""
    cfg = load(name)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    cfg.model.test_cfg.rpn.max_per_img = 50
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=7)
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


# One config per family, and parameters its variant adds or changes (they must get
# gradients; stage 1 is frozen by the base's frozen_stages=1).
FAMILIES = [
    ('dcn/faster-rcnn_r50-dconv-c3-c5_fpn_1x_coco.py', 'backbone.layer3.1.conv2.conv_offset'),
    ('dcnv2/mask-rcnn_r50-mdconv-c3-c5_fpn_1x_coco.py', 'backbone.layer4.0.conv2.conv_offset'),
    ('gcnet/mask-rcnn_r50-gcb-r4-c3-c5_fpn_1x_coco.py',
     'backbone.layer2.0.context_block.channel_add_conv.3'),
    ('empirical_attention/faster-rcnn_r50-attn1111_fpn_1x_coco.py',
     'backbone.layer3.2.gen_attention_block.gamma'),
    ('gn/mask-rcnn_r50_fpn_gn-all_2x_coco.py', 'roi_head.bbox_head.shared_convs.3.gn'),
    ('gn+ws/faster-rcnn_r50_fpn_gn-ws-all_1x_coco.py', 'backbone.layer2.0.conv2'),
]


@pytest.mark.slow
@pytest.mark.parametrize('name,added', FAMILIES)
def test_loss_and_predict_on_a_small_image(name, added):
    model = build_small(name)
    with_mask = 'mask-rcnn' in name
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 56]], [3, 17],
                               img_shape=(64, 64), with_mask=with_mask)]

    model.train()
    data = model.data_preprocessor(make_batch(samples), True)
    losses = model(**data, mode='loss')
    expected = {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox'}
    assert set(losses) == (expected | {'loss_mask'} if with_mask else expected)
    assert_finite_losses(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    params = dict(model.named_parameters())
    grads = [p.grad for k, p in params.items() if k == added or k.startswith(added + '.')]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)

    model.eval()
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        result = model(**data, mode='predict')[0].pred_instances
    assert len(result) == 7 and result.bboxes.shape == (7, 4)
    assert torch.all((result.labels >= 0) & (result.labels < 80))
    assert torch.all(result.bboxes >= 0) and torch.all(result.bboxes <= 64)
    if with_mask:
        assert result.masks.shape == (7, 64, 64)
