"""ATSS: mmdetection 3.3's COCO config and state_dict layout, the three forward modes on a tiny
model, training, and the shapes config.

Expected config values are written from mmdetection's atss_r50_fpn_1x_coco.py; expected keys
come from helpers_atss_gfl_keys (mmdetection's module definitions). The R-50 model is built
without ``init_weights`` (its init_cfg would download torchvision weights).
"""
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, init_weights_quietly
from helpers_atss_family import (LEVEL_SIZES, assert_single_stage_signature, predict_rescaled,
                                 preprocess, random_checkpoint, tiny_model, train_losses,
                                 two_images)
from helpers_atss_gfl_keys import atss_r50_fpn_coco
from helpers_state_dict import shapes_of
from mmengine.config import Config

from mmdet_lite.models.dense_heads import ATSSHead
from mmdet_lite.models.detectors import ATSS
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

register_all_modules()

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
COCO_CONFIG = CONFIGS / 'atss' / 'atss_r50_fpn_1x_coco.py'
SHAPES_CONFIG = CONFIGS / 'shapes' / 'atss_r18_fpn_shapes.py'

# mmdetection 3.3's atss_r50_fpn_1x_coco.py, model part.
MMDET_MODEL = dict(
    type='ATSS',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=True, style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(
        type='ATSSHead', num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                   pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))


def tiny_atss() -> ATSS:
    """The COCO model shrunk (helpers_atss_family.tiny_model): 16x16 anchors on P3."""
    return tiny_model(COCO_CONFIG)


# ----------------------------------------------------------------------------- config / keys


def test_coco_config_has_mmdetection_values():
    cfg = Config.fromfile(str(COCO_CONFIG))
    assert cfg.model.to_dict() == MMDET_MODEL
    assert cfg.optim_wrapper == dict(type='OptimWrapper',
                                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                                    weight_decay=0.0001))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'


@pytest.mark.slow
def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(Config.fromfile(str(COCO_CONFIG)).model)
    expected = atss_r50_fpn_coco()
    # ResNet-50 318, FPN (3 laterals + 5 outputs) x 2, head 8 x 3 + 3 x 2 + 5 scales
    assert len(expected) == 318 + 16 + 35
    assert shapes_of(model) == expected
    # so an mmdetection checkpoint loads strictly, values and all
    state = random_checkpoint(expected)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.atss_centerness.weight,
                       state['bbox_head.atss_centerness.weight'])
    assert model.bbox_head.scales[4].scale.item() == 3.5


def test_signature_and_registry():
    assert_single_stage_signature(ATSS)


# ----------------------------------------------------------------------------- forward modes


def test_tensor_loss_and_predict_modes():
    model = tiny_atss()
    assert isinstance(model.bbox_head, ATSSHead)
    assert model.bbox_head.train_cfg.assigner.topk == 9
    inputs, samples = preprocess(model, two_images(), training=True)

    cls_scores, bbox_preds, centernesses = model(inputs, mode='tensor')
    sizes = LEVEL_SIZES  # 64 px at strides 8..128
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, s, s) for s in sizes]
    assert [tuple(c.shape) for c in centernesses] == [(2, 1, s, s) for s in sizes]

    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    assert all(len(v) == 5 for v in losses.values())
    assert_finite_losses(losses)


def test_predict_returns_boxes_in_original_image_pixels():
    for pred in predict_rescaled(tiny_atss()):
        # class probability x centerness probability, highest first
        assert torch.equal(pred.scores, pred.scores.sort(descending=True)[0])


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    losses = train_losses(tiny_atss(), two_images(), steps=15)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]


def test_shapes_config_builds_and_runs_one_loss_forward():
    cfg = Config.fromfile(str(SHAPES_CONFIG))
    assert cfg.train_dataloader.dataset.type == 'ShapesDataset'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.train_cfg.max_epochs == 24
    head_cfg = cfg.model.bbox_head
    assert head_cfg.anchor_generator.octave_base_scale == 4  # 32 px anchors on P3
    assert 'init_cfg' not in cfg.model.backbone  # from scratch, nothing is downloaded
    model = MODELS.build(cfg.model)
    assert model.backbone.frozen_stages == -1 and model.backbone.norm_eval is False
    shapes = shapes_of(model)
    assert shapes['neck.fpn_convs.3.conv.weight'] == (64, 64, 3, 3)  # P6 on P5
    assert shapes['bbox_head.cls_convs.0.gn.weight'] == (64, )
    assert shapes['bbox_head.atss_cls.weight'] == (3, 64, 3, 3)
    init_weights_quietly(model)
    inputs, samples = preprocess(model, two_images(img_shape=(96, 96)), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    assert_finite_losses(losses)
    assert sum(losses['loss_bbox']) > 0  # the gts found positives
