"""mmdetection 3.3's PVT / PVTv2 and EfficientNet RetinaNet configs (configs/pvt,
configs/efficientnet): they hold mmdetection's values, the models have mmdetection's
state_dict keys and shapes, the EfficientNet pipelines and batch padding give 896x896 inputs,
and one detector per backbone runs ``loss`` and ``predict`` on a small image; a tiny PVTv2
RetinaNet overfits a batch.

Expected values are written from mmdetection's config files; expected keys come from
helpers_pvt_effnet_keys (backbones, normed FPN, RetinaSepBNHead) and
helpers_resnet_family_keys (RetinaNet's FPN and head), written from mmdetection's module
definitions. The configs keep mmdetection's ``init_cfg`` checkpoints (URLs), so models are
built without ``init_weights`` where the backbone would be loaded, and key tests build on the
meta device.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers import assert_finite_losses, init_weights_quietly, make_batch, make_det_sample
from helpers_pvt_effnet_keys import (B3_FINAL, B3_STAGES, B3_STEM, efficientnet, fpn_bn, pvt,
                                     retina_sep_bn_head)
from helpers_resnet_family_keys import retina_head, retinanet_heads
from helpers_state_dict import shapes_of
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdet_lite.registry import MODELS, TRANSFORMS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
RETINANET = CONFIGS / 'retinanet' / 'retinanet_r50_fpn_1x_coco.py'
PVT_T = CONFIGS / 'pvt' / 'retinanet_pvt-t_fpn_1x_coco.py'
PVTV2_B0 = CONFIGS / 'pvt' / 'retinanet_pvtv2-b0_fpn_1x_coco.py'
EFFB3 = CONFIGS / 'efficientnet' / 'retinanet_effb3_fpn_8xb4-crop896-1x_coco.py'
RELEASE = 'https://github.com/whai362/PVT/releases/download/v2/'
EFFB3_CKPT = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
              'efficientnet-b3_3rdparty_8xb32-aa_in1k_20220119-5b4887a0.pth')
WIDE = [64, 128, 320, 512]

register_all_modules()

# file stem: (backbone type, backbone arguments besides type/init_cfg, checkpoint file, FPN
# in_channels, AdamW lr, batch size, auto_scale_lr base, optim wrapper type)
PVT_CONFIGS = {
    'retinanet_pvt-t_fpn_1x_coco': ('PyramidVisionTransformer', dict(num_layers=[2, 2, 2, 2]),
                                    'pvt_tiny.pth', WIDE, 1e-4, 2, 16, 'OptimWrapper'),
    'retinanet_pvt-s_fpn_1x_coco': ('PyramidVisionTransformer', dict(num_layers=[3, 4, 6, 3]),
                                    'pvt_small.pth', WIDE, 1e-4, 2, 16, 'OptimWrapper'),
    'retinanet_pvt-m_fpn_1x_coco': ('PyramidVisionTransformer', dict(num_layers=[3, 4, 18, 3]),
                                    'pvt_medium.pth', WIDE, 1e-4, 2, 16, 'OptimWrapper'),
    'retinanet_pvt-l_fpn_1x_coco': ('PyramidVisionTransformer', dict(num_layers=[3, 8, 27, 3]),
                                    'pvt_large.pth', WIDE, 1e-4, 2, 16, 'AmpOptimWrapper'),
    'retinanet_pvtv2-b0_fpn_1x_coco': ('PyramidVisionTransformerV2',
                                       dict(embed_dims=32, num_layers=[2, 2, 2, 2]),
                                       'pvt_v2_b0.pth', [32, 64, 160, 256], 1e-4, 2, 16,
                                       'OptimWrapper'),
    'retinanet_pvtv2-b1_fpn_1x_coco': ('PyramidVisionTransformerV2',
                                       dict(embed_dims=64, num_layers=[2, 2, 2, 2]),
                                       'pvt_v2_b1.pth', WIDE, 1e-4, 2, 16, 'OptimWrapper'),
    'retinanet_pvtv2-b2_fpn_1x_coco': ('PyramidVisionTransformerV2',
                                       dict(embed_dims=64, num_layers=[3, 4, 6, 3]),
                                       'pvt_v2_b2.pth', WIDE, 1e-4, 2, 16, 'OptimWrapper'),
    'retinanet_pvtv2-b3_fpn_1x_coco': ('PyramidVisionTransformerV2',
                                       dict(embed_dims=64, num_layers=[3, 4, 18, 3]),
                                       'pvt_v2_b3.pth', WIDE, 1e-4, 2, 16, 'OptimWrapper'),
    'retinanet_pvtv2-b4_fpn_1x_coco': ('PyramidVisionTransformerV2',
                                       dict(embed_dims=64, num_layers=[3, 8, 27, 3]),
                                       'pvt_v2_b4.pth', WIDE, 1e-4 / 1.4, 1, 8, 'OptimWrapper'),
    'retinanet_pvtv2-b5_fpn_1x_coco': ('PyramidVisionTransformerV2',
                                       dict(embed_dims=64, num_layers=[3, 6, 40, 3],
                                            mlp_ratios=(4, 4, 4, 4)),
                                       'pvt_v2_b5.pth', WIDE, 1e-4 / 1.4, 1, 8, 'OptimWrapper'),
}


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


def build_meta(model_cfg):
    with torch.device('meta'):
        return MODELS.build(model_cfg)


# ------------------------------------------------------------------ config values


@pytest.mark.parametrize('stem', sorted(PVT_CONFIGS))
def test_pvt_configs_hold_mmdetections_values(stem):
    backbone_type, args, ckpt, widths, lr, batch, base_batch, wrapper = PVT_CONFIGS[stem]
    cfg = load(CONFIGS / 'pvt' / f'{stem}.py')
    base = load(RETINANET)
    assert cfg.model.type == 'RetinaNet'
    # _delete_ drops every ResNet key of the base backbone.
    assert cfg.model.backbone == dict(type=backbone_type, **args,
                                      init_cfg=dict(checkpoint=RELEASE + ckpt))
    assert cfg.model.neck == dict(base.model.neck, in_channels=widths)
    for key in ('data_preprocessor', 'bbox_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key] == base.model[key], key
    # _delete_ drops the SGD momentum of the base optimizer.
    assert cfg.optim_wrapper == dict(type=wrapper, optimizer=dict(type='AdamW', lr=lr,
                                                                  weight_decay=0.0001))
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.train_dataloader.num_workers == batch  # 2 and 2, or 1 and 1
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=base_batch)
    assert cfg.train_cfg == base.train_cfg and cfg.param_scheduler == base.param_scheduler
    assert cfg.train_dataloader.dataset == base.train_dataloader.dataset


def test_effb3_config_holds_mmdetections_values():
    cfg = load(EFFB3)
    base = load(RETINANET)
    bn = dict(type='BN', requires_grad=True)
    assert cfg.model.data_preprocessor == dict(
        type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True, pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=(896, 896))])
    assert cfg.model.backbone == dict(
        type='EfficientNet', arch='b3', drop_path_rate=0.2, out_indices=(3, 4, 5),
        frozen_stages=0,
        norm_cfg=dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=EFFB3_CKPT))
    assert cfg.model.neck == dict(
        type='FPN', in_channels=[48, 136, 384], out_channels=256, start_level=0,
        add_extra_convs='on_input', num_outs=5, relu_before_extra_convs=True,
        no_norm_on_lateral=True, norm_cfg=bn)
    assert cfg.model.bbox_head == dict(base.model.bbox_head, type='RetinaSepBNHead', num_ins=5,
                                       norm_cfg=bn)
    train_cfg = base.model.train_cfg
    train_cfg.assigner.neg_iou_thr = 0.5
    assert cfg.model.train_cfg == train_cfg
    assert cfg.model.test_cfg == base.model.test_cfg

    load_image = dict(type='LoadImageFromFile', backend_args=None)
    assert cfg.train_dataloader.dataset.pipeline == [
        load_image, dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomResize', scale=(896, 896), ratio_range=(0.8, 1.2), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(896, 896)), dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')]
    assert cfg.test_dataloader.dataset.pipeline == [
        load_image, dict(type='Resize', scale=(896, 896), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    assert cfg.val_dataloader == cfg.test_dataloader
    assert (cfg.train_dataloader.batch_size, cfg.train_dataloader.num_workers) == (4, 4)
    assert cfg.optim_wrapper == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=0.0001),
        paramwise_cfg=dict(norm_decay_mult=0, bypass_duplicate=True))
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=1000),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.env_cfg == dict(base.env_cfg, cudnn_benchmark=True)
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=32)


@pytest.fixture
def mmdet_lite_scope():
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        yield


def test_effb3_pipelines_give_896_inputs(tmp_path, mmdet_lite_scope):
    cfg = load(EFFB3)
    img_path = str(tmp_path / 'a.png')
    cv2.imwrite(img_path, np.random.RandomState(0).randint(0, 255, (300, 500, 3), np.uint8))
    results = dict(img_path=img_path, img_id=0, instances=[
        dict(bbox=[10, 10, 200, 150], bbox_label=1, ignore_flag=0)])
    test = Compose([TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline])
    packed = test(dict(results))
    # 500 x 300 scaled by min(896 / 500, 896 / 300) = 1.792 to 896 x 538.
    assert packed['inputs'].shape == (3, 538, 896)
    assert packed['data_samples'].scale_factor == pytest.approx((1.792, 1.7933), abs=1e-3)
    train = Compose([TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline])
    for _ in range(3):  # resized to 0.8-1.2 x 896 on the long side, cropped to <= 896
        shape = train(dict(results))['inputs'].shape
        assert shape[0] == 3 and max(shape[1:]) <= 896 and max(shape[1:]) >= int(0.8 * 896)

    # BatchFixedSizePad pads every training batch to 896 x 896 (not at test time).
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    batch = make_batch([make_det_sample([[8, 8, 40, 40]], [1], img_shape=(64, 96))])
    assert preprocessor(batch, True)['inputs'].shape == (1, 3, 896, 896)
    assert preprocessor(batch, False)['inputs'].shape == (1, 3, 64, 96)


# ------------------------------------------------------------------ state_dict keys


def prefixed(prefix: str, keys: dict) -> dict:
    return {f'{prefix}.{k}': v for k, v in keys.items()}


def test_pvt_tiny_retinanet_state_dict_is_mmdetections():
    model = build_meta(load(PVT_T).model)
    assert shapes_of(model) == {**pvt('backbone', embed_dims=64, num_layers=(2, 2, 2, 2)),
                                **retinanet_heads(WIDE)}


def test_pvt_v2_b0_retinanet_state_dict_is_mmdetections():
    model = build_meta(load(PVTV2_B0).model)
    expected = {**pvt('backbone', embed_dims=32, num_layers=(2, 2, 2, 2), v2=True),
                **retinanet_heads([32, 64, 160, 256])}
    assert shapes_of(model) == expected
    # P6 reads C5 ('on_input'): its conv takes the last stage's 256 channels.
    assert expected['neck.fpn_convs.3.conv.weight'] == (256, 256, 3, 3)


def test_effb3_backbone_and_neck_state_dicts_are_mmdetections():
    cfg = load(EFFB3).model
    backbone = build_meta(cfg.backbone)
    assert shapes_of(backbone) == efficientnet('', B3_STEM, B3_STAGES, B3_FINAL, (3, 4, 5))
    assert type(backbone.layers[1][0].depthwise_conv.bn).__name__ == 'SyncBatchNorm'
    neck = build_meta(cfg.neck)
    assert shapes_of(neck) == fpn_bn('', [48, 136, 384])


def test_effb3_retinanet_state_dict_is_mmdetections():
    model = build_meta(load(EFFB3).model)
    assert shapes_of(model) == {
        **efficientnet('backbone', B3_STEM, B3_STAGES, B3_FINAL, (3, 4, 5)),
        **fpn_bn('neck', [48, 136, 384]), **retina_sep_bn_head('bbox_head')}


# ------------------------------------------------------------------ loss and predict


def two_samples():
    return [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 56]], [3, 17], img_shape=(64, 64)),
            make_det_sample([[4, 30, 36, 60]], [5], img_shape=(64, 64))]


def run_loss_and_predict(model):
    samples = two_samples()
    model.train()
    data = model.data_preprocessor(make_batch(samples), True)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert_finite_losses(losses)
    total = sum(sum(v) for v in losses.values())
    total.backward()
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)

    model.eval()
    data = model.data_preprocessor(make_batch(samples), False)
    assert data['inputs'].shape == (2, 3, 64, 64)
    with torch.no_grad():
        preds = model(data['inputs'], data['data_samples'], mode='predict')
    assert len(preds) == 2
    for pred in preds:
        result = pred.pred_instances
        assert result.bboxes.shape == (len(result), 4) and result.scores.shape == (len(result), )
        assert result.labels.dtype == torch.long
        assert torch.all((result.labels >= 0) & (result.labels < 80))


def build_random(model_cfg):
    """The model with random weights: the backbone's init_cfg (a download) is dropped."""
    model_cfg.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    init_weights_quietly(model)
    return model


@pytest.mark.parametrize('path', [PVT_T, PVTV2_B0], ids=lambda p: p.stem)
def test_pvt_retinanets_loss_and_predict(path):
    run_loss_and_predict(build_random(load(path).model))


def test_effb3_backbone_and_neck_loss_and_predict_with_a_retina_head():
    # The config's backbone and BN FPN; RetinaHead stands in for RetinaSepBNHead (same
    # anchors, coder and losses; the head is not part of this change) and the 896 batch
    # padding is left out to keep the image small. SyncBN without a process group
    # normalizes like BN, so this runs on CPU.
    model_cfg = load(EFFB3).model
    model_cfg.data_preprocessor.batch_augments = None
    model_cfg.bbox_head.type = 'RetinaHead'
    for key in ('num_ins', 'norm_cfg'):
        model_cfg.bbox_head.pop(key)
    model = build_random(model_cfg)
    assert shapes_of(model.bbox_head) == retina_head('')
    run_loss_and_predict(model)


def test_tiny_pvt_v2_retinanet_overfits_a_batch():
    model_cfg = load(PVTV2_B0).model
    model_cfg.backbone.update(embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                              drop_path_rate=0., init_cfg=None)
    model_cfg.neck.update(in_channels=[8, 16, 16, 32], out_channels=32)
    model_cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32,
                               stacked_convs=1)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    init_weights_quietly(model)
    model.train()
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2]),
               make_det_sample([[4, 30, 36, 62]], [1])]
    data = model.data_preprocessor(make_batch(samples), True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    history = []
    for _ in range(20):
        total, _ = model.parse_losses(model(**data, mode='loss'))
        assert torch.isfinite(total)
        history.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1] < 0.3 * history[0]
