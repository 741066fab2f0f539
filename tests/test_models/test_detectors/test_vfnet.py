"""VFNet: mmdetection 3.3's COCO config and state_dict layout, the three forward modes on a tiny
model, training.

Expected config values are written from mmdetection's vfnet_r50_fpn_1x_coco.py; expected
keys come from helpers_tood_vfnet_keys (mmdetection's module definitions). The R-50 model is
built without ``init_weights`` (its init_cfg would download torchvision weights).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, init_weights_quietly, make_batch, make_det_sample
from helpers_state_dict import shapes_of
from helpers_tood_vfnet_keys import vfnet_r50_fpn_coco
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from torchvision.ops import box_iou

from mmdet_lite.models.dense_heads import VFNetHead
from mmdet_lite.models.detectors import VFNet, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

register_all_modules()

COCO_CONFIG = Path(__file__).resolve().parents[3] / 'configs' / 'vfnet' / \
    'vfnet_r50_fpn_1x_coco.py'

# mmdetection 3.3's vfnet_r50_fpn_1x_coco.py, model part.
MMDET_MODEL = dict(
    type='VFNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=True, style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5,
              relu_before_extra_convs=True),
    bbox_head=dict(
        type='VFNetHead', num_classes=80, in_channels=256, stacked_convs=3, feat_channels=256,
        strides=[8, 16, 32, 64, 128], center_sampling=False, dcn_on_last_conv=False,
        use_atss=True, use_vfl=True,
        loss_cls=dict(type='VarifocalLoss', use_sigmoid=True, alpha=0.75, gamma=2.0,
                      iou_weighted=True, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.5),
        loss_bbox_refine=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1,
                   pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))

# mmdetection's pipelines of the config (those of coco_detection.py, written out again)
MMDET_TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
MMDET_TEST_PIPELINE = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]


def tiny_vfnet() -> VFNet:
    """The COCO model shrunk: ResNet-18 with 16 base channels, 32-channel neck and head
    (GN with 32 groups), 1 conv per tower, 3 classes, 16x16 ATSS anchors on P3."""
    cfg = Config.fromfile(str(COCO_CONFIG)).model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False,
                        init_cfg=None)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=1,
                         anchor_generator=dict(type='AnchorGenerator', ratios=[1.0],
                                               octave_base_scale=2, scales_per_octave=1,
                                               center_offset=0.0,
                                               strides=[8, 16, 32, 64, 128]))
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


# ----------------------------------------------------------------------------- config / keys


def test_coco_config_has_mmdetection_values():
    cfg = Config.fromfile(str(COCO_CONFIG))
    assert cfg.model.to_dict() == MMDET_MODEL
    assert cfg.train_pipeline == MMDET_TRAIN_PIPELINE
    assert cfg.train_dataloader.dataset.pipeline == MMDET_TRAIN_PIPELINE
    assert cfg.val_dataloader.dataset.pipeline == MMDET_TEST_PIPELINE
    assert cfg.test_dataloader.dataset.pipeline == MMDET_TEST_PIPELINE
    assert cfg.optim_wrapper == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
        paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.), clip_grad=None)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)


@pytest.mark.slow
def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(Config.fromfile(str(COCO_CONFIG)).model)
    expected = vfnet_r50_fpn_coco()
    # ResNet-50 318, FPN 16; head: 2 towers x 3 convs x 3, vfnet_reg_conv 3, vfnet_reg 2,
    # 5 scales, reg refine dconv 1 + conv 2, 5 refine scales, cls dconv 1 + conv 2
    assert len(expected) == 318 + 16 + 18 + 3 + 2 + 5 + 3 + 5 + 3
    assert shapes_of(model) == expected
    # so an mmdetection checkpoint loads strictly, values and all
    state = {k: torch.rand(shape) if shape else torch.tensor(3.5)
             for k, shape in expected.items() if not k.endswith('num_batches_tracked')}
    state.update({k: torch.tensor(7) for k in expected if k.endswith('num_batches_tracked')})
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.vfnet_cls_dconv.weight,
                       state['bbox_head.vfnet_cls_dconv.weight'])
    assert model.bbox_head.scales_refine[4].scale.item() == 3.5


def test_signature_and_registry():
    params = inspect.signature(VFNet.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert params['neck'].default is inspect.Parameter.empty
    assert MODELS.get('VFNet') is VFNet and issubclass(VFNet, SingleStageDetector)


# ----------------------------------------------------------------------------- forward modes


def test_tensor_loss_and_predict_modes():
    model = tiny_vfnet()
    assert isinstance(model.bbox_head, VFNetHead)
    inputs, samples = preprocess(model, batch(), training=True)

    cls_scores, bbox_preds, bbox_preds_refine = model(inputs, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px at strides 8..128
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds_refine] == [(2, 4, s, s) for s in sizes]

    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_bbox_rf'}
    assert_finite_losses(losses)
    assert losses['loss_bbox'] > 0 and losses['loss_bbox_rf'] > 0  # positives were found

    model.eval()
    assert len(model(inputs, mode='tensor')) == 2  # scores and refined boxes only
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
        assert torch.all((pred.scores > 0) & (pred.scores < 1))
        assert torch.equal(pred.scores, pred.scores.sort(descending=True)[0])
        assert torch.allclose(pred.bboxes, resized.bboxes / 2, atol=1e-4)
        assert pred.bboxes.max() <= 32 + 1e-4  # clipped to the image


def best_detection_ious(model, data):
    """For each gt, the IoU of the highest-scoring detection of its class."""
    model.eval()
    with torch.no_grad():
        results = model.predict(*preprocess(model, data))
    model.train()
    ious = []
    for result, sample in zip(results, data['data_samples']):
        pred = result.pred_instances
        for box, label in zip(sample.gt_instances.bboxes, sample.gt_instances.labels):
            of_class = pred.labels == label
            best = pred.bboxes[of_class][pred.scores[of_class].argmax()]
            ious.append(box_iou(best[None], box[None]).item())
    return torch.tensor(ious)


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss_and_rank_good_boxes_first():
    torch.manual_seed(0)
    model = tiny_vfnet()
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=2e-3))
    data = batch()
    assert not (best_detection_ious(model, data) > 0.5).all()
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(20)]
    assert all(torch.isfinite(torch.tensor(losses)))
    # The box losses are weighted by the boxes' IoUs and the class targets are those IoUs:
    # from near-zero IoUs the loss first rises, then falls.
    assert sum(losses[-3:]) / 3 < 0.7 * max(losses[:5])
    # the IoU-aware score now ranks a well-localized box first for every gt
    assert (best_detection_ious(model, data) > 0.5).all()
