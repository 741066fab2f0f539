"""mmdetection 3.3's shared data/schedule bases (configs/common) and the configs built on them.

Expected values are written from mmdetection 3.3's files: configs/common/*.py, the model
bases _base_/models/{faster-rcnn,mask-rcnn,retinanet}_r50_fpn.py and the configs that use
the common bases. The one deliberate difference is the one of this repository's model
bases: their ResNet-50 has no ``init_cfg`` (mmdetection's is a download). The runtime keys
come from our _base_/default_runtime.py (its values are tested with the runtime).

A child file's expectation is written the way mmengine merges it: :func:`merged` lays the
child's values over its base's (dicts key by key, anything else replaced, ``_delete_=True``
replacing the whole dict), so each expectation reads like the mmdetection file it stands for.
Each config is compared key by key over its whole merged content, and its pipelines, samplers,
loops, schedulers, optimizer wrappers and model parts are looked up in the registries; the
common files' training pipelines also run on a generated image.
"""
import copy
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmdet_lite.datasets import MultiImageMixDataset, ShapesDataset
from mmdet_lite.registry import (DATA_SAMPLERS, DATASETS, HOOKS, LOOPS, METRICS, MODELS,
                                 OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS, TASK_UTILS,
                                 TRANSFORMS, WEIGHT_INITIALIZERS)
from mmdet_lite.structures.mask import PolygonMasks
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[1] / 'configs'

register_all_modules()


def load(relative: str) -> Config:
    return Config.fromfile(str(CONFIGS / relative))


def merged(base, override):
    """``override`` laid over ``base`` as mmengine merges a child config into its base."""
    if not isinstance(override, dict) or not isinstance(base, dict):
        return copy.deepcopy(override)
    override = dict(override)
    if override.pop('_delete_', False):
        return copy.deepcopy(override)
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merged(base[key], value) if key in base else copy.deepcopy(value)
    return out


RUNTIME = load('_base_/default_runtime.py').to_dict()

# ---------------------------------------------------------------- the common files' values

SIZE_1024 = (1024, 1024)
LOAD = dict(type='LoadImageFromFile', backend_args=None)
LOAD_PILLOW = dict(type='LoadImageFromFile', backend_args=None, imdecode_backend='pillow')
BOXES = dict(type='LoadAnnotations', with_bbox=True)
MASKS = dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
POLYGONS = dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False)
FLIP = dict(type='RandomFlip', prob=0.5)
PACK = dict(type='PackDetInputs')
PACK_TEST = dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
TEST_RESIZE = dict(type='Resize', scale=(1333, 800), keep_ratio=True)
D2_SCALES = [(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)]
JITTER_CROP = [
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=SIZE_1024,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    FLIP,
]
SGD_002 = dict(type='OptimWrapper',
               optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
SGD_01 = dict(type='OptimWrapper',
              optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.00004))
ITER_HOOKS = dict(default_hooks=dict(checkpoint=dict(by_epoch=False, interval=10000)),
                  log_processor=dict(by_epoch=False))
LOOPS_VAL_TEST = dict(val_cfg=dict(type='ValLoop'), test_cfg=dict(type='TestLoop'))


def coco(split: str, pipeline: list) -> dict:
    """A CocoDataset entry as every common file writes it."""
    dataset = dict(type='CocoDataset', data_root='data/coco/',
                   ann_file=f'annotations/instances_{split}2017.json',
                   data_prefix=dict(img=f'{split}2017/'), pipeline=pipeline, backend_args=None)
    if split == 'train':
        dataset['filter_cfg'] = dict(filter_empty_gt=True, min_size=32)
    else:
        dataset['test_mode'] = True
    return dataset


def data(train_pipeline: list, test_pipeline: list, train_loader: dict, val_loader: dict,
         metric, **evaluator) -> dict:
    """The data keys of a common file: pipelines, dataloaders and evaluators."""
    val_dataloader = dict(num_workers=2, persistent_workers=True, drop_last=False,
                          sampler=dict(type='DefaultSampler', shuffle=False),
                          dataset=coco('val', test_pipeline), **val_loader)
    val_evaluator = dict(type='CocoMetric',
                         ann_file='data/coco/annotations/instances_val2017.json',
                         metric=metric, backend_args=None, **evaluator)
    return dict(
        dataset_type='CocoDataset', data_root='data/coco/', backend_args=None,
        train_pipeline=train_pipeline, test_pipeline=test_pipeline,
        train_dataloader=dict(batch_size=2, num_workers=2, persistent_workers=True,
                              **train_loader),
        val_dataloader=val_dataloader, test_dataloader=val_dataloader,
        val_evaluator=val_evaluator, test_evaluator=val_evaluator)


def lsj_100e(annotations: dict, metric) -> dict:
    """common/lsj-100e_coco-{detection,instance}.py."""
    train_pipeline = [LOAD, annotations,
                      dict(type='RandomResize', scale=SIZE_1024, ratio_range=(0.1, 2.0),
                           keep_ratio=True),
                      *JITTER_CROP, PACK]
    train_loader = dict(
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(type='RepeatDataset', times=4, dataset=coco('train', train_pipeline)))
    return dict(
        **data(train_pipeline, [LOAD, TEST_RESIZE, annotations, PACK_TEST], train_loader,
               dict(batch_size=1), metric, format_only=False),
        image_size=SIZE_1024, max_epochs=25,
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=25, val_interval=5),
        **LOOPS_VAL_TEST, optim_wrapper=SGD_01,
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.067, by_epoch=False, begin=0, end=500),
            dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24],
                 gamma=0.1)],
        default_hooks=dict(checkpoint=dict(max_keep_ckpts=2)),
        auto_scale_lr=dict(base_batch_size=64))


# common/lsj-200e_coco-*.py: 8 repeats and a 1000-iteration warm-up over the 100e files.
LSJ_200E = dict(
    train_dataloader=dict(dataset=dict(times=8)),
    param_scheduler=[
        dict(type='LinearLR', start_factor=0.067, by_epoch=False, begin=0, end=1000),
        dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24],
             gamma=0.1)])


def ms_90k(annotations: dict, metric) -> dict:
    """common/ms-90k_coco.py and common/ms-poly-90k_coco-instance.py."""
    train_pipeline = [LOAD_PILLOW, annotations,
                      dict(type='RandomChoiceResize', scales=D2_SCALES, keep_ratio=True,
                           backend='pillow'),
                      FLIP, PACK]
    test_pipeline = [LOAD_PILLOW, dict(TEST_RESIZE, backend='pillow'), annotations,
                     PACK_TEST]
    train_loader = dict(pin_memory=True, sampler=dict(type='InfiniteSampler', shuffle=True),
                        batch_sampler=dict(type='AspectRatioBatchSampler'),
                        dataset=coco('train', train_pipeline))
    return dict(
        **data(train_pipeline, test_pipeline, train_loader,
               dict(batch_size=1, pin_memory=True), metric, format_only=False),
        backend='pillow', max_iter=90000,
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=90000, val_interval=10000),
        **LOOPS_VAL_TEST,
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
            dict(type='MultiStepLR', begin=0, end=90000, by_epoch=False,
                 milestones=[60000, 80000], gamma=0.1)],
        optim_wrapper=SGD_002, auto_scale_lr=dict(enable=False, base_batch_size=16),
        **ITER_HOOKS)


def ms_3x(annotations: dict, metric, val_batch_size: int) -> dict:
    """common/ms_3x_coco.py, ms_3x_coco-instance.py and ms-poly_3x_coco-instance.py."""
    train_pipeline = [LOAD, annotations,
                      dict(type='RandomResize', scale=[(1333, 640), (1333, 800)],
                           keep_ratio=True),
                      FLIP, PACK]
    train_loader = dict(
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='AspectRatioBatchSampler'),
        dataset=dict(type='RepeatDataset', times=3, dataset=coco('train', train_pipeline)))
    # no format_only in these three files
    return dict(
        **data(train_pipeline, [LOAD, TEST_RESIZE, annotations, PACK_TEST], train_loader,
               dict(batch_size=val_batch_size), metric),
        train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1),
        **LOOPS_VAL_TEST,
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
            dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11],
                 gamma=0.1)],
        optim_wrapper=SGD_002, auto_scale_lr=dict(enable=False, base_batch_size=16))


def ssj_270k() -> dict:
    """common/ssj_270k_coco-instance.py."""
    train_pipeline = [LOAD, MASKS,
                      dict(type='RandomResize', scale=SIZE_1024, ratio_range=(0.8, 1.25),
                           keep_ratio=True),
                      *JITTER_CROP, PACK]
    train_loader = dict(sampler=dict(type='InfiniteSampler'),
                        dataset=coco('train', train_pipeline))
    return dict(
        **data(train_pipeline, [LOAD, TEST_RESIZE, MASKS, PACK_TEST], train_loader,
               dict(batch_size=1), ['bbox', 'segm'], format_only=False),
        image_size=SIZE_1024, max_iters=270000,
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=270000, val_interval=10000),
        **LOOPS_VAL_TEST, optim_wrapper=SGD_01,
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
            dict(type='MultiStepLR', begin=0, end=270000, by_epoch=False,
                 milestones=[243000, 256500, 263250], gamma=0.1)],
        **ITER_HOOKS, auto_scale_lr=dict(base_batch_size=64))


def ssj_scp_overrides() -> dict:
    """common/ssj_scp_270k_coco-instance.py over ssj_270k_coco-instance.py."""
    load_pipeline = [LOAD, MASKS,
                     dict(type='RandomResize', scale=SIZE_1024, ratio_range=(0.8, 1.25),
                          keep_ratio=True),
                     *JITTER_CROP, dict(type='Pad', size=SIZE_1024)]
    train_pipeline = [dict(type='CopyPaste', max_num_pasted=100), PACK]
    return dict(
        dataset_type='CocoDataset', data_root='data/coco/', image_size=SIZE_1024,
        backend_args=None, load_pipeline=load_pipeline, train_pipeline=train_pipeline,
        train_dataloader=dict(dataset=dict(
            _delete_=True, type='MultiImageMixDataset', dataset=coco('train', load_pipeline),
            pipeline=train_pipeline)))


LSJ_100E_DET = lsj_100e(BOXES, 'bbox')
LSJ_100E_INS = lsj_100e(MASKS, ['bbox', 'segm'])
MS_3X = ms_3x(BOXES, 'bbox', 1)
MS_POLY_3X_INS = ms_3x(POLYGONS, ['bbox', 'segm'], 2)
SSJ_270K = ssj_270k()
COMMON = {
    'lsj-100e_coco-detection.py': LSJ_100E_DET,
    'lsj-100e_coco-instance.py': LSJ_100E_INS,
    'lsj-200e_coco-detection.py': merged(LSJ_100E_DET, LSJ_200E),
    'lsj-200e_coco-instance.py': merged(LSJ_100E_INS, LSJ_200E),
    'ms-90k_coco.py': ms_90k(BOXES, 'bbox'),
    'ms-poly-90k_coco-instance.py': ms_90k(POLYGONS, ['bbox', 'segm']),
    'ms_3x_coco.py': MS_3X,
    'ms_3x_coco-instance.py': ms_3x(MASKS, 'bbox', 1),
    'ms-poly_3x_coco-instance.py': MS_POLY_3X_INS,
    'ssj_270k_coco-instance.py': SSJ_270K,
    'ssj_scp_270k_coco-instance.py': merged(SSJ_270K, ssj_scp_overrides()),
}

# ----------------------------------------------------------------- model bases' values

RESNET50 = dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=True, style='pytorch')  # + mmdetection's init_cfg (a download)
TORCHVISION_R50 = dict(type='Pretrained', checkpoint='torchvision://resnet50')
PREPROCESSOR = dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                    std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32)
UNIT_STD_CODER = dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                      target_stds=[1.0, 1.0, 1.0, 1.0])
FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)


def max_iou(pos: float, neg: float, min_pos: float, low_quality: bool) -> dict:
    return dict(type='MaxIoUAssigner', pos_iou_thr=pos, neg_iou_thr=neg, min_pos_iou=min_pos,
                match_low_quality=low_quality, ignore_iof_thr=-1)


def random_sampler(num: int, pos_fraction: float, gt_as_proposals: bool) -> dict:
    return dict(type='RandomSampler', num=num, pos_fraction=pos_fraction, neg_pos_ub=-1,
                add_gt_as_proposals=gt_as_proposals)


def proposals(nms_pre: int) -> dict:
    return dict(nms_pre=nms_pre, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                min_bbox_size=0)


def roi_extractor(output_size: int) -> dict:
    return dict(type='SingleRoIExtractor',
                roi_layer=dict(type='RoIAlign', output_size=output_size, sampling_ratio=0),
                out_channels=256, featmap_strides=[4, 8, 16, 32])


FASTER_RCNN = dict(
    type='FasterRCNN', data_preprocessor=PREPROCESSOR, backbone=RESNET50,
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
    rpn_head=dict(
        type='RPNHead', in_channels=256, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=UNIT_STD_CODER,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead', bbox_roi_extractor=roi_extractor(7),
        bbox_head=dict(
            type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(assigner=max_iou(0.7, 0.3, 0.3, True),
                 sampler=random_sampler(256, 0.5, False), allowed_border=-1, pos_weight=-1,
                 debug=False),
        rpn_proposal=proposals(2000),
        rcnn=dict(assigner=max_iou(0.5, 0.5, 0.5, False),
                  sampler=random_sampler(512, 0.25, True), pos_weight=-1, debug=False)),
    test_cfg=dict(
        rpn=proposals(1000),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100)))
# mask-rcnn_r50_fpn.py: Faster R-CNN's values plus these.
MASK_RCNN = merged(FASTER_RCNN, dict(
    type='MaskRCNN', data_preprocessor=dict(pad_mask=True),
    roi_head=dict(
        mask_roi_extractor=roi_extractor(14),
        mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=256,
                       conv_out_channels=256, num_classes=80,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                                      loss_weight=1.0))),
    train_cfg=dict(rcnn=dict(assigner=dict(match_low_quality=True), mask_size=28)),
    test_cfg=dict(rcnn=dict(mask_thr_binary=0.5))))
RETINANET = dict(
    type='RetinaNet', data_preprocessor=PREPROCESSOR, backbone=RESNET50,
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_input', num_outs=5),
    bbox_head=dict(
        type='RetinaHead', num_classes=80, in_channels=256, stacked_convs=4,
        feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                              scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                              strides=[8, 16, 32, 64, 128]),
        bbox_coder=UNIT_STD_CODER, loss_cls=FOCAL,
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                 min_pos_iou=0, ignore_iof_thr=-1),
                   sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
                   debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))

# --------------------------------------------------------- the dependent configs' values

PRETRAINED = {name: dict(type='Pretrained', checkpoint=checkpoint) for name, checkpoint in (
    ('r18', 'torchvision://resnet18'), ('r101', 'torchvision://resnet101'),
    ('r50_caffe', 'open-mmlab://detectron2/resnet50_caffe'),
    ('r101_caffe', 'open-mmlab://detectron2/resnet101_caffe'),
    ('x101_32x4d', 'open-mmlab://resnext101_32x4d'),
    ('x101_64x4d', 'open-mmlab://resnext101_64x4d'),
    ('x101_32x8d', 'open-mmlab://detectron2/resnext101_32x8d'))}
R18 = dict(model=dict(backbone=dict(depth=18, init_cfg=PRETRAINED['r18']),
                      neck=dict(in_channels=[64, 128, 256, 512])))
R101 = dict(model=dict(backbone=dict(depth=101, init_cfg=PRETRAINED['r101'])))
CAFFE_NORM = dict(mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False)
CAFFE_BACKBONE = dict(norm_cfg=dict(requires_grad=False), norm_eval=True, style='caffe')
X101_32X8D_NORM = dict(mean=[103.530, 116.280, 123.675], std=[57.375, 57.120, 58.395],
                       bgr_to_rgb=False)


def resnext(groups: int, base_width: int, frozen_bn: bool, init_cfg: dict) -> dict:
    """The full ResNeXt-101 backbone that the x101 ms-3x files write."""
    return dict(type='ResNeXt', depth=101, groups=groups, base_width=base_width,
                num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
                norm_cfg=dict(type='BN', requires_grad=not frozen_bn), style='pytorch',
                init_cfg=init_cfg)


def amp_lsj(model: dict, common: dict, lr: float, pad_mask: bool = False, **optim) -> dict:
    """The *_8xb8-amp-lsj-* files over a model base and an LSJ common file."""
    pad = dict(type='BatchFixedSizePad', size=SIZE_1024)
    if pad_mask:
        pad['pad_mask'] = True
    return merged(dict(common, model=model), dict(
        image_size=SIZE_1024, batch_augments=[pad],
        model=dict(data_preprocessor=dict(batch_augments=[pad])),
        train_dataloader=dict(batch_size=8, num_workers=4),
        optim_wrapper=dict(type='AmpOptimWrapper',
                           optimizer=dict(type='SGD', lr=lr, momentum=0.9,
                                          weight_decay=0.00004), **optim),
        auto_scale_lr=dict(base_batch_size=64)))


def lsj_model_file(model: dict, common: dict, **optim) -> dict:
    """The FCOS/SOLO/CenterNet LSJ files: the whole model written over an LSJ common file."""
    pad = [dict(type='BatchFixedSizePad', size=SIZE_1024)]
    model = merged(model, dict(data_preprocessor=dict(batch_augments=pad)))
    return merged(common, dict(
        image_size=SIZE_1024, batch_augments=pad, model=model,
        train_dataloader=dict(batch_size=8, num_workers=4),
        optim_wrapper=dict(type='AmpOptimWrapper',
                           optimizer=dict(type='SGD', lr=0.01 * 4, momentum=0.9,
                                          weight_decay=0.00004), **optim),
        auto_scale_lr=dict(base_batch_size=64)))


FASTER_3X = dict(MS_3X, model=FASTER_RCNN)
MASK_3X = dict(MS_POLY_3X_INS, model=MASK_RCNN)
RETINA_LR = dict(optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                                   weight_decay=0.0001)))
RETINA_3X = merged(dict(MS_3X, model=RETINANET), RETINA_LR)
FASTER_LSJ = amp_lsj(FASTER_RCNN, merged(LSJ_100E_DET, LSJ_200E), 0.02 * 4)
# mmdetection's Mask R-CNN "lsj-200e" file builds on the 100e common file.
MASK_LSJ = amp_lsj(MASK_RCNN, LSJ_100E_INS, 0.02 * 4, pad_mask=True)
RETINA_LSJ = amp_lsj(RETINANET, merged(LSJ_100E_DET, LSJ_200E), 0.01 * 4)

P3_P7_FPN = dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
                 start_level=1, add_extra_convs='on_output', num_outs=5,
                 relu_before_extra_convs=True)
NMS_06_TEST = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                   nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)
FCOS_LSJ = lsj_model_file(
    dict(type='FCOS', data_preprocessor=PREPROCESSOR,
         backbone=dict(RESNET50, init_cfg=TORCHVISION_R50), neck=P3_P7_FPN,
         bbox_head=dict(
             type='FCOSHead', num_classes=80, in_channels=256, stacked_convs=4,
             feat_channels=256, strides=[8, 16, 32, 64, 128], norm_on_bbox=True,
             centerness_on_reg=True, dcn_on_last_conv=False, center_sampling=True,
             conv_bias=True, loss_cls=FOCAL, loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
             loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True,
                                  loss_weight=1.0)),
         test_cfg=NMS_06_TEST),
    merged(LSJ_100E_DET, LSJ_200E),
    paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.),
    clip_grad=dict(max_norm=35, norm_type=2))
SOLO_LSJ = lsj_model_file(
    dict(type='SOLO', data_preprocessor=PREPROCESSOR,
         backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                       frozen_stages=1, init_cfg=TORCHVISION_R50, style='pytorch'),
         neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
                   start_level=0, num_outs=5),
         mask_head=dict(
             type='SOLOHead', num_classes=80, in_channels=256, stacked_convs=7,
             feat_channels=256, strides=[8, 8, 16, 32, 32],
             scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
             pos_scale=0.2, num_grids=[40, 36, 24, 16, 12], cls_down_index=0,
             loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
             loss_cls=FOCAL, norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
         test_cfg=dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05,
                       kernel='gaussian', sigma=2.0, max_per_img=100)),
    merged(LSJ_100E_INS, LSJ_200E),
    clip_grad=dict(max_norm=35, norm_type=2))
CENTERNET_LSJ = merged(lsj_model_file(
    dict(type='CenterNet', data_preprocessor=PREPROCESSOR,
         backbone=dict(RESNET50, init_cfg=TORCHVISION_R50),
         neck=dict(P3_P7_FPN, init_cfg=dict(type='Caffe2Xavier', layer='Conv2d')),
         bbox_head=dict(
             type='CenterNetUpdateHead', num_classes=80, in_channels=256, stacked_convs=4,
             feat_channels=256, strides=[8, 16, 32, 64, 128],
             loss_cls=dict(type='GaussianFocalLoss', pos_weight=0.25, neg_weight=0.75,
                           loss_weight=1.0),
             loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
         train_cfg=None, test_cfg=NMS_06_TEST),
    merged(LSJ_100E_DET, LSJ_200E),
    paramwise_cfg=dict(norm_decay_mult=0.)), dict(param_scheduler=[
        dict(type='LinearLR', start_factor=0.00025, by_epoch=False, begin=0, end=4000),
        dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[22, 24],
             gamma=0.1)]))

FCOS_LSJ_NAME = 'fcos_{}_fpn_gn-head-center-normbbox-centeronreg-giou_8xb8-amp-lsj-200e_coco.py'
DEPENDENT = {
    # condinst: see test_condinst.py for the model; here its data and schedule
    'faster_rcnn/faster-rcnn_r50_fpn_ms-3x_coco.py': FASTER_3X,
    'faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py': merged(FASTER_3X, R101),
    'faster_rcnn/faster-rcnn_r50-caffe_fpn_ms-3x_coco.py': merged(FASTER_3X, dict(model=dict(
        data_preprocessor=dict(PREPROCESSOR, **CAFFE_NORM),
        backbone=dict(CAFFE_BACKBONE, init_cfg=PRETRAINED['r50_caffe'])))),
    # over the pytorch-style R-50 3x file: mmdetection keeps its RGB normalization here
    'faster_rcnn/faster-rcnn_r101-caffe_fpn_ms-3x_coco.py': merged(FASTER_3X, dict(model=dict(
        backbone=dict(CAFFE_BACKBONE, depth=101, init_cfg=PRETRAINED['r101_caffe'])))),
    'faster_rcnn/faster-rcnn_x101-32x4d_fpn_ms-3x_coco.py': merged(FASTER_3X, dict(model=dict(
        backbone=resnext(32, 4, False, PRETRAINED['x101_32x4d'])))),
    'faster_rcnn/faster-rcnn_x101-64x4d_fpn_ms-3x_coco.py': merged(FASTER_3X, dict(model=dict(
        backbone=resnext(64, 4, False, PRETRAINED['x101_64x4d'])))),
    'faster_rcnn/faster-rcnn_x101-32x8d_fpn_ms-3x_coco.py': merged(FASTER_3X, dict(model=dict(
        data_preprocessor=dict(PREPROCESSOR, **X101_32X8D_NORM),
        backbone=resnext(32, 8, True, PRETRAINED['x101_32x8d'])))),
    'faster_rcnn/faster-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco.py': FASTER_LSJ,
    'faster_rcnn/faster-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco.py': merged(FASTER_LSJ, R18),
    'faster_rcnn/faster-rcnn_r101_fpn_8xb8-amp-lsj-200e_coco.py': merged(FASTER_LSJ, R101),
    'mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py': MASK_3X,
    'mask_rcnn/mask-rcnn_r101_fpn_ms-poly-3x_coco.py': merged(MASK_3X, R101),
    'mask_rcnn/mask-rcnn_r101-caffe_fpn_ms-poly-3x_coco.py': merged(MASK_3X, dict(model=dict(
        data_preprocessor=CAFFE_NORM,
        backbone=dict(CAFFE_BACKBONE, depth=101, init_cfg=PRETRAINED['r101_caffe'])))),
    'mask_rcnn/mask-rcnn_x101-32x4d_fpn_ms-poly-3x_coco.py': merged(MASK_3X, dict(model=dict(
        backbone=resnext(32, 4, False, PRETRAINED['x101_32x4d'])))),
    # (mmdetection's file name has "poly_3x" here)
    'mask_rcnn/mask-rcnn_x101-64x4d_fpn_ms-poly_3x_coco.py': merged(MASK_3X, dict(model=dict(
        backbone=resnext(64, 4, False, PRETRAINED['x101_64x4d'])))),
    'mask_rcnn/mask-rcnn_x101-32x8d_fpn_ms-poly-3x_coco.py': merged(MASK_3X, dict(model=dict(
        data_preprocessor=X101_32X8D_NORM,
        backbone=resnext(32, 8, True, PRETRAINED['x101_32x8d'])))),
    'mask_rcnn/mask-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco.py': MASK_LSJ,
    'mask_rcnn/mask-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco.py': merged(MASK_LSJ, R18),
    'mask_rcnn/mask-rcnn_r101_fpn_8xb8-amp-lsj-200e_coco.py': merged(MASK_LSJ, R101),
    'retinanet/retinanet_r50_fpn_ms-640-800-3x_coco.py': RETINA_3X,
    'retinanet/retinanet_r101_fpn_ms-640-800-3x_coco.py': merged(RETINA_3X, R101),
    # ResNeXt keys over the base's ResNet-50 ones (norm_eval, style ... stay)
    'retinanet/retinanet_x101-64x4d_fpn_ms-640-800-3x_coco.py': merged(RETINA_3X, dict(
        model=dict(backbone=dict(type='ResNeXt', depth=101, groups=64, base_width=4,
                                 init_cfg=PRETRAINED['x101_64x4d'])))),
    'retinanet/retinanet_r50_fpn_8xb8-amp-lsj-200e_coco.py': RETINA_LSJ,
    'retinanet/retinanet_r18_fpn_8xb8-amp-lsj-200e_coco.py': merged(RETINA_LSJ, R18),
    'retinanet/retinanet_r101_fpn_8xb8-amp-lsj-200e_coco.py': merged(RETINA_LSJ, R101),
    'fcos/' + FCOS_LSJ_NAME.format('r50'): FCOS_LSJ,
    'fcos/' + FCOS_LSJ_NAME.format('r18'): merged(FCOS_LSJ, R18),
    'fcos/' + FCOS_LSJ_NAME.format('r101'): merged(FCOS_LSJ, R101),
    'solo/solo_r50_fpn_8xb8-lsj-200e_coco.py': SOLO_LSJ,
    'solo/solo_r18_fpn_8xb8-lsj-200e_coco.py': merged(SOLO_LSJ, R18),
    'solo/solo_r101_fpn_8xb8-lsj-200e_coco.py': merged(SOLO_LSJ, R101),
    'centernet/centernet-update_r50_fpn_8xb8-amp-lsj-200e_coco.py': CENTERNET_LSJ,
    'centernet/centernet-update_r18_fpn_8xb8-amp-lsj-200e_coco.py': merged(CENTERNET_LSJ, R18),
    'centernet/centernet-update_r101_fpn_8xb8-amp-lsj-200e_coco.py':
        merged(CENTERNET_LSJ, R101),
}


def assert_config_is(cfg: Config, expected: dict) -> None:
    """``cfg`` holds exactly the runtime's keys merged with ``expected``, value by value."""
    assert_config_is_dict(cfg.to_dict(), expected)


def assert_config_is_dict(actual: dict, expected: dict) -> None:
    expected = merged(RUNTIME, expected)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key] == value, key


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize('name', sorted(COMMON))
def test_common_file_holds_mmdetections_values(name):
    assert_config_is(load(f'common/{name}'), COMMON[name])


def test_every_common_file_of_mmdetection_is_here():
    assert sorted(p.name for p in (CONFIGS / 'common').glob('*.py')) == sorted(COMMON)


def pipelines_of(cfg: Config) -> list:
    """Every pipeline a config names: top-level and inside its dataloaders' datasets."""
    found = [cfg[key] for key in ('train_pipeline', 'test_pipeline', 'load_pipeline')
             if key in cfg]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        while dataset is not None:
            if 'pipeline' in dataset:
                found.append(dataset.pipeline)
            dataset = dataset.get('dataset')
    return found


def datasets_of(loader: dict) -> list:
    types, dataset = [], loader['dataset']
    while dataset is not None:
        types.append(dataset['type'])
        dataset = dataset.get('dataset')
    return types


@pytest.mark.parametrize('name', sorted(COMMON))
def test_common_file_pipelines_build_and_its_parts_are_registered(name):
    cfg = load(f'common/{name}')
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        for pipeline in pipelines_of(cfg):
            for step in pipeline:
                transform = TRANSFORMS.build(copy.deepcopy(step))
                assert type(transform).__name__ == step['type']
        for loader in ('train_dataloader', 'val_dataloader'):
            for key in ('sampler', 'batch_sampler'):
                if key in cfg[loader]:
                    assert DATA_SAMPLERS.get(cfg[loader][key]['type']) is not None
            for dataset_type in datasets_of(cfg[loader]):
                assert DATASETS.get(dataset_type) is not None, dataset_type
        for key in ('train_cfg', 'val_cfg', 'test_cfg'):
            assert LOOPS.get(cfg[key]['type']) is not None
        for scheduler in cfg.param_scheduler:
            assert PARAM_SCHEDULERS.get(scheduler['type']) is not None
        assert OPTIM_WRAPPERS.get(cfg.optim_wrapper.type) is not None
        assert OPTIMIZERS.get(cfg.optim_wrapper.optimizer.type) is not None
        assert METRICS.get(cfg.val_evaluator.type) is not None
        assert HOOKS.get(cfg.default_hooks.checkpoint.type) is not None


def test_built_transforms_carry_the_common_files_arguments():
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        ms_poly = load('common/ms-poly-90k_coco-instance.py')
        load_image, annotations, resize = (TRANSFORMS.build(step)
                                           for step in ms_poly.train_pipeline[:3])
        assert load_image.imdecode_backend == 'pillow'
        assert annotations.poly2mask is False and annotations.with_mask is True
        assert resize.scales == D2_SCALES and resize.resize.backend == 'pillow'
        assert resize.resize.keep_ratio is True

        lsj = load('common/lsj-100e_coco-instance.py')
        jitter, crop, filter_ = (TRANSFORMS.build(step) for step in lsj.train_pipeline[2:5])
        assert jitter.scale == SIZE_1024 and jitter.ratio_range == (0.1, 2.0)
        assert (crop.crop_type, crop.crop_size) == ('absolute_range', SIZE_1024)
        assert crop.recompute_bbox is True and crop.allow_negative_crop is True
        assert filter_.min_gt_bbox_wh == (1e-2, 1e-2)

        scp = load('common/ssj_scp_270k_coco-instance.py')
        assert TRANSFORMS.build(scp.train_pipeline[0]).max_num_pasted == 100
        assert TRANSFORMS.build(scp.load_pipeline[-1]).size == SIZE_1024


def shapes(root: Path, pipeline: list, **kwargs) -> ShapesDataset:
    """Two generated 64x64 images with 2-3 polygon objects each."""
    return ShapesDataset(data_root=str(root), ann_file='annotations/instances_train.json',
                         data_prefix=dict(img='train/'), num_images=2, image_size=64,
                         max_objects=3, size_range=(16, 40), empty_ratio=0.0, seed=3,
                         pipeline=pipeline, **kwargs)


TRAINED_SIZES = {
    # the shorter side of the (square) image reaches one of these, the longer at most 1333
    'ms-90k_coco.py': {640, 672, 704, 736, 768, 800},
    'ms-poly-90k_coco-instance.py': {640, 672, 704, 736, 768, 800},
}


@pytest.mark.parametrize('name', sorted(set(COMMON) - {'ssj_scp_270k_coco-instance.py'}))
def test_common_train_pipeline_runs_on_a_generated_image(name, tmp_path):
    cfg = load(f'common/{name}')
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        sample = shapes(tmp_path, cfg.train_pipeline)[0]
    height, width = sample['inputs'].shape[1:]
    instances = sample['data_samples'].gt_instances
    if name.startswith(('lsj', 'ssj')):
        # the jittered image is cropped to at most 1024 x 1024
        assert height <= 1024 and width <= 1024
    elif name.startswith('ms_3x') or name.startswith('ms-poly_3x'):
        assert 640 <= min(height, width) <= 800
    else:
        assert min(height, width) in TRAINED_SIZES[name]
    if 'poly' in name:
        assert isinstance(instances.masks, PolygonMasks)
    if 'instance' in name:
        assert len(instances.masks) == len(instances.bboxes)
        assert instances.masks.height == height and instances.masks.width == width
    else:
        assert 'masks' not in instances


def test_copy_paste_pipeline_runs_through_multi_image_mix_dataset(tmp_path):
    cfg = load('common/ssj_scp_270k_coco-instance.py')
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        images = shapes(tmp_path, cfg.load_pipeline)
        sample = MultiImageMixDataset(images, pipeline=cfg.train_pipeline)[0]
    # Pad makes both images 1024 x 1024 before CopyPaste.
    assert tuple(sample['inputs'].shape) == (3, 1024, 1024)
    instances = sample['data_samples'].gt_instances
    assert instances.masks.masks.shape == (len(instances.bboxes), 1024, 1024)
    num_classes = len(images.metainfo['classes'])
    assert np.isin(instances.labels.numpy(), np.arange(num_classes)).all()


# -------------------------------------------------------------------- dependent configs


@pytest.mark.parametrize('name', sorted(DEPENDENT))
def test_dependent_config_holds_mmdetections_merged_values(name):
    assert_config_is(load(name), DEPENDENT[name])


def test_condinst_sits_on_the_common_base():
    # everything but the model (test_condinst.py checks that): the common file's values with
    # CondInst's lr
    actual = load('condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py').to_dict()
    model = actual.pop('model')
    assert model['type'] == 'CondInst'
    assert_config_is_dict(actual, merged(COMMON['ms-poly-90k_coco-instance.py'],
                                         dict(optim_wrapper=dict(optimizer=dict(lr=0.01)))))


def is_registered(registry, name: str) -> bool:
    try:  # our registries raise a KeyError naming close matches
        return registry.get(name) is not None
    except KeyError:
        return False


def registered_types(node, registries) -> list:
    """(type, found) for every ``type`` key in a model config, skipping op names (nms)."""
    found = []
    if isinstance(node, dict):
        if 'type' in node and node['type'] not in ('nms', 'soft_nms'):
            found.append((node['type'], any(is_registered(r, node['type'])
                                            for r in registries)))
        for value in node.values():
            found += registered_types(value, registries)
    elif isinstance(node, (list, tuple)):
        for value in node:
            found += registered_types(value, registries)
    return found


@pytest.mark.parametrize('name', sorted(DEPENDENT))
def test_dependent_config_model_parts_are_registered(name):
    cfg = load(name)
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        types = registered_types(cfg.model.to_dict(),
                                 (MODELS, TASK_UTILS, WEIGHT_INITIALIZERS))
        assert [t for t, ok in types if not ok] == []
        assert OPTIM_WRAPPERS.get(cfg.optim_wrapper.type) is not None
