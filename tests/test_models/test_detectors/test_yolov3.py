"""YOLOv3 (configs/yolo): mmdetection 3.3's config values, state_dict keys and shapes of the
Darknet-53 and MobileNetV2 models, the three forward modes on a small model, overfitting.

Expected values are written from mmdetection's config files; expected keys from
helpers_yolo_keys / helpers_ssd_keys (module definitions). Full-size models are built on the
meta device (structure only: no weights to initialize, nothing downloaded).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers_ssd_keys import mobilenet_v2_keys
from helpers_state_dict import shapes_of
from helpers_yolo_keys import yolov3_d53, yolov3_head, yolov3_neck
from mmengine.config import Config
from mmengine.structures import InstanceData
from torchvision.ops import box_iou

from mmdet_lite.models.detectors import YOLOV3, SingleStageDetector
from mmdet_lite.registry import MODELS, TRANSFORMS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

register_all_modules()

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'yolo'
D53_608 = CONFIGS / 'yolov3_d53_8xb8-ms-608-273e_coco.py'
D53_416 = CONFIGS / 'yolov3_d53_8xb8-ms-416-273e_coco.py'
D53_320 = CONFIGS / 'yolov3_d53_8xb8-320-273e_coco.py'
D53_AMP = CONFIGS / 'yolov3_d53_8xb8-amp-ms-608-273e_coco.py'
MBV2_416 = CONFIGS / 'yolov3_mobilenetv2_8xb24-ms-416-300e_coco.py'
MBV2_320 = CONFIGS / 'yolov3_mobilenetv2_8xb24-320-300e_coco.py'
ALL = [D53_608, D53_416, D53_320, D53_AMP, MBV2_416, MBV2_320]

COCO_ANCHORS = [[(116, 90), (156, 198), (373, 326)], [(30, 61), (62, 45), (59, 119)],
                [(10, 13), (16, 30), (33, 23)]]
BCE_SUM = dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0, reduction='sum')


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


def expected_head(in_channels, out_channels, anchors=COCO_ANCHORS) -> dict:
    return dict(
        type='YOLOV3Head', num_classes=80, in_channels=in_channels, out_channels=out_channels,
        anchor_generator=dict(type='YOLOAnchorGenerator', base_sizes=anchors,
                              strides=[32, 16, 8]),
        bbox_coder=dict(type='YOLOBBoxCoder'), featmap_strides=[32, 16, 8],
        loss_cls=BCE_SUM, loss_conf=BCE_SUM, loss_xy=dict(BCE_SUM, loss_weight=2.0),
        loss_wh=dict(type='MSELoss', loss_weight=2.0, reduction='sum'))


TRAIN_CFG = dict(assigner=dict(type='GridAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                               min_pos_iou=0))
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, conf_thr=0.005,
                nms=dict(type='nms', iou_threshold=0.45), max_per_img=100)
MINIOU_CROP = dict(type='MinIoURandomCrop', min_ious=(0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                   min_crop_size=0.3)
PACK_TEST = dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))


def train_pipeline(resize, mean):
    return [dict(type='LoadImageFromFile', backend_args=None),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Expand', mean=mean, to_rgb=True, ratio_range=(1, 2)), MINIOU_CROP,
            resize, dict(type='RandomFlip', prob=0.5), dict(type='PhotoMetricDistortion'),
            dict(type='PackDetInputs')]


def eval_pipeline(scale):
    return [dict(type='LoadImageFromFile', backend_args=None),
            dict(type='Resize', scale=scale, keep_ratio=True),
            dict(type='LoadAnnotations', with_bbox=True), PACK_TEST]


# ----------------------------------------------------------------------------- configs


def test_d53_configs_have_mmdetection_values():
    cfg = load(D53_608)
    model = cfg.model
    assert model.type == 'YOLOV3'
    assert model.data_preprocessor == dict(type='DetDataPreprocessor', mean=[0, 0, 0],
                                           std=[255., 255., 255.], bgr_to_rgb=True,
                                           pad_size_divisor=32)
    assert model.backbone == dict(type='Darknet', depth=53, out_indices=(3, 4, 5),
                                  init_cfg=dict(type='Pretrained',
                                                checkpoint='open-mmlab://darknet53'))
    assert model.neck == dict(type='YOLOV3Neck', num_scales=3, in_channels=[1024, 512, 256],
                              out_channels=[512, 256, 128])
    assert model.bbox_head == expected_head([512, 256, 128], [1024, 512, 256])
    assert model.train_cfg == TRAIN_CFG and model.test_cfg == TEST_CFG

    ms_608 = dict(type='RandomResize', scale=[(320, 320), (608, 608)], keep_ratio=True)
    assert cfg.train_dataloader.dataset.pipeline == train_pipeline(ms_608, [0, 0, 0])
    assert cfg.test_dataloader.dataset.pipeline == eval_pipeline((608, 608))
    assert cfg.train_dataloader.batch_size == 8 and cfg.train_dataloader.num_workers == 4
    assert cfg.train_dataloader.batch_sampler == dict(type='AspectRatioBatchSampler')
    assert cfg.train_dataloader.dataset.filter_cfg == dict(filter_empty_gt=True, min_size=32)
    assert cfg.val_dataloader.batch_size == 1
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=273, val_interval=7)
    assert cfg.optim_wrapper == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.001, momentum=0.9, weight_decay=0.0005),
        clip_grad=dict(max_norm=35, norm_type=2))
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2000),
        dict(type='MultiStepLR', by_epoch=True, milestones=[218, 246], gamma=0.1)]
    assert cfg.default_hooks.checkpoint == dict(type='CheckpointHook', interval=7)
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=64)

    ms_416 = dict(type='RandomResize', scale=[(320, 320), (416, 416)], keep_ratio=True)
    cfg = load(D53_416)
    assert cfg.model == model
    assert cfg.train_dataloader.dataset.pipeline == train_pipeline(ms_416, [0, 0, 0])
    assert cfg.test_dataloader.dataset.pipeline == eval_pipeline((416, 416))
    cfg = load(D53_320)
    assert cfg.model == model
    resize_320 = dict(type='Resize', scale=(320, 320), keep_ratio=True)
    assert cfg.train_dataloader.dataset.pipeline == train_pipeline(resize_320, [0, 0, 0])
    assert cfg.val_dataloader.dataset.pipeline == eval_pipeline((320, 320))
    cfg = load(D53_AMP)
    assert cfg.model == model
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_mobilenetv2_configs_have_mmdetection_values():
    cfg = load(MBV2_416)
    model = cfg.model
    imagenet = [123.675, 116.28, 103.53]
    assert model.data_preprocessor == dict(type='DetDataPreprocessor', mean=imagenet,
                                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                                           pad_size_divisor=32)
    assert model.backbone == dict(
        type='MobileNetV2', out_indices=(2, 4, 6),
        act_cfg=dict(type='LeakyReLU', negative_slope=0.1),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://mmdet/mobilenet_v2'))
    assert model.neck == dict(type='YOLOV3Neck', num_scales=3, in_channels=[320, 96, 32],
                              out_channels=[96, 96, 96])
    assert model.bbox_head == expected_head([96, 96, 96], [96, 96, 96])
    assert model.train_cfg == TRAIN_CFG and model.test_cfg == TEST_CFG
    ms_416 = dict(type='RandomResize', scale=[(320, 320), (416, 416)], keep_ratio=True)
    train = cfg.train_dataloader
    assert train.batch_size == 24
    assert train.dataset.type == 'RepeatDataset' and train.dataset.times == 10
    assert train.dataset.dataset.pipeline == train_pipeline(ms_416, imagenet)
    assert cfg.val_dataloader.batch_size == 24
    assert cfg.test_dataloader.dataset.pipeline == eval_pipeline((416, 416))
    assert cfg.train_cfg.max_epochs == 30
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.003, momentum=0.9,
                                               weight_decay=0.0005)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.0001, by_epoch=False, begin=0, end=4000),
        dict(type='MultiStepLR', by_epoch=True, milestones=[24, 28], gamma=0.1)]
    assert cfg.find_unused_parameters is True
    assert cfg.auto_scale_lr.base_batch_size == 192

    cfg = load(MBV2_320)
    assert cfg.model.bbox_head.anchor_generator.base_sizes == [
        [(220, 125), (128, 222), (264, 266)], [(35, 87), (102, 96), (60, 170)],
        [(10, 15), (24, 36), (72, 42)]]
    assert cfg.model.backbone == model.backbone and cfg.model.neck == model.neck
    resize_320 = dict(type='Resize', scale=(320, 320), keep_ratio=True)
    assert cfg.train_dataloader.dataset.dataset.pipeline == train_pipeline(resize_320, imagenet)
    assert cfg.val_dataloader.dataset.pipeline == eval_pipeline((320, 320))


@pytest.mark.parametrize('path', ALL, ids=lambda p: p.name)
def test_every_config_builds_its_pipelines(path):
    cfg = load(path)
    train = cfg.train_dataloader.dataset
    train = train.get('dataset', train)
    for step in train.pipeline + cfg.test_dataloader.dataset.pipeline:
        TRANSFORMS.build(step)


# ----------------------------------------------------------------------------- weights


def test_d53_state_dict_keys_and_shapes_match_mmdetection():
    with torch.device('meta'):
        model = MODELS.build(load(D53_608).model)
    assert type(model) is YOLOV3 and isinstance(model, SingleStageDetector)
    expected = yolov3_d53()
    assert shapes_of(model) == expected
    # backbone; neck: 3 blocks of 5 ConvModules + 2 ConvModules; head: 3 bridges + 3 preds
    assert len(expected) == 312 + (3 * 5 + 2) * 6 + 3 * (6 + 2)


def test_mobilenetv2_state_dict_keys_and_shapes_match_mmdetection():
    model = MODELS.build(load(MBV2_320).model)  # no init_weights: nothing is downloaded
    expected = {**mobilenet_v2_keys('backbone'),
                **yolov3_neck('neck', [320, 96, 32], [96, 96, 96]),
                **yolov3_head('bbox_head', [96, 96, 96], [96, 96, 96])}
    assert shapes_of(model) == expected
    checkpoint = {k: torch.rand(s) if s else torch.tensor(3) for k, s in expected.items()}
    model.load_state_dict(checkpoint, strict=True)
    assert torch.equal(model.bbox_head.convs_pred[2].bias,
                       checkpoint['bbox_head.convs_pred.2.bias'])


# ----------------------------------------------------------------------------- modes


def tiny_yolov3(num_classes: int = 3) -> YOLOV3:
    """The MobileNetV2 config at half width (stage outputs 16/48/160) with a 24-channel neck
    and head and 3 classes; every score kept at test time."""
    cfg = load(MBV2_416).model
    cfg.backbone.update(widen_factor=0.5, init_cfg=None)
    cfg.neck.update(in_channels=[160, 48, 16], out_channels=[24, 24, 24])
    cfg.bbox_head.update(num_classes=num_classes, in_channels=[24, 24, 24],
                         out_channels=[24, 24, 24])
    cfg.test_cfg.update(score_thr=0.0, conf_thr=-1)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def make_sample(boxes, labels, img_shape=(64, 64), scale_factor=(1.0, 1.0)) -> DetDataSample:
    sample = DetDataSample(metainfo=dict(img_shape=img_shape, pad_shape=img_shape,
                                         batch_input_shape=img_shape, ori_shape=img_shape,
                                         scale_factor=scale_factor))
    sample.gt_instances = InstanceData(
        bboxes=torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.as_tensor(labels, dtype=torch.long))
    return sample


def test_signature_matches_mmdetection():
    params = inspect.signature(YOLOV3).parameters
    assert list(params) == ['backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert all(params[k].default is inspect.Parameter.empty
               for k in ('backbone', 'neck', 'bbox_head'))


def test_tensor_loss_and_predict_modes():
    torch.manual_seed(0)
    model = tiny_yolov3()
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    samples = [make_sample([[8., 10., 40., 50.]], [1]), make_sample([], [])]
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), True)

    outs = model(data['inputs'], data['data_samples'], mode='tensor')
    assert len(outs) == 1
    assert [tuple(m.shape) for m in outs[0]] == [(2, 24, 2, 2), (2, 24, 4, 4), (2, 24, 8, 8)]

    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == {'loss_cls', 'loss_conf', 'loss_xy', 'loss_wh'}
    assert all(len(v) == 3 and all(torch.isfinite(x) for x in v) for v in losses.values())

    model.eval()
    with torch.no_grad():
        results = model(data['inputs'], data['data_samples'], mode='predict')
    assert len(results) == 2 and isinstance(results[0], DetDataSample)
    pred = results[0].pred_instances
    assert pred.bboxes.shape[1] == 4 and 0 < len(pred) <= 100
    assert pred.scores.shape == pred.labels.shape == (len(pred), )
    assert torch.all(pred.scores[:-1] >= pred.scores[1:])


@pytest.mark.slow
def test_overfits_one_image():
    torch.manual_seed(0)
    model = tiny_yolov3()
    image = torch.full((1, 3, 64, 64), 114, dtype=torch.uint8)
    image[:, :, 16:48, 12:44] = torch.tensor([20, 200, 60], dtype=torch.uint8).view(1, 3, 1, 1)
    gt_box = torch.tensor([[12., 16., 44., 48.]])
    data = model.data_preprocessor(
        dict(inputs=list(image), data_samples=[make_sample(gt_box, [2])]), True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(40):
        losses = model(data['inputs'], data['data_samples'], mode='loss')
        total = sum(sum(v) for v in losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.25 * totals[0], totals
    with torch.no_grad():  # still in train mode: BN statistics of this one image
        pred = model(data['inputs'], copy.deepcopy(data['data_samples']),
                     mode='predict')[0].pred_instances
    best = pred.scores.argmax()
    assert pred.labels[best] == 2
    assert box_iou(pred.bboxes[best:best + 1], gt_box).item() > 0.5


@pytest.mark.slow
def test_d53_model_runs_loss_and_predict_on_a_small_image():
    """The full COCO model (Darknet-53, 80 classes) on 64x64 images, weights as built (the
    backbone's init_cfg would download)."""
    torch.manual_seed(0)
    model = MODELS.build(load(D53_608).model)
    model.bbox_head.init_weights()
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    samples = [make_sample([[8., 10., 40., 50.]], [7]), make_sample([[0., 0., 64., 30.]], [0])]
    data = model.data_preprocessor(dict(inputs=list(images), data_samples=samples), True)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert all(len(v) == 3 and all(torch.isfinite(x) for x in v) for v in losses.values())
    assert sum(losses['loss_xy']) > 0 and sum(losses['loss_cls']) > 0
    model.eval()
    with torch.no_grad():
        results = model(data['inputs'], data['data_samples'], mode='predict')
    assert [type(r) for r in results] == [DetDataSample, DetDataSample]
    assert all(r.pred_instances.bboxes.shape[1:] == (4, ) for r in results)
