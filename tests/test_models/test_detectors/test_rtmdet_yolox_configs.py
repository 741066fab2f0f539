"""mmdetection 3.3's RTMDet, RTMDet-Ins and YOLOX COCO configs (configs/rtmdet, configs/yolox)
are drop-in: they hold mmdetection's values, every type they name is registered, the
pipelines, hooks, optimizer and lr schedule build and behave as mmdetection's, and the models
have mmdetection's state_dict keys and shapes.

Expected values are written from mmdetection's config files; expected keys come from
helpers_csp_keys (backbones, necks) and helpers_rtmdet_keys (heads), both written from
mmdetection's module definitions. Models are built without ``init_weights`` (the tiny/s
backbones' init_cfg would download ImageNet weights). Building the L/X models takes seconds:
those cases are marked slow.
"""
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_csp_keys import csp_darknet, cspnext, cspnext_pafpn, yolox_pafpn
from helpers_rtmdet_keys import (num_dynamic_params, rtmdet_ins_sep_bn_head_keys,
                                 rtmdet_sep_bn_head_keys, yolox_head_keys)
from helpers_state_dict import shapes_of
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

from mmdet_lite.registry import HOOKS, MODELS, PARAM_SCHEDULERS, TRANSFORMS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'

# deepen_factor, widen_factor, neck in_channels, neck/head channels, neck num_csp_blocks
RTMDET_SIZES = {
    'tiny': (0.167, 0.375, [96, 192, 384], 96, 1),
    's': (0.33, 0.5, [128, 256, 512], 128, 1),
    'm': (0.67, 0.75, [192, 384, 768], 192, 2),
    'l': (1, 1, [256, 512, 1024], 256, 3),
    'x': (1.33, 1.25, [320, 640, 1280], 320, 4),
}
YOLOX_SIZES = {
    'nano': (0.33, 0.25, [64, 128, 256], 64, 1),
    'tiny': (0.33, 0.375, [96, 192, 384], 96, 1),
    's': (0.33, 0.5, [128, 256, 512], 128, 1),
    'm': (0.67, 0.75, [192, 384, 768], 192, 2),
    'l': (1.0, 1.0, [256, 512, 1024], 256, 3),
    'x': (1.33, 1.25, [320, 640, 1280], 320, 4),
}
LARGE = ('m', 'l', 'x')  # about a second or more to build: slow
PRETRAINED = 'https://download.openmmlab.com/mmdetection/v3.0/rtmdet/cspnext_rsb_pretrain/'


def rtmdet_config(size: str, ins: bool = False) -> Path:
    if ins:
        batch = 16 if size == 'x' else 32
        return CONFIGS / 'rtmdet' / f'rtmdet-ins_{size}_8xb{batch}-300e_coco.py'
    return CONFIGS / 'rtmdet' / f'rtmdet_{size}_8xb32-300e_coco.py'


def yolox_config(size: str) -> Path:
    return CONFIGS / 'yolox' / f'yolox_{size}_8xb8-300e_coco.py'


def sizes(table, large=LARGE):
    return [pytest.param(s, marks=pytest.mark.slow) if s in large else s for s in table]


RTMDET_CASES = [(s, ins) for ins in (False, True) for s in RTMDET_SIZES]
ALL_CONFIGS = ([rtmdet_config(s, ins) for s, ins in RTMDET_CASES]
               + [yolox_config(s) for s in YOLOX_SIZES])


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


# ---------------------------------------------------------------------------------------
# mmdetection's pipelines, written from its config files
# ---------------------------------------------------------------------------------------
LOAD_IMAGE = dict(type='LoadImageFromFile', backend_args=None)
PAD_640 = dict(type='Pad', size=(640, 640), pad_val=dict(img=(114, 114, 114)))
PAD_SQUARE = dict(type='Pad', pad_to_square=True, pad_val=dict(img=(114.0, 114.0, 114.0)))
HSV_FLIP = [dict(type='YOLOXHSVRandomAug'), dict(type='RandomFlip', prob=0.5)]
PACK = dict(type='PackDetInputs')
PACK_TEST = dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))


def load_annotations(ins: bool) -> dict:
    if ins:  # masks stay polygons (poly2mask=False)
        return dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False)
    return dict(type='LoadAnnotations', with_bbox=True)


def rtmdet_stage1(size: str, ins: bool) -> list:
    tiny = size == 'tiny'
    mosaic = dict(type='CachedMosaic', img_scale=(640, 640), pad_val=114.0)
    mixup = dict(type='CachedMixUp', img_scale=(640, 640), ratio_range=(1.0, 1.0),
                 max_cached_images=20, pad_val=(114, 114, 114))
    if tiny:
        mosaic.update(max_cached_images=20, random_pop=False)
        mixup.update(max_cached_images=10, random_pop=False, prob=0.5)
    crop = dict(type='RandomCrop', crop_size=(640, 640))
    if ins and not tiny:  # mmdetection's RTMDet-Ins-Tiny keeps RandomCrop's defaults here
        crop.update(recompute_bbox=True, allow_negative_crop=True)
    low = 0.5 if size in ('tiny', 's') else 0.1
    pipeline = [LOAD_IMAGE, load_annotations(ins), mosaic,
                dict(type='RandomResize', scale=(1280, 1280), ratio_range=(low, 2.0),
                     keep_ratio=True),
                crop, *HSV_FLIP, PAD_640, mixup]
    if ins:
        pipeline.append(dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)))
    return pipeline + [PACK]


def rtmdet_stage2(size: str, ins: bool) -> list:
    crop = dict(type='RandomCrop', crop_size=(640, 640))
    if ins:
        crop.update(recompute_bbox=True, allow_negative_crop=True)
    low = 0.5 if size in ('tiny', 's') else 0.1
    pipeline = [LOAD_IMAGE, load_annotations(ins),
                dict(type='RandomResize', scale=(640, 640), ratio_range=(low, 2.0),
                     keep_ratio=True),
                crop]
    if ins:  # filtered right after the crop in stage 2
        pipeline.append(dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1)))
    return pipeline + [*HSV_FLIP, PAD_640, PACK]


RTMDET_TEST = [LOAD_IMAGE, dict(type='Resize', scale=(640, 640), keep_ratio=True), PAD_640,
               dict(type='LoadAnnotations', with_bbox=True), PACK_TEST]


def yolox_train(size: str) -> list:
    small = size in ('tiny', 'nano')  # no MixUp, milder affine scaling
    pipeline = [dict(type='Mosaic', img_scale=(640, 640), pad_val=114.0),
                dict(type='RandomAffine', scaling_ratio_range=(0.5, 1.5) if small else (0.1, 2),
                     border=(-320, -320))]
    if not small:
        pipeline.append(dict(type='MixUp', img_scale=(640, 640), ratio_range=(0.8, 1.6),
                             pad_val=114.0))
    return pipeline + [*HSV_FLIP, dict(type='Resize', scale=(640, 640), keep_ratio=True),
                       PAD_SQUARE,
                       dict(type='FilterAnnotations', min_gt_bbox_wh=(1, 1), keep_empty=False),
                       PACK]


def yolox_test(size: str) -> list:
    scale = (416, 416) if size in ('tiny', 'nano') else (640, 640)
    return [LOAD_IMAGE, dict(type='Resize', scale=scale, keep_ratio=True), PAD_SQUARE,
            dict(type='LoadAnnotations', with_bbox=True), PACK_TEST]


# ---------------------------------------------------------------------------------------
# config values
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('size, ins', RTMDET_CASES)
def test_rtmdet_model_settings_are_mmdetections(size, ins):
    cfg = load(rtmdet_config(size, ins))
    deepen, widen, neck_in, channels, blocks = RTMDET_SIZES[size]
    model = cfg.model
    assert model.type == 'RTMDet'
    assert model.data_preprocessor == dict(
        type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395],
        bgr_to_rgb=False, batch_augments=None)
    silu = dict(type='SiLU', inplace=True)
    backbone = dict(type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=deepen,
                    widen_factor=widen, channel_attention=True, norm_cfg=dict(type='SyncBN'),
                    act_cfg=silu)
    if size in ('tiny', 's'):  # ImageNet-pretrained CSPNeXt
        backbone['init_cfg'] = dict(type='Pretrained', prefix='backbone.',
                                    checkpoint=PRETRAINED + f'cspnext-{size}_imagenet_600e.pth')
    assert model.backbone == backbone
    assert model.neck == dict(type='CSPNeXtPAFPN', in_channels=neck_in, out_channels=channels,
                              num_csp_blocks=blocks, expand_ratio=0.5,
                              norm_cfg=dict(type='SyncBN'), act_cfg=silu)
    head = dict(num_classes=80, in_channels=channels, feat_channels=channels, stacked_convs=2,
                anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
                bbox_coder=dict(type='DistancePointBBoxCoder'),
                loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0,
                              loss_weight=1.0),
                loss_bbox=dict(type='GIoULoss', loss_weight=2.0), share_conv=True,
                pred_kernel_size=1, act_cfg=silu)
    if ins:  # _delete_: none of RTMDetSepBNHead's keys are left over
        head.update(type='RTMDetInsSepBNHead',
                    norm_cfg=dict(type='SyncBN', requires_grad=True),
                    loss_mask=dict(type='DiceLoss', loss_weight=2.0, eps=5e-6,
                                   reduction='mean'))
    else:
        head.update(type='RTMDetSepBNHead', with_objectness=False,
                    exp_on_reg=size not in ('tiny', 's'), norm_cfg=dict(type='SyncBN'))
    assert model.bbox_head == head
    assert model.train_cfg == dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13),
                                   allowed_border=-1, pos_weight=-1, debug=False)
    if ins:
        assert model.test_cfg == dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                                      nms=dict(type='nms', iou_threshold=0.6), max_per_img=100,
                                      mask_thr_binary=0.5)
    else:
        assert model.test_cfg == dict(nms_pre=30000, min_bbox_size=0, score_thr=0.001,
                                      nms=dict(type='nms', iou_threshold=0.65),
                                      max_per_img=300)


@pytest.mark.parametrize('size, ins', RTMDET_CASES)
def test_rtmdet_training_settings_are_mmdetections(size, ins):
    cfg = load(rtmdet_config(size, ins))
    base_lr = 0.002 if (ins and size == 'x') else 0.004
    assert cfg.default_scope == 'mmdet_lite'
    assert (cfg.max_epochs, cfg.stage2_num_epochs, cfg.base_lr, cfg.interval) == (
        300, 20, base_lr, 10)
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=10,
                                 dynamic_intervals=[(280, 1)])
    # _delete_ dropped the base SGD's momentum
    assert cfg.optim_wrapper == dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=base_lr, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True))
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=1000),
        dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=150, end=300, T_max=150,
             by_epoch=True, convert_to_iter_based=True)]
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.default_hooks.checkpoint == dict(type='CheckpointHook', interval=10,
                                                max_keep_ckpts=3)
    assert cfg.custom_hooks == [
        dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
             priority=49),
        dict(type='PipelineSwitchHook', switch_epoch=280,
             switch_pipeline=rtmdet_stage2(size, ins))]

    train = cfg.train_dataloader
    # batch_size 32 also for RTMDet-Ins-X, whose name says 8xb16 (as in mmdetection)
    assert (train.batch_size, train.num_workers, train.batch_sampler, train.pin_memory) == (
        32, 10, None, True)
    assert train.dataset.pipeline == rtmdet_stage1(size, ins)
    assert train.dataset.type == 'CocoDataset'
    assert train.dataset.filter_cfg == dict(filter_empty_gt=True, min_size=32)
    assert (cfg.val_dataloader.batch_size, cfg.val_dataloader.num_workers) == (5, 10)
    assert cfg.val_dataloader.dataset.pipeline == RTMDET_TEST
    assert cfg.test_dataloader == cfg.val_dataloader
    metric = ['bbox', 'segm'] if ins else 'bbox'
    assert cfg.val_evaluator == dict(
        type='CocoMetric', ann_file='data/coco/annotations/instances_val2017.json',
        metric=metric, format_only=False, backend_args=None, proposal_nums=(100, 1, 10))
    assert cfg.test_evaluator == cfg.val_evaluator


@pytest.mark.parametrize('size', YOLOX_SIZES)
def test_yolox_model_settings_are_mmdetections(size):
    cfg = load(yolox_config(size))
    deepen, widen, neck_in, channels, blocks = YOLOX_SIZES[size]
    depthwise = size == 'nano'
    norm = dict(type='BN', momentum=0.03, eps=0.001)
    model = cfg.model
    assert model.type == 'YOLOX'
    low, high = (320, 640) if size in ('tiny', 'nano') else (480, 800)
    assert model.data_preprocessor == dict(
        type='DetDataPreprocessor', pad_size_divisor=32,
        batch_augments=[dict(type='BatchSyncRandomResize', random_size_range=(low, high),
                             size_divisor=32, interval=10)])
    assert model.backbone == dict(type='CSPDarknet', deepen_factor=deepen, widen_factor=widen,
                                  out_indices=(2, 3, 4), use_depthwise=depthwise,
                                  spp_kernal_sizes=(5, 9, 13), norm_cfg=norm,
                                  act_cfg=dict(type='Swish'))
    assert model.neck == dict(type='YOLOXPAFPN', in_channels=neck_in, out_channels=channels,
                              num_csp_blocks=blocks, use_depthwise=depthwise,
                              upsample_cfg=dict(scale_factor=2, mode='nearest'), norm_cfg=norm,
                              act_cfg=dict(type='Swish'))
    assert model.bbox_head == dict(
        type='YOLOXHead', num_classes=80, in_channels=channels, feat_channels=channels,
        stacked_convs=2, strides=(8, 16, 32), use_depthwise=depthwise, norm_cfg=norm,
        act_cfg=dict(type='Swish'),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum',
                      loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', mode='square', eps=1e-16, reduction='sum',
                       loss_weight=5.0),
        loss_obj=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum',
                      loss_weight=1.0),
        loss_l1=dict(type='L1Loss', reduction='sum', loss_weight=1.0))
    assert model.train_cfg == dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5))
    assert model.test_cfg == dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65))


@pytest.mark.parametrize('size', YOLOX_SIZES)
def test_yolox_training_settings_are_mmdetections(size):
    cfg = load(yolox_config(size))
    assert cfg.default_scope == 'mmdet_lite'
    assert (cfg.max_epochs, cfg.num_last_epochs, cfg.base_lr, cfg.img_scale) == (
        300, 15, 0.01, (640, 640))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=300, val_interval=10)
    assert cfg.optim_wrapper == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True),
        paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))
    assert cfg.param_scheduler == [
        dict(type='mmdet.QuadraticWarmupLR', by_epoch=True, begin=0, end=5,
             convert_to_iter_based=True),
        dict(type='CosineAnnealingLR', eta_min=0.01 * 0.05, begin=5, T_max=285, end=285,
             by_epoch=True, convert_to_iter_based=True),
        dict(type='ConstantLR', by_epoch=True, factor=1, begin=285, end=300)]
    # enable comes from schedule_1x.py
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=64)
    assert cfg.default_hooks.checkpoint == dict(type='CheckpointHook', interval=10,
                                                max_keep_ckpts=3)
    assert cfg.custom_hooks == [
        dict(type='YOLOXModeSwitchHook', num_last_epochs=15, priority=48),
        dict(type='SyncNormHook', priority=48),
        dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0001, update_buffers=True,
             priority=49)]

    train = cfg.train_dataloader
    assert (train.batch_size, train.num_workers, train.persistent_workers) == (8, 4, True)
    assert train.sampler == dict(type='DefaultSampler', shuffle=True)
    assert 'batch_sampler' not in train  # no AspectRatioBatchSampler (no coco_detection base)
    assert train.dataset == dict(
        type='MultiImageMixDataset',
        dataset=dict(type='CocoDataset', data_root='data/coco/',
                     ann_file='annotations/instances_train2017.json',
                     data_prefix=dict(img='train2017/'),
                     pipeline=[LOAD_IMAGE, dict(type='LoadAnnotations', with_bbox=True)],
                     filter_cfg=dict(filter_empty_gt=False, min_size=32), backend_args=None),
        pipeline=yolox_train(size))
    val = cfg.val_dataloader
    assert (val.batch_size, val.num_workers, val.persistent_workers, val.drop_last) == (
        8, 4, True, False)
    assert val.sampler == dict(type='DefaultSampler', shuffle=False)
    assert val.dataset == dict(type='CocoDataset', data_root='data/coco/',
                               ann_file='annotations/instances_val2017.json',
                               data_prefix=dict(img='val2017/'), test_mode=True,
                               pipeline=yolox_test(size), backend_args=None)
    assert cfg.test_dataloader == val
    assert cfg.val_evaluator == dict(
        type='CocoMetric', ann_file='data/coco/annotations/instances_val2017.json',
        metric='bbox', backend_args=None)


@pytest.mark.parametrize('path, iou, pad', [
    (rtmdet_config('tiny'), 0.6, PAD_640),
    (yolox_config('tiny'), 0.65, PAD_SQUARE),
])
def test_tta_settings_are_mmdetections(path, iou, pad):
    cfg = load(path)
    assert cfg.tta_model == dict(type='DetTTAModel',
                                 tta_cfg=dict(nms=dict(type='nms', iou_threshold=iou),
                                              max_per_img=100))
    if pad is PAD_640:  # RTMDet pads every scale to the largest one
        pad = dict(PAD_640, size=(960, 960))
    assert cfg.tta_pipeline == [
        LOAD_IMAGE,
        dict(type='TestTimeAug', transforms=[
            [dict(type='Resize', scale=s, keep_ratio=True)
             for s in [(640, 640), (320, 320), (960, 960)]],
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [pad],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [dict(PACK_TEST, meta_keys=PACK_TEST['meta_keys'] + ('flip', 'flip_direction'))],
        ])]


# ---------------------------------------------------------------------------------------
# registered types: pipelines, hooks, optimizer, schedulers
# ---------------------------------------------------------------------------------------
@pytest.fixture
def mmdet_lite_scope():
    """Build as a Runner with ``default_scope='mmdet_lite'`` does (mmcv's TestTimeAug builds
    its branches through the current scope)."""
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        yield


def build_pipeline(cfgs: list) -> Compose:
    pipeline = Compose([TRANSFORMS.build(c) for c in cfgs])
    for cfg, transform in zip(cfgs, pipeline.transforms):
        # the class registered under the config's name, and it is mmdet_lite's
        assert type(transform) is TRANSFORMS.get(cfg['type']), cfg['type']
        if cfg['type'] != 'TestTimeAug':  # mmcv's wrapper
            assert type(transform).__module__.startswith('mmdet_lite.'), cfg['type']
    return pipeline


def pipelines_of(cfg: Config) -> list:
    if cfg.model.type == 'YOLOX':
        train = cfg.train_dataloader.dataset
        return [train.dataset.pipeline, train.pipeline, cfg.test_dataloader.dataset.pipeline]
    switch = cfg.custom_hooks[1].switch_pipeline
    return [cfg.train_dataloader.dataset.pipeline, switch, cfg.test_dataloader.dataset.pipeline]


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: p.stem)
def test_every_pipeline_builds_from_the_registry(path, mmdet_lite_scope):
    cfg = load(path)
    for pipeline in pipelines_of(cfg) + [cfg.tta_pipeline]:
        build_pipeline(pipeline)


def test_built_transforms_keep_the_config_arguments(mmdet_lite_scope):
    tiny = build_pipeline(rtmdet_stage1('tiny', ins=True)).transforms
    mosaic, crop, mixup, filters = tiny[2], tiny[4], tiny[8], tiny[9]
    assert (mosaic.max_cached_images, mosaic.random_pop, mosaic.img_scale) == (
        20, False, (640, 640))
    assert (mixup.max_cached_images, mixup.random_pop, mixup.prob) == (10, False, 0.5)
    assert (crop.recompute_bbox, crop.allow_negative_crop) == (False, False)
    assert filters.min_gt_bbox_wh == (1, 1) and filters.keep_empty is True
    crop = build_pipeline(rtmdet_stage2('s', ins=True)).transforms[3]
    assert (crop.recompute_bbox, crop.allow_negative_crop) == (True, True)
    yolox = build_pipeline(yolox_train('s')).transforms
    assert yolox[1].scaling_ratio_range == (0.1, 2) and yolox[1].border == (-320, -320)
    assert yolox[6].pad_to_square and yolox[7].keep_empty is False


def write_image(path: Path, height: int, width: int) -> str:
    img = np.random.RandomState(0).randint(0, 255, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return str(path)


def annotated(img_path: str, with_mask: bool = False) -> dict:
    """A loader input with two boxes (and, for masks, their outlines as polygons)."""
    instances = []
    for x1, y1, x2, y2 in ([10, 10, 60, 40], [30, 5, 90, 45]):
        inst = dict(bbox=[x1, y1, x2, y2], bbox_label=1, ignore_flag=0)
        if with_mask:
            inst['mask'] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
        instances.append(inst)
    return dict(img_path=img_path, img_id=0, instances=instances)


@pytest.mark.parametrize('ins', [False, True])
def test_rtmdet_pipelines_give_640_square_inputs(tmp_path, ins, mmdet_lite_scope):
    img_path = write_image(tmp_path / 'a.png', 50, 100)
    stage1 = build_pipeline(rtmdet_stage1('tiny', ins))
    for _ in range(5):  # the caches fill up: mosaic from the 4th image on
        packed = stage1(annotated(img_path, ins))
        assert packed['inputs'].shape == (3, 640, 640)
    packed = build_pipeline(rtmdet_stage2('tiny', ins))(annotated(img_path, ins))
    assert packed['inputs'].shape == (3, 640, 640)
    # test: 100 x 50 scaled by 6.4 to 640 x 320, padded at the bottom to 640 x 640 (Pad sets
    # img_shape to the padded shape, as mmcv's)
    packed = build_pipeline(RTMDET_TEST)(annotated(img_path))
    sample = packed['data_samples']
    assert packed['inputs'].shape == (3, 640, 640)
    assert sample.img_shape == (640, 640) and sample.ori_shape == (50, 100)
    assert sample.scale_factor == pytest.approx((6.4, 6.4))
    assert (packed['inputs'][:, 320:] == 114).all() and (packed['inputs'][:, 319] != 114).any()


@pytest.mark.parametrize('size, side', [('s', 640), ('tiny', 416)])
def test_yolox_test_pipeline_pads_to_a_square(tmp_path, size, side, mmdet_lite_scope):
    img_path = write_image(tmp_path / 'a.png', 50, 100)
    packed = build_pipeline(yolox_test(size))(annotated(img_path))
    assert packed['inputs'].shape == (3, side, side)
    assert packed['data_samples'].scale_factor == pytest.approx((side / 100, side / 100))
    assert (packed['inputs'][:, side // 2:] == 114).all()


@pytest.mark.parametrize('path, pads', [
    (rtmdet_config('tiny'), [(960, 960)] * 3),
    (yolox_config('tiny'), [(640, 640), (320, 320), (960, 960)]),
])
def test_tta_pipeline_gives_three_scales_flipped_and_not(tmp_path, path, pads,
                                                         mmdet_lite_scope):
    img_path = write_image(tmp_path / 'a.png', 64, 64)
    out = build_pipeline(load(path).tta_pipeline)(annotated(img_path))
    # TestTimeAug: every combination, the first list varying slowest
    shapes = [tuple(x.shape[1:]) for x in out['inputs']]
    assert shapes == [pad for pad in pads for _ in range(2)]
    scale_factors = [s.scale_factor for s in out['data_samples']]
    assert scale_factors == [(s / 64, s / 64) for s in (640, 320, 960) for _ in range(2)]
    assert [s.flip for s in out['data_samples']] == [True, False] * 3


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: p.stem)
def test_custom_hooks_build_from_the_registry(path, mmdet_lite_scope):
    cfg = load(path)
    hooks = {}
    for hook_cfg in cfg.custom_hooks:
        hook_cfg = hook_cfg.copy()
        priority = hook_cfg.pop('priority', None)  # taken by Runner.register_hook
        hook = HOOKS.build(hook_cfg)
        hooks[type(hook).__name__] = (hook, priority)
    ema, priority = hooks['EMAHook']
    assert type(ema) is EMAHook and priority == 49
    momentum = 0.0001 if cfg.model.type == 'YOLOX' else 0.0002
    assert ema.ema_cfg == dict(type='ExpMomentumEMA', momentum=momentum, update_buffers=True)
    averaged = MODELS.build(ema.ema_cfg, default_args=dict(model=nn.Linear(2, 2)))
    assert type(averaged).__name__ == 'ExpMomentumEMA'
    assert (averaged.momentum, averaged.gamma, averaged.update_buffers) == (
        momentum, 2000, True)
    if cfg.model.type == 'YOLOX':
        assert set(hooks) == {'EMAHook', 'YOLOXModeSwitchHook', 'SyncNormHook'}
        switch, priority = hooks['YOLOXModeSwitchHook']
        assert (switch.num_last_epochs, priority) == (15, 48)
        assert tuple(switch.skip_type_keys) == ('Mosaic', 'RandomAffine', 'MixUp')
        assert hooks['SyncNormHook'][1] == 48
    else:
        assert set(hooks) == {'EMAHook', 'PipelineSwitchHook'}
        switch, priority = hooks['PipelineSwitchHook']
        assert switch.switch_epoch == 280 and priority is None
        build_pipeline(switch.switch_pipeline)


def conv_bn_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4))


@pytest.mark.parametrize('path, optimizer, decay', [
    (rtmdet_config('tiny'), torch.optim.AdamW, 0.05),
    (yolox_config('s'), torch.optim.SGD, 5e-4),
])
def test_optimizer_skips_decay_on_norms_and_biases(path, optimizer, decay, mmdet_lite_scope):
    wrapper = build_optim_wrapper(conv_bn_model(), load(path).optim_wrapper)
    assert type(wrapper.optimizer) is optimizer
    # one group per parameter: conv weight, conv bias, bn weight, bn bias
    assert [g['weight_decay'] for g in wrapper.optimizer.param_groups] == [decay, 0, 0, 0]
    if optimizer is torch.optim.SGD:
        assert all(g['nesterov'] and g['momentum'] == 0.9
                   for g in wrapper.optimizer.param_groups)


def lr_curve(cfg: Config, epoch_length: int, num_epochs: int) -> list:
    """The lr of every training iteration, stepping the config's schedulers as
    ParamSchedulerHook does: iteration-based ones (also those converted from epochs) after
    each iteration, epoch-based ones after each epoch."""
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [PARAM_SCHEDULERS.build(s, default_args=dict(optimizer=optimizer,
                                                              epoch_length=epoch_length))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(num_epochs):
        for _ in range(epoch_length):
            lrs.append(optimizer.param_groups[0]['lr'])
            optimizer.step()
            for scheduler in schedulers:
                if not scheduler.by_epoch:
                    scheduler.step()
        for scheduler in schedulers:
            if scheduler.by_epoch:
                scheduler.step()
    return lrs


@pytest.mark.parametrize('path, base_lr', [(rtmdet_config('tiny'), 0.004),
                                           (rtmdet_config('x', ins=True), 0.002)])
def test_rtmdet_lr_warms_up_stays_flat_then_cosine_to_five_percent(path, base_lr,
                                                                   mmdet_lite_scope):
    lrs = lr_curve(load(path), epoch_length=10, num_epochs=300)
    eta_min = base_lr * 0.05
    assert lrs[0] == pytest.approx(base_lr * 1e-5)
    # mmengine's LinearLR reaches the full lr at its last iteration (999, not 1000)
    assert lrs[500] == pytest.approx(base_lr * (1e-5 + (1 - 1e-5) * 500 / 999))
    assert lrs[999] == lrs[1499] == pytest.approx(base_lr)  # flat up to epoch 150
    for epoch in (150, 200, 225, 299):  # cosine over epochs 150-300, per iteration
        t = (epoch * 10 - 1500) / 1500
        expected = eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t)) / 2
        assert lrs[epoch * 10] == pytest.approx(expected, rel=1e-6)
    assert lrs[-1] == pytest.approx(eta_min, rel=1e-3)


def test_yolox_lr_quadratic_warm_up_cosine_then_constant(mmdet_lite_scope):
    lrs = lr_curve(load(yolox_config('s')), epoch_length=10, num_epochs=300)
    base_lr, eta_min = 0.01, 0.0005
    for it in (0, 9, 24, 49):  # quadratic over 5 epochs = 50 iterations
        assert lrs[it] == pytest.approx(base_lr * (it + 1)**2 / 50**2)
    # cosine from epoch 5 with a half-period of 285 epochs, cut at epoch 285 (280 epochs in)
    for epoch in (5, 100, 284):
        t = (epoch - 5) / 285
        expected = eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t)) / 2
        assert lrs[epoch * 10] == pytest.approx(expected, rel=1e-6)
    # the cosine's last step is iteration 2849 (end is exclusive); ConstantLR (factor 1,
    # stepped per epoch) keeps that lr to the end: well above eta_min, as in mmdetection
    last = eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * 2799 / 2850)) / 2
    assert lrs[2849] == lrs[2850] == lrs[-1] == pytest.approx(last, rel=1e-6)


@pytest.mark.parametrize('path', [rtmdet_config('tiny'), yolox_config('tiny')],
                         ids=lambda p: p.stem)
def test_tta_model_builds(path, mmdet_lite_scope):
    tta_cfg = load(path).tta_model
    detector = nn.Linear(1, 1)  # stands in for the detector the TTA model wraps
    detector.test_step = lambda data: data  # BaseTTAModel asserts the wrapped model has one
    tta = MODELS.build(dict(tta_cfg, module=detector))
    assert type(tta).__name__ == 'DetTTAModel'
    assert tta.module is detector and tta.tta_cfg == tta_cfg.tta_cfg


# ---------------------------------------------------------------------------------------
# models: mmdetection's state_dict keys and shapes
# ---------------------------------------------------------------------------------------
def build_model(path: Path) -> nn.Module:
    register_all_modules()
    return MODELS.build(load(path).model)  # no init_weights: nothing is downloaded


def rtmdet_expected_keys(size: str, ins: bool) -> dict:
    deepen, widen, neck_in, channels, blocks = RTMDET_SIZES[size]
    keys = cspnext('backbone', deepen_factor=deepen, widen_factor=widen, expand_ratio=0.5,
                   channel_attention=True)
    keys.update(cspnext_pafpn('neck', neck_in, channels, num_csp_blocks=blocks))
    head = rtmdet_ins_sep_bn_head_keys if ins else rtmdet_sep_bn_head_keys
    keys.update(head(channels, channels))
    return keys


def yolox_expected_keys(size: str) -> dict:
    deepen, widen, neck_in, channels, blocks = YOLOX_SIZES[size]
    depthwise = size == 'nano'
    keys = csp_darknet('backbone', deepen_factor=deepen, widen_factor=widen,
                       use_depthwise=depthwise)
    keys.update(yolox_pafpn('neck', neck_in, channels, num_csp_blocks=blocks,
                            use_depthwise=depthwise))
    keys.update(yolox_head_keys(channels, channels, use_depthwise=depthwise))
    return keys


def test_head_key_helpers_match_hand_counts():
    # per level: 2 towers x 2 ConvModules x (conv + 5 BN entries) + 2 predictors x 2
    assert len(rtmdet_sep_bn_head_keys(96, 96)) == 3 * (2 * 2 * 6 + 4)
    # the dynamic convs: (8 + 2) * 8 + 8 * 8 + 8 * 1 weights, 8 + 8 + 1 biases
    assert num_dynamic_params() == 169
    ins = rtmdet_ins_sep_bn_head_keys(96, 96)
    # per level: cls, reg (= cls) and kernel towers, 3 predictors; mask head: fusion conv,
    # 4 ConvModules, projection
    assert len(ins) == 3 * (3 * 2 * 6 + 3 * 2) + (2 + 4 * 6 + 2)
    assert ins['bbox_head.rtm_kernel.2.weight'] == (169, 96, 1, 1)
    assert ins['bbox_head.mask_head.fusion_conv.weight'] == (96, 288, 1, 1)
    assert ins['bbox_head.mask_head.projection.weight'] == (8, 96, 1, 1)
    # per level: 2 towers x 2 ConvModules x 6 + 3 predictors x 2; depthwise doubles the convs
    assert len(yolox_head_keys(96, 96)) == 3 * (2 * 2 * 6 + 6)
    assert len(yolox_head_keys(64, 64, use_depthwise=True)) == 3 * (2 * 2 * 12 + 6)


@pytest.mark.parametrize('ins', [False, True], ids=['det', 'ins'])
@pytest.mark.parametrize('size', sizes(RTMDET_SIZES))
def test_rtmdet_state_dict_is_mmdetections(size, ins):
    model = build_model(rtmdet_config(size, ins))
    assert type(model).__name__ == 'RTMDet'
    assert shapes_of(model) == rtmdet_expected_keys(size, ins)
    head = model.bbox_head
    for n in (1, 2):  # share_conv: one conv module per tower position, a BN per level
        assert head.cls_convs[n][0].conv is head.cls_convs[0][0].conv
        assert head.cls_convs[n][1].bn is not head.cls_convs[0][1].bn
        if ins:  # mmdetection's RTMDetInsSepBNHead: reg_convs are the cls_convs
            assert head.reg_convs[n] is head.cls_convs[n]
        else:
            assert head.reg_convs[n][1].conv is head.reg_convs[0][1].conv
    # a checkpoint with exactly these keys loads strictly
    model.load_state_dict({k: torch.zeros(v.shape, dtype=v.dtype)
                           for k, v in model.state_dict().items()}, strict=True)


@pytest.mark.parametrize('size', sizes(YOLOX_SIZES))
def test_yolox_state_dict_is_mmdetections(size):
    model = build_model(yolox_config(size))
    assert type(model).__name__ == 'YOLOX'
    assert shapes_of(model) == yolox_expected_keys(size)
    resize = model.data_preprocessor.batch_augments[0]
    assert type(resize).__name__ == 'BatchSyncRandomResize'
    low, high = (320, 640) if size in ('tiny', 'nano') else (480, 800)
    # kept in units of size_divisor, as mmdetection's
    assert (resize._random_size_range, resize._size_divisor, resize._interval) == (
        (low // 32, high // 32), 32, 10)


@pytest.mark.parametrize('path, outputs', [
    (rtmdet_config('tiny'), {'cls': 80, 'bbox': 4}),
    (rtmdet_config('tiny', ins=True), {'cls': 80, 'bbox': 4, 'kernel': 169}),
    (yolox_config('nano'), {'cls': 80, 'bbox': 4, 'obj': 1}),
], ids=['rtmdet', 'rtmdet-ins', 'yolox'])
def test_tiny_models_run_in_tensor_mode(path, outputs):
    model = build_model(path).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64), mode='tensor')
    per_level = out[:len(outputs)]
    for maps, channels in zip(per_level, outputs.values()):
        assert [tuple(m.shape) for m in maps] == [(1, channels, s, s) for s in (8, 4, 2)]
    if 'kernel' in outputs:  # mask prototypes at the stride-8 resolution
        assert tuple(out[3].shape) == (1, 8, 8, 8)
