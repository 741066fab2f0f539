"""YOLOF (configs/yolof): mmdetection 3.3's config values, state_dict keys and shapes, the
three forward modes on a small model, overfitting.

Expected values are written from mmdetection's config files; expected keys from
helpers_detr_keys.resnet50 and helpers_yolo_keys (module definitions). The full-size model
is built on the meta device (structure only: nothing initialized or downloaded).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers_detr_keys import resnet50
from helpers_state_dict import shapes_of
from helpers_yolo_keys import dilated_encoder, yolof_head
from mmengine.config import Config
from mmengine.structures import InstanceData
from torchvision.ops import box_iou

from mmdet_lite.models.detectors import YOLOF, SingleStageDetector
from mmdet_lite.registry import MODELS, TRANSFORMS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

register_all_modules()

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'yolof'
EPOCH_1X = CONFIGS / 'yolof_r50-c5_8xb8-1x_coco.py'
ITER_1X = CONFIGS / 'yolof_r50-c5_8xb8-iter-1x_coco.py'


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


# ----------------------------------------------------------------------------- configs


def test_config_has_mmdetection_values():
    cfg = load(EPOCH_1X)
    model = cfg.model
    assert model.type == 'YOLOF'
    assert model.data_preprocessor == dict(type='DetDataPreprocessor',
                                           mean=[103.530, 116.280, 123.675],
                                           std=[1.0, 1.0, 1.0], bgr_to_rgb=False,
                                           pad_size_divisor=32)
    assert model.backbone == dict(
        type='ResNet', depth=50, num_stages=4, out_indices=(3, ), frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False), norm_eval=True, style='caffe',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron/resnet50_caffe'))
    assert model.neck == dict(type='DilatedEncoder', in_channels=2048, out_channels=512,
                              block_mid_channels=128, num_residual_blocks=4,
                              block_dilations=[2, 4, 6, 8])
    assert model.bbox_head == dict(
        type='YOLOFHead', num_classes=80, in_channels=512, reg_decoded_bbox=True,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], scales=[1, 2, 4, 8, 16],
                              strides=[32]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1., 1., 1., 1.], add_ctr_clamp=True, ctr_clamp=32),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0))
    assert model.train_cfg == dict(
        assigner=dict(type='UniformAssigner', pos_ignore_thr=0.15, neg_ignore_thr=0.7),
        allowed_border=-1, pos_weight=-1, debug=False)
    assert model.test_cfg == dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)

    assert cfg.optim_wrapper == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.12, momentum=0.9, weight_decay=0.0001),
        paramwise_cfg=dict(norm_decay_mult=0., custom_keys={'backbone': dict(lr_mult=1. / 3)}))
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.00066667, by_epoch=False, begin=0, end=1500),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.train_dataloader.batch_size == 8 and cfg.train_dataloader.num_workers == 8
    assert cfg.train_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='RandomShift', prob=0.5, max_shift_px=32),
        dict(type='PackDetInputs')]
    assert cfg.test_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='Resize', scale=(1333, 800), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=64)
    for step in cfg.train_dataloader.dataset.pipeline + cfg.test_dataloader.dataset.pipeline:
        TRANSFORMS.build(step)


def test_iter_config_has_mmdetection_values():
    cfg = load(ITER_1X)
    assert cfg.model == load(EPOCH_1X).model
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=22500, val_interval=4500)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=22500, by_epoch=False,
             milestones=[15000, 20000], gamma=0.1)]
    assert cfg.train_dataloader.sampler == dict(type='InfiniteSampler', shuffle=True)
    assert cfg.default_hooks.checkpoint == dict(type='CheckpointHook', by_epoch=False,
                                                interval=2500)
    assert cfg.log_processor.by_epoch is False


# ----------------------------------------------------------------------------- weights


def test_state_dict_keys_and_shapes_match_mmdetection():
    with torch.device('meta'):
        model = MODELS.build(load(EPOCH_1X).model)
    assert type(model) is YOLOF and isinstance(model, SingleStageDetector)
    # ResNet-50 keys are the same in caffe style (only the stride moves to the 1x1 conv).
    expected = {**resnet50('backbone'), **dilated_encoder('neck'),
                **yolof_head('bbox_head', in_c=512, num_classes=80, num_anchors=5)}
    assert shapes_of(model) == expected


# ----------------------------------------------------------------------------- modes


def tiny_yolof(num_classes: int = 3) -> YOLOF:
    """The COCO model with a ResNet-18 of 16 base channels (C5: 128 channels) trained from
    scratch, a 32-channel encoder and head, 3 classes; every score kept at test time."""
    cfg = load(EPOCH_1X).model
    cfg.backbone = dict(type='ResNet', depth=18, base_channels=16, num_stages=4,
                        out_indices=(3, ), frozen_stages=-1, norm_eval=False, style='caffe')
    cfg.neck.update(in_channels=128, out_channels=32, block_mid_channels=8)
    cfg.bbox_head.update(num_classes=num_classes, in_channels=32)
    cfg.test_cfg.score_thr = 0.0
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def make_sample(boxes, labels, img_shape=(64, 64)) -> DetDataSample:
    sample = DetDataSample(metainfo=dict(img_shape=img_shape, pad_shape=img_shape,
                                         batch_input_shape=img_shape, ori_shape=img_shape,
                                         scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(
        bboxes=torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.as_tensor(labels, dtype=torch.long))
    return sample


def test_signature_matches_mmdetection():
    params = inspect.signature(YOLOF).parameters
    assert list(params) == ['backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']


def test_tensor_loss_and_predict_modes():
    torch.manual_seed(0)
    model = tiny_yolof()
    images = torch.randint(0, 255, (2, 3, 64, 96), dtype=torch.uint8)
    samples = [make_sample([[8., 10., 40., 50.]], [1], (64, 96)),
               make_sample([], [], (64, 96))]
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), True)

    cls_scores, bbox_preds = model(data['inputs'], data['data_samples'], mode='tensor')
    assert [tuple(c.shape) for c in cls_scores] == [(2, 5 * 3, 2, 3)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 5 * 4, 2, 3)]

    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert losses['loss_cls'].dim() == 0 and torch.isfinite(losses['loss_cls'])
    assert losses['loss_bbox'] > 0

    model.eval()
    with torch.no_grad():
        results = model(data['inputs'], data['data_samples'], mode='predict')
    assert len(results) == 2 and isinstance(results[0], DetDataSample)
    pred = results[0].pred_instances
    assert pred.bboxes.shape == (len(pred), 4) and 0 < len(pred) <= 100
    assert pred.scores.shape == pred.labels.shape == (len(pred), )


@pytest.mark.slow
def test_overfits_one_image():
    torch.manual_seed(0)
    model = tiny_yolof()
    image = torch.full((1, 3, 64, 64), 114, dtype=torch.uint8)
    image[:, :, 16:48, 12:44] = torch.tensor([20, 200, 60], dtype=torch.uint8).view(1, 3, 1, 1)
    gt_box = torch.tensor([[12., 16., 44., 48.]])
    data = model.data_preprocessor(
        dict(inputs=list(image), data_samples=[make_sample(gt_box, [2])]), True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(40):
        losses = model(data['inputs'], data['data_samples'], mode='loss')
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.3 * totals[0], totals
    with torch.no_grad():  # still in train mode: BN statistics of this one image
        pred = model(data['inputs'], copy.deepcopy(data['data_samples']),
                     mode='predict')[0].pred_instances
    best = pred.scores.argmax()
    assert pred.labels[best] == 2
    assert box_iou(pred.bboxes[best:best + 1], gt_box).item() > 0.5
