"""PAA: mmdetection 3.3's COCO configs and state_dict layout, the three forward modes on a tiny
model, and a few training steps.

Expected config values are written from mmdetection's configs/paa/*.py; expected keys come
from helpers_atss_gfl_keys (PAAHead adds no layer to ATSSHead's: mmdetection's definitions
give the same keys as atss_r50_fpn_1x_coco). The R-50 model is built without
``init_weights`` (its init_cfg would download torchvision weights).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, init_weights_quietly, make_batch, make_det_sample
from helpers_atss_gfl_keys import atss_r50_fpn_coco
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_lite.models.dense_heads import PAAHead
from mmdet_lite.models.detectors import PAA, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

register_all_modules()

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'paa'
COCO_CONFIG = CONFIGS / 'paa_r50_fpn_1x_coco.py'

# mmdetection 3.3's paa_r50_fpn_1x_coco.py, model part.
MMDET_MODEL = dict(
    type='PAA',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=True, style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(
        type='PAAHead', reg_decoded_bbox=True, score_voting=True, topk=9, num_classes=80,
        in_channels=256, stacked_convs=4, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.3),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.5)),
    train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1,
                                 min_pos_iou=0, ignore_iof_thr=-1),
                   allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))


def tiny_paa() -> PAA:
    """The COCO model shrunk: ResNet-18 with 16 base channels, 32-channel neck and head
    (GN with 32 groups), 2 convs per tower, 3 classes, 16x16 anchors on P3."""
    cfg = Config.fromfile(str(COCO_CONFIG)).model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False,
                        init_cfg=None)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2)
    cfg.bbox_head.anchor_generator.octave_base_scale = 2
    cfg.test_cfg.score_thr = 0.0  # keep detections of the untrained model
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def batch(img_shape=(64, 64), scale_factor=(1.0, 1.0)):
    ori_shape = tuple(round(s / f) for s, f in zip(img_shape, scale_factor[::-1]))
    return make_batch([
        make_det_sample([[8, 8, 40, 40]], [0], img_shape=img_shape, ori_shape=ori_shape,
                        scale_factor=scale_factor),
        make_det_sample([[4, 24, 36, 60], [40, 4, 60, 20]], [2, 1], img_shape=img_shape,
                        ori_shape=ori_shape, scale_factor=scale_factor)])


def preprocess(model, data, training=False):
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


# ----------------------------------------------------------------------------- configs / keys


def test_coco_config_has_mmdetection_values():
    cfg = Config.fromfile(str(COCO_CONFIG))
    assert cfg.model.to_dict() == MMDET_MODEL
    assert cfg.optim_wrapper == dict(type='OptimWrapper',
                                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                                    weight_decay=0.0001))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'


@pytest.mark.parametrize('name, depth, max_epochs, milestones', [
    ('paa_r50_fpn_1.5x_coco.py', 50, 18, [12, 16]),
    ('paa_r50_fpn_2x_coco.py', 50, 24, [16, 22]),
    ('paa_r50_fpn_ms-3x_coco.py', 50, 36, [28, 34]),
    ('paa_r101_fpn_1x_coco.py', 101, 12, [8, 11]),
    ('paa_r101_fpn_2x_coco.py', 101, 24, [16, 22]),
    ('paa_r101_fpn_ms-3x_coco.py', 101, 36, [28, 34]),
])
def test_schedule_and_depth_variants(name, depth, max_epochs, milestones):
    cfg = Config.fromfile(str(CONFIGS / name))
    assert cfg.model.backbone.depth == depth
    assert cfg.model.backbone.init_cfg.checkpoint == f'torchvision://resnet{depth}'
    assert cfg.train_cfg.max_epochs == max_epochs
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
             milestones=milestones, gamma=0.1)]
    pipeline = cfg.train_dataloader.dataset.pipeline
    resize = [t for t in pipeline if 'Resize' in t.type]
    if 'ms-3x' in name:
        assert resize == [dict(type='RandomResize', scale=[(1333, 640), (1333, 800)],
                               keep_ratio=True)]
        assert pipeline[0] == dict(type='LoadImageFromFile', backend_args=None)
    else:
        assert resize == [dict(type='Resize', scale=(1333, 800), keep_ratio=True)]
    # the head is the 1x config's
    assert cfg.model.bbox_head == MMDET_MODEL['bbox_head']


@pytest.mark.slow
def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(Config.fromfile(str(COCO_CONFIG)).model)
    expected = atss_r50_fpn_coco()
    # ResNet-50 318, FPN (3 laterals + 5 outputs) x 2, head 8 x 3 + 3 x 2 + 5 scales
    assert len(expected) == 318 + 16 + 35
    assert shapes_of(model) == expected
    # so an mmdetection checkpoint loads strictly, values and all
    state = {k: torch.rand(shape) if shape else torch.tensor(3.5)
             for k, shape in expected.items() if not k.endswith('num_batches_tracked')}
    state.update({k: torch.tensor(7) for k in expected if k.endswith('num_batches_tracked')})
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.atss_centerness.weight,
                       state['bbox_head.atss_centerness.weight'])


def test_signature_and_registry():
    params = inspect.signature(PAA.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert all(params[name].default is None for name in list(params)[4:])
    assert params['neck'].default is inspect.Parameter.empty
    assert MODELS.get('PAA') is PAA and issubclass(PAA, SingleStageDetector)


# ----------------------------------------------------------------------------- forward modes


def test_tensor_and_loss_modes():
    model = tiny_paa()
    assert isinstance(model.bbox_head, PAAHead) and model.bbox_head.topk == 9
    inputs, samples = preprocess(model, batch(), training=True)

    cls_scores, bbox_preds, iou_preds = model(inputs, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px at strides 8..128
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, s, s) for s in sizes]
    assert [tuple(c.shape) for c in iou_preds] == [(2, 1, s, s) for s in sizes]

    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_iou'}
    assert all(v.dim() == 0 for v in losses.values())
    assert_finite_losses(losses)
    assert losses['loss_bbox'] > 0 and losses['loss_iou'] > 0  # the gts kept positives


def test_predict_returns_voted_boxes_in_original_image_pixels():
    model = tiny_paa().eval()
    # 64x64 inputs resized from 32x32 originals
    inputs, samples = preprocess(model, batch(scale_factor=(2.0, 2.0)))
    with torch.no_grad():
        in_input = [s.pred_instances.clone() for s in model.predict(
            inputs, copy.deepcopy(samples), rescale=False)]
        results = model(inputs, samples, mode='predict')
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result, resized in zip(results, in_input):
        pred = result.pred_instances
        assert 0 < len(pred) <= 100 and pred.bboxes.shape == (len(pred), 4)
        assert pred.labels.dtype == torch.long and torch.all(pred.labels < 3)
        # sqrt(class probability x IoU probability)
        assert torch.all((pred.scores > 0) & (pred.scores < 1))
        # score voting groups the detections by class
        assert torch.equal(pred.labels, pred.labels.sort()[0])
        assert torch.allclose(pred.bboxes, resized.bboxes / 2, atol=1e-4)
        assert pred.bboxes.max() <= 32 + 1e-4


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = tiny_paa()
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=2e-3))
    data = batch()
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]
