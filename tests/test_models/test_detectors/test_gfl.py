"""GFL: mmdetection 3.3's COCO configs (1x and ms-2x) and state_dict layout, the three forward
modes on a tiny model, training.

Expected config values are written from mmdetection's gfl_r50_fpn_1x_coco.py and
gfl_r50_fpn_ms-2x_coco.py; expected keys come from helpers_atss_gfl_keys (mmdetection's module
definitions). The R-50 model is built without ``init_weights`` (its init_cfg would download
torchvision weights).
"""
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses
from helpers_atss_family import (LEVEL_SIZES, assert_single_stage_signature, predict_rescaled,
                                 preprocess, random_checkpoint, tiny_model, train_losses,
                                 two_images)
from helpers_atss_gfl_keys import gfl_r50_fpn_coco
from helpers_state_dict import shapes_of
from mmengine.config import Config
from torchvision.ops import box_iou

from mmdet_lite.models.dense_heads import GFLHead
from mmdet_lite.models.detectors import GFL
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

register_all_modules()

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
COCO_CONFIG = CONFIGS / 'gfl' / 'gfl_r50_fpn_1x_coco.py'
MS_2X_CONFIG = CONFIGS / 'gfl' / 'gfl_r50_fpn_ms-2x_coco.py'

# mmdetection 3.3's gfl_r50_fpn_1x_coco.py, model part.
MMDET_MODEL = dict(
    type='GFL',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=True, style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(
        type='GFLHead', num_classes=80, in_channels=256, stacked_convs=4, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16, 32, 64, 128]),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_dfl=dict(type='DistributionFocalLoss', loss_weight=0.25), reg_max=16,
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                   pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))


def tiny_gfl() -> GFL:
    """The COCO model shrunk (helpers_atss_family.tiny_model): 16x16 anchors on P3,
    distances up to 8 strides."""
    return tiny_model(COCO_CONFIG, reg_max=8)


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


def test_ms_2x_config_has_mmdetection_values():
    cfg = Config.fromfile(str(MS_2X_CONFIG))
    assert cfg.model.to_dict() == MMDET_MODEL
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22],
             gamma=0.1)]
    assert cfg.train_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomResize', scale=[(1333, 480), (1333, 800)], keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')]
    # the test pipeline stays single-scale
    assert cfg.test_dataloader.dataset.pipeline[1] == dict(type='Resize', scale=(1333, 800),
                                                           keep_ratio=True)


@pytest.mark.slow
def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(Config.fromfile(str(COCO_CONFIG)).model)
    expected = gfl_r50_fpn_coco()
    # ResNet-50 318, FPN (3 laterals + 5 outputs) x 2, head 8 x 3 + 2 x 2 + 5 scales + project
    assert len(expected) == 318 + 16 + 34
    assert shapes_of(model) == expected
    # so an mmdetection checkpoint loads strictly, values and all
    state = random_checkpoint(expected)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.gfl_reg.weight, state['bbox_head.gfl_reg.weight'])
    # Integral's project is a saved buffer: it loads like the weights
    assert torch.equal(model.bbox_head.integral.project, state['bbox_head.integral.project'])
    assert model.bbox_head.scales[4].scale.item() == 3.5


def test_signature_and_registry():
    assert_single_stage_signature(GFL)


# ----------------------------------------------------------------------------- forward modes


def test_tensor_loss_and_predict_modes():
    model = tiny_gfl()
    assert isinstance(model.bbox_head, GFLHead)
    assert model.bbox_head.train_cfg.assigner.topk == 9
    inputs, samples = preprocess(model, two_images(), training=True)

    cls_scores, bbox_preds = model(inputs, mode='tensor')
    sizes = LEVEL_SIZES  # 64 px at strides 8..128
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4 * 9, s, s) for s in sizes]

    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_dfl'}
    assert all(len(v) == 5 for v in losses.values())
    assert_finite_losses(losses)


def test_predict_returns_boxes_in_original_image_pixels():
    for pred in predict_rescaled(tiny_gfl()):
        # joint class-quality probabilities, highest first
        assert torch.equal(pred.scores, pred.scores.sort(descending=True)[0])


def top_detections_iou(model, data) -> float:
    """Mean over the gts of their best IoU with the image's 5 top-scoring detections."""
    model.eval()
    inputs, samples = preprocess(model, data)
    with torch.no_grad():
        results = model(inputs, samples, mode='predict')
    model.train()
    ious = [box_iou(sample.gt_instances.bboxes, result.pred_instances.bboxes[:5]).max(1)[0]
            for sample, result in zip(data['data_samples'], results)]
    return torch.cat(ious).mean().item()


@pytest.mark.slow
def test_training_fits_the_boxes_of_two_images():
    # The box losses are weighted by the positives' class scores, which start at ~0.01, so the
    # total loss first grows; what must improve is the detections.
    torch.manual_seed(0)
    model = tiny_gfl()
    data = two_images()
    before = top_detections_iou(model, data)
    losses = train_losses(model, data, steps=40)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * max(losses)
    after = top_detections_iou(model, data)
    assert after > 0.8 and after > before + 0.2
