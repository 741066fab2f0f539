"""SSD300, SSD512 and SSDLite-MobileNetV2 (configs/ssd): mmdetection 3.3's config values, the
pipelines build and run, state_dict keys and shapes from mmdetection's module definitions
(checkpoints load strictly), shape traces at 300x300 / 320x320, the loss / predict / tensor
modes and a short overfit of a narrow SSDLite.

Expected config values are written from mmdetection's files (configs/_base_/models/ssd300.py,
configs/ssd/*.py, its coco_detection / schedule / runtime bases); expected keys come from
helpers_ssd_keys. Models are built without ``init_weights`` where init_cfg would download
(SSD's VGG loads open-mmlab://vgg16_caffe).
"""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import init_weights_quietly
from helpers_ssd_keys import ssd300_keys, ssd512_keys, ssdlite_mobilenetv2_keys
from helpers_state_dict import shapes_of
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import RepeatDataset
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData

from mmdet_lite.models.detectors import SingleStageDetector
from mmdet_lite.registry import DATASETS, HOOKS, MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
SSD300 = CONFIGS / 'ssd' / 'ssd300_coco.py'
SSD512 = CONFIGS / 'ssd' / 'ssd512_coco.py'
SSDLITE = CONFIGS / 'ssd' / 'ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'

register_all_modules()


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


# ---------------------------------------------------------------------------------------
# mmdetection's values, written from its config files
# ---------------------------------------------------------------------------------------
SSD_TRAIN_CFG = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.,
                  ignore_iof_thr=-1, gt_max_assign_all=False),
    sampler=dict(type='PseudoSampler'), smoothl1_beta=1., allowed_border=-1, pos_weight=-1,
    neg_pos_ratio=3, debug=False)
SSD_TEST_CFG = dict(nms_pre=1000, nms=dict(type='nms', iou_threshold=0.45), min_bbox_size=0,
                    score_thr=0.02, max_per_img=200)
SSD_CODER = dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                 target_stds=[0.1, 0.1, 0.2, 0.2])
CAFFE_MEAN = [123.675, 116.28, 103.53]
BN_SSDLITE = dict(type='BN', eps=0.001, momentum=0.03)
CUSTOM_HOOKS = [dict(type='NumClassCheckHook'),
                dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW')]

SSD300_MODEL = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=CAFFE_MEAN, std=[1, 1, 1],
                           bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(type='SSDVGG', depth=16, with_last_pool=False, ceil_mode=True,
                  out_indices=(3, 4), out_feature_indices=(22, 34),
                  init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://vgg16_caffe')),
    neck=dict(type='SSDNeck', in_channels=(512, 1024),
              out_channels=(512, 1024, 512, 256, 256, 256), level_strides=(2, 2, 1, 1),
              level_paddings=(1, 1, 0, 0), l2_norm_scale=20),
    bbox_head=dict(
        type='SSDHead', in_channels=(512, 1024, 512, 256, 256, 256), num_classes=80,
        anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False, input_size=300,
                              basesize_ratio_range=(0.15, 0.9),
                              strides=[8, 16, 32, 64, 100, 300],
                              ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]]),
        bbox_coder=SSD_CODER),
    train_cfg=SSD_TRAIN_CFG,
    test_cfg=SSD_TEST_CFG)

SSDLITE_MODEL = dict(
    type='SingleStageDetector',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=CAFFE_MEAN,
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=1),
    backbone=dict(type='MobileNetV2', out_indices=(4, 7), norm_cfg=BN_SSDLITE,
                  init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    neck=dict(type='SSDNeck', in_channels=(96, 1280),
              out_channels=(96, 1280, 512, 256, 256, 128), level_strides=(2, 2, 2, 2),
              level_paddings=(1, 1, 1, 1), l2_norm_scale=None, use_depthwise=True,
              norm_cfg=BN_SSDLITE, act_cfg=dict(type='ReLU6'),
              init_cfg=dict(type='TruncNormal', layer='Conv2d', std=0.03)),
    bbox_head=dict(
        type='SSDHead', in_channels=(96, 1280, 512, 256, 256, 128), num_classes=80,
        use_depthwise=True, norm_cfg=BN_SSDLITE, act_cfg=dict(type='ReLU6'),
        init_cfg=dict(type='Normal', layer='Conv2d', std=0.001),
        anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False,
                              strides=[16, 32, 64, 107, 160, 320], ratios=[[2, 3]] * 6,
                              min_sizes=[48, 100, 150, 202, 253, 304],
                              max_sizes=[100, 150, 202, 253, 304, 320]),
        bbox_coder=SSD_CODER),
    train_cfg=SSD_TRAIN_CFG,
    test_cfg=SSD_TEST_CFG)


def ssd_train_pipeline(size: int, backend_args: bool = True) -> list:
    load = dict(type='LoadImageFromFile')
    if backend_args:
        load['backend_args'] = None
    return [
        load,
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Expand', mean=CAFFE_MEAN, to_rgb=True, ratio_range=(1, 4)),
        dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
        dict(type='Resize', scale=(size, size), keep_ratio=False),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
             saturation_range=(0.5, 1.5), hue_delta=18),
        dict(type='PackDetInputs')]


def ssd_test_pipeline(size: int, backend_args: bool = True) -> list:
    load = dict(type='LoadImageFromFile')
    if backend_args:
        load['backend_args'] = None
    return [load, dict(type='Resize', scale=(size, size), keep_ratio=False),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                                  'img_shape', 'scale_factor'))]


def repeated_coco(pipeline: list, backend_args: bool = True) -> dict:
    dataset = dict(type='CocoDataset', data_root='data/coco/',
                   ann_file='annotations/instances_train2017.json',
                   data_prefix=dict(img='train2017/'),
                   filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=pipeline)
    if backend_args:
        dataset['backend_args'] = None
    return dict(type='RepeatDataset', times=5, dataset=dataset)


# ---------------------------------------------------------------------------------------
# config values
# ---------------------------------------------------------------------------------------
def test_ssd300_model_settings_are_mmdetections():
    cfg = load(SSD300)
    assert cfg.model == SSD300_MODEL
    assert cfg.input_size == 300
    assert cfg.cudnn_benchmark is True  # a top-level variable of mmdetection's ssd300.py


def test_ssd512_model_settings_are_mmdetections():
    cfg = load(SSD512)
    expected = copy.deepcopy(SSD300_MODEL)
    expected['neck'].update(out_channels=(512, 1024, 512, 256, 256, 256, 256),
                            level_strides=(2, 2, 2, 2, 1), level_paddings=(1, 1, 1, 1, 1),
                            last_kernel_size=4)
    expected['bbox_head'].update(
        in_channels=(512, 1024, 512, 256, 256, 256, 256),
        anchor_generator=dict(type='SSDAnchorGenerator', scale_major=False, input_size=512,
                              basesize_ratio_range=(0.1, 0.9),
                              strides=[8, 16, 32, 64, 128, 256, 512],
                              ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]))
    assert cfg.model == expected
    assert cfg.input_size == 512


def test_ssdlite_model_settings_are_mmdetections():
    cfg = load(SSDLITE)
    assert cfg.model == SSDLITE_MODEL
    assert cfg.env_cfg == dict(cudnn_benchmark=True,
                               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                               dist_cfg=dict(backend='nccl'))


@pytest.mark.parametrize('path, size', [(SSD300, 300), (SSD512, 512)])
def test_ssd_training_settings_are_mmdetections(path, size):
    cfg = load(path)
    assert cfg.default_scope == 'mmdet_lite'
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22],
             gamma=0.1)]
    assert cfg.optim_wrapper == dict(type='OptimWrapper', optimizer=dict(
        type='SGD', lr=2e-3, momentum=0.9, weight_decay=5e-4))
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=64)
    assert cfg.custom_hooks == CUSTOM_HOOKS

    train = cfg.train_dataloader
    assert (train.batch_size, train.num_workers, train.persistent_workers) == (8, 2, True)
    assert train.batch_sampler is None
    assert train.sampler == dict(type='DefaultSampler', shuffle=True)
    assert train.dataset == repeated_coco(ssd_train_pipeline(size))
    val = cfg.val_dataloader
    assert (val.batch_size, val.num_workers, val.drop_last) == (8, 2, False)
    assert val.dataset.pipeline == ssd_test_pipeline(size)
    assert val.dataset.ann_file == 'annotations/instances_val2017.json' and val.dataset.test_mode
    assert cfg.test_dataloader == cfg.val_dataloader
    assert cfg.val_evaluator.metric == 'bbox'


def test_ssdlite_training_settings_are_mmdetections():
    cfg = load(SSDLITE)
    assert cfg.max_epochs == 120 and cfg.input_size == 320
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=120, val_interval=5)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='CosineAnnealingLR', begin=0, T_max=120, end=120, by_epoch=True, eta_min=0)]
    assert cfg.optim_wrapper == dict(type='OptimWrapper', optimizer=dict(
        type='SGD', lr=0.015, momentum=0.9, weight_decay=4.0e-5))
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=192)
    assert cfg.custom_hooks == CUSTOM_HOOKS

    train = cfg.train_dataloader
    assert (train.batch_size, train.num_workers, train.batch_sampler) == (24, 4, None)
    assert train.dataset == repeated_coco(ssd_train_pipeline(320, backend_args=False),
                                          backend_args=False)
    val = cfg.val_dataloader
    assert (val.batch_size, val.num_workers) == (8, 2)
    assert val.dataset.pipeline == ssd_test_pipeline(320, backend_args=False)
    assert cfg.test_dataloader == cfg.val_dataloader


@pytest.mark.parametrize('path, size', [(SSD300, 300), (SSD512, 512), (SSDLITE, 320)])
def test_train_pipeline_builds_and_gives_square_inputs(path, size):
    cfg = load(path)
    # RepeatDataset is mmengine's, found through the registry's parent as in mmdetection
    assert DATASETS.get(cfg.train_dataloader.dataset.type) is RepeatDataset
    for hook in cfg.custom_hooks:
        assert HOOKS.get(hook['type']) is not None
    # everything after loading the image file, on an in-memory image
    pipeline = Compose(cfg.train_dataloader.dataset.dataset.pipeline[1:])
    rng = np.random.default_rng(0)
    results = dict(img=rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), img_shape=(60, 80),
                   ori_shape=(60, 80), img_id=0, img_path='x.jpg',
                   instances=[dict(bbox=[10., 10., 50., 40.], bbox_label=3, ignore_flag=0)])
    for _ in range(3):  # random crops: every attempt keeps the object and gives size x size
        out = pipeline(copy.deepcopy(results))
        assert tuple(out['inputs'].shape) == (3, size, size)
        assert out['data_samples'].gt_instances.labels.tolist() == [3]
    test = Compose(cfg.test_dataloader.dataset.pipeline[1:])
    out = test(copy.deepcopy(results))
    assert tuple(out['inputs'].shape) == (3, size, size)
    np.testing.assert_allclose(out['data_samples'].scale_factor, (size / 80, size / 60))


# ---------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('path, expected, num_keys', [
    (SSD300, ssd300_keys, 71), (SSD512, ssd512_keys, 79), (SSDLITE, ssdlite_mobilenetv2_keys,
                                                           480)])
def test_state_dict_keys_and_shapes_equal_mmdetection(path, expected, num_keys):
    model = MODELS.build(load(path).model)
    assert isinstance(model, SingleStageDetector)
    expected = expected()
    assert len(expected) == num_keys
    assert shapes_of(model) == expected
    # so a checkpoint with mmdetection's layout loads strictly
    state = {k: torch.full(shape, 0.5) if shape else torch.tensor(3)
             for k, shape in expected.items()}
    model.load_state_dict(state, strict=True)
    head_conv = 'bbox_head.cls_convs.0.1.weight' if path == SSDLITE else \
        'bbox_head.cls_convs.0.0.weight'
    assert torch.all(model.state_dict()[head_conv] == 0.5)


# ---------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------
def make_sample(bboxes, labels, size) -> DetDataSample:
    sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        bboxes=torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.as_tensor(labels, dtype=torch.long))
    return sample


def make_batch(size: int = 128) -> dict:
    """Two images with one bright box each (so there is something to learn)."""
    s = size / 128
    images = torch.full((2, 3, size, size), 40, dtype=torch.uint8)
    box0 = [int(v * s) for v in (16, 16, 80, 80)]
    box1 = [int(v * s) for v in (48, 40, 120, 112)]
    images[0, :, box0[1]:box0[3], box0[0]:box0[2]] = 220
    images[1, 1, box1[1]:box1[3], box1[0]:box1[2]] = 250
    return dict(inputs=list(images),
                data_samples=[make_sample([box0], [0], size), make_sample([box1], [2], size)])


def preprocess(model, data, training=False):
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


def total(losses: dict) -> torch.Tensor:
    return sum(sum(v) for v in losses.values())


def check_detections(results, num_classes, size):
    assert all(isinstance(r, DetDataSample) for r in results)
    for result in results:
        pred = result.pred_instances
        assert 0 < len(pred) <= 200
        assert pred.bboxes.shape == (len(pred), 4) and pred.scores.shape == (len(pred), )
        assert pred.labels.dtype == torch.long and torch.all(pred.labels < num_classes)
        assert torch.all(pred.scores >= 0.02) and torch.all(pred.scores < 1)
        assert pred.bboxes.min() >= 0 and pred.bboxes.max() <= size


@pytest.mark.slow
def test_ssd300_at_300x300_all_modes():
    torch.manual_seed(0)
    model = MODELS.build(load(SSD300).model)  # no init_weights: the VGG init downloads
    data = make_batch(300)
    data = dict(inputs=data['inputs'][:1], data_samples=data['data_samples'][:1])
    inputs, samples = preprocess(model, data)
    model.eval()
    with torch.no_grad():
        cls_scores, bbox_preds = model(inputs, mode='tensor')
        results = model(inputs, copy.deepcopy(samples), mode='predict')
    sizes = [38, 19, 10, 5, 3, 1]  # conv4_3, fc7, then the four extra levels
    priors = [4, 6, 6, 6, 4, 4]
    assert [tuple(c.shape) for c in cls_scores] == [(1, a * 81, s, s)
                                                    for a, s in zip(priors, sizes)]
    assert [tuple(b.shape) for b in bbox_preds] == [(1, a * 4, s, s)
                                                    for a, s in zip(priors, sizes)]
    check_detections(results, 80, 300)

    model.train()
    losses = model(*preprocess(model, data, training=True), mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert [tuple(v.shape) for v in losses['loss_cls']] == [(1, )]
    assert all(torch.isfinite(v).all() and v > 0 for vs in losses.values() for v in vs)


def test_ssdlite_at_320x320_shape_trace():
    model = MODELS.build(load(SSDLITE).model)
    init_weights_quietly(model)  # TruncNormal / Normal: nothing is downloaded
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, 320, 320))
        cls_scores, bbox_preds = model.bbox_head(feats)
    sizes = [20, 10, 5, 3, 2, 1]
    assert [tuple(f.shape) for f in feats] == [
        (1, c, s, s) for c, s in zip((96, 1280, 512, 256, 256, 128), sizes)]
    assert [tuple(c.shape) for c in cls_scores] == [(1, 6 * 81, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(1, 6 * 4, s, s) for s in sizes]


def tiny_ssdlite():
    """The SSDLite config, narrowed: MobileNetV2 x0.25 (layer5: 24 channels; conv2 keeps
    1280), extra levels of 64/32/32/16 channels, 3 classes."""
    cfg = load(SSDLITE).model
    cfg.backbone.widen_factor = 0.25
    channels = (24, 1280, 64, 32, 32, 16)
    cfg.neck.update(in_channels=channels[:2], out_channels=channels)
    cfg.bbox_head.update(in_channels=channels, num_classes=3)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def test_tiny_ssdlite_loss_predict_and_tensor_modes():
    model = tiny_ssdlite()
    inputs, samples = preprocess(model, make_batch(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert len(losses['loss_cls']) == len(losses['loss_bbox']) == 2  # one per image
    assert all(torch.isfinite(v).all() and v > 0 for vs in losses.values() for v in vs)

    model.eval()
    inputs, samples = preprocess(model, make_batch())
    with torch.no_grad():
        cls_scores, bbox_preds = model(inputs, mode='tensor')
        results = model(inputs, samples, mode='predict')
    sizes = [8, 4, 2, 1, 1, 1]  # 128 px: strides 16 and 32, then stride-2 convs with padding
    assert [tuple(c.shape) for c in cls_scores] == [(2, 6 * 4, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 6 * 4, s, s) for s in sizes]
    assert len(results) == 2
    check_detections(results, 3, 128)


@pytest.mark.slow
def test_tiny_ssdlite_a_few_sgd_steps_reduce_the_loss():
    model = tiny_ssdlite()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    data = make_batch()
    # train_step computes the loss before updating, so the first one is the initial loss
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(15)]
    assert all(np.isfinite(losses))
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = total(model(inputs, samples, mode='loss')).item()
    assert after < 0.7 * losses[0]
