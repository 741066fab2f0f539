"""SOLO: mmdetection 3.3's configs (values, keys and shapes), the SingleStageInstanceSegmentor
flow in its three modes, and training.

Expected config values are written from mmdetection's files under configs/solo and its
_base_ files; expected keys come from helpers_solo_keys, written from the module definitions.
COCO models are built without ``init_weights`` (the ResNet-50 init_cfg would download).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers import init_weights_quietly, make_batch, make_det_sample
from helpers_solo_keys import (decoupled_solo_head, decoupled_solo_light_head, r50_p2_p6_fpn,
                               solo_head)
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_lite.models.dense_heads import DecoupledSOLOHead, DecoupledSOLOLightHead, SOLOHead
from mmdet_lite.models.detectors import SOLO, SingleStageInstanceSegmentor
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'solo'
SOLO_1X = CONFIGS / 'solo_r50_fpn_1x_coco.py'
SOLO_3X = CONFIGS / 'solo_r50_fpn_3x_coco.py'
DECOUPLED_1X = CONFIGS / 'decoupled-solo_r50_fpn_1x_coco.py'
DECOUPLED_3X = CONFIGS / 'decoupled-solo_r50_fpn_3x_coco.py'
LIGHT_3X = CONFIGS / 'decoupled-solo-light_r50_fpn_3x_coco.py'

register_all_modules()


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


# ----------------------------------------------------------------------------- configs
FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
GN32 = dict(type='GN', num_groups=32, requires_grad=True)
COCO_RANGES = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
# mmdetection 3.3's solo_r50_fpn_1x_coco.py, model section.
SOLO_MODEL = dict(
    type='SOLO',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=True,
                           pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
                  style='pytorch'),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=0, num_outs=5),
    mask_head=dict(type='SOLOHead', num_classes=80, in_channels=256, stacked_convs=7,
                   feat_channels=256, strides=[8, 8, 16, 32, 32], scale_ranges=COCO_RANGES,
                   pos_scale=0.2, num_grids=[40, 36, 24, 16, 12], cls_down_index=0,
                   loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
                   loss_cls=FOCAL, norm_cfg=GN32),
    test_cfg=dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05,
                  kernel='gaussian', sigma=2.0, max_per_img=100))
PROB_DICE = dict(type='DiceLoss', use_sigmoid=True, activate=False, loss_weight=3.0)
MS_3X_SCHEDULE = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33], gamma=0.1)]


def decoupled_model(light: bool = False) -> dict:
    model = copy.deepcopy(SOLO_MODEL)
    model['mask_head'].update(type='DecoupledSOLOHead', loss_mask=PROB_DICE)
    if light:
        model['mask_head'].update(
            type='DecoupledSOLOLightHead', stacked_convs=4,
            scale_ranges=((1, 64), (32, 128), (64, 256), (128, 512), (256, 2048)))
    return model


def test_solo_1x_config_has_mmdetections_values():
    cfg = load(SOLO_1X)
    assert cfg.model.to_dict() == SOLO_MODEL
    # schedule_1x's SGD with SOLO's lr, no clipping
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.val_evaluator.metric == 'segm' and cfg.test_evaluator.metric == 'segm'
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert dict(type='LoadAnnotations', with_bbox=True, with_mask=True) in \
        cfg.train_dataloader.dataset.pipeline


def test_3x_configs_have_mmdetections_schedule_and_pipelines():
    cfg = load(SOLO_3X)
    assert cfg.model.to_dict() == SOLO_MODEL
    assert cfg.train_cfg.max_epochs == 36 and cfg.param_scheduler == MS_3X_SCHEDULE
    resize = cfg.train_dataloader.dataset.pipeline[2]
    assert resize == dict(type='RandomChoiceResize',
                          scales=[(1333, 800), (1333, 768), (1333, 736), (1333, 704),
                                  (1333, 672), (1333, 640)], keep_ratio=True)
    assert load(DECOUPLED_3X).model.to_dict() == decoupled_model()
    light = load(LIGHT_3X)
    assert light.model.to_dict() == decoupled_model(light=True)
    assert light.param_scheduler == MS_3X_SCHEDULE
    assert light.train_dataloader.dataset.pipeline[2]['scales'] == [
        (852, 512), (852, 480), (852, 448), (852, 416), (852, 384), (852, 352)]
    assert light.test_dataloader.dataset.pipeline[1] == dict(type='Resize', scale=(852, 512),
                                                             keep_ratio=True)


def test_decoupled_1x_config_has_mmdetections_values():
    cfg = load(DECOUPLED_1X)
    assert cfg.model.to_dict() == decoupled_model()
    assert cfg.optim_wrapper.optimizer.lr == 0.01 and cfg.train_cfg.max_epochs == 12


@pytest.mark.parametrize('path, head_keys, head_type', [
    (SOLO_1X, solo_head('mask_head'), SOLOHead),
    (DECOUPLED_1X, decoupled_solo_head('mask_head'), DecoupledSOLOHead),
    (LIGHT_3X, decoupled_solo_light_head('mask_head'), DecoupledSOLOLightHead)],
    ids=['solo', 'decoupled', 'decoupled-light'])
def test_state_dict_keys_and_shapes_equal_mmdetection(path, head_keys, head_type):
    model = MODELS.build(load(path).model)
    assert type(model) is SOLO and type(model.mask_head) is head_type
    expected = {**r50_p2_p6_fpn(), **head_keys}
    assert shapes_of(model) == expected
    # A checkpoint with mmdetection's layout loads strictly.
    state = {k: torch.rand(shape) if shape else torch.tensor(3) for k, shape in
             expected.items()}
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.mask_head.conv_cls.bias, state['mask_head.conv_cls.bias'])


def test_detector_signatures_and_registration():
    assert issubclass(SOLO, SingleStageInstanceSegmentor)
    assert MODELS.get('SOLO') is SOLO
    assert MODELS.get('SingleStageInstanceSegmentor') is SingleStageInstanceSegmentor
    for cls in (SOLO, SingleStageInstanceSegmentor):
        params = inspect.signature(cls.__init__).parameters
        assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'mask_head',
                                'train_cfg', 'test_cfg', 'data_preprocessor', 'init_cfg']
        assert all(params[k].default is None for k in list(params)[2:])


def test_a_segmentor_needs_a_mask_head():
    cfg = tiny_cfg()
    del cfg['mask_head']
    with pytest.raises(AssertionError, match='`mask_head` must be implemented in SOLO'):
        MODELS.build(cfg)


# ----------------------------------------------------------------------------- forward modes
def tiny_cfg(head_type: str = 'SOLOHead') -> dict:
    """The COCO config shrunk: ResNet-18 of 16 base channels from scratch, 32-channel FPN
    and head (2 convs per tower), 3 classes; COCO's strides, grids and scale ranges."""
    cfg = load(SOLO_1X).model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, init_cfg=None)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.mask_head.update(type=head_type, num_classes=3, in_channels=32, feat_channels=32,
                         stacked_convs=2, norm_cfg=dict(type='GN', num_groups=8,
                                                        requires_grad=True))
    if head_type.startswith('Decoupled'):
        cfg.mask_head.loss_mask = PROB_DICE
    return cfg.to_dict()


def tiny_solo(head_type: str = 'SOLOHead') -> SOLO:
    model = MODELS.build(tiny_cfg(head_type))
    init_weights_quietly(model)
    return model


def two_images():
    return make_batch([
        make_det_sample([[8, 8, 40, 40]], [0], with_mask=True),
        make_det_sample([[4, 24, 36, 60], [40, 2, 60, 20]], [2, 1], with_mask=True)])


def preprocess(model, data, training=False):
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


def test_tensor_mode_returns_the_mask_heads_outputs():
    model = tiny_solo()
    inputs, _ = preprocess(model, two_images())
    outs = model(inputs, mode='tensor')
    assert isinstance(outs, tuple) and len(outs) == 1  # no bbox head
    mask_preds, cls_preds = outs[0]
    grids = [40, 36, 24, 16, 12]
    # 64 px: P2 16 px halved to 8, P3 8, P4 4, P5 2, P6 (1 px) brought to 2; masks at 2x.
    assert [tuple(m.shape) for m in mask_preds] == [
        (2, g**2, s, s) for g, s in zip(grids, [16, 16, 8, 4, 4])]
    assert [tuple(c.shape) for c in cls_preds] == [(2, 3, g, g) for g in grids]


@pytest.mark.parametrize('head_type', ['SOLOHead', 'DecoupledSOLOHead',
                                       'DecoupledSOLOLightHead'])
def test_loss_mode_gives_the_mask_and_class_losses(head_type):
    model = tiny_solo(head_type)
    inputs, samples = preprocess(model, two_images(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_mask', 'loss_cls'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    # Dice losses of nearly uninformed masks are close to the weight 3 per positive.
    assert 1.0 < losses['loss_mask'].item() <= 3.0


def test_predict_returns_masks_at_the_original_size():
    model = tiny_solo().eval()
    # The untrained mask logits sit at the 0.01 prior: every threshold at 0 keeps them.
    model.mask_head.test_cfg.update(score_thr=0.0, filter_thr=0.0, mask_thr=0.0)
    data = two_images()
    for sample in data['data_samples']:  # resized from a 32 x 48 (h, w) original
        sample.set_metainfo(dict(ori_shape=(32, 48), scale_factor=(64 / 48, 2.0)))
    inputs, samples = preprocess(model, data)
    with torch.no_grad():
        results = model(inputs, samples, mode='predict')
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result in results:
        pred = result.pred_instances
        assert 0 < len(pred) <= 100
        assert pred.masks.dtype == torch.bool and pred.masks.shape[1:] == (32, 48)
        assert pred.labels.dtype == torch.int64 and torch.all(pred.labels < 3)
        assert torch.all(pred.scores[:-1] >= pred.scores[1:])
        assert torch.equal(pred.bboxes, torch.zeros(len(pred), 4))


STEPS = 20


@pytest.mark.slow  # about 3 s each
@pytest.mark.parametrize('head_type', ['SOLOHead', 'DecoupledSOLOLightHead'])
def test_a_few_adam_steps_reduce_both_losses(head_type):
    model = tiny_solo(head_type)
    # Adam: from the 0.01 prior the Dice loss has tiny gradients, SGD needs many steps.
    optim_wrapper = OptimWrapper(torch.optim.Adam(model.parameters(), lr=0.002))
    data = two_images()
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper) for _ in range(STEPS)]
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = model(inputs, samples, mode='loss')
    assert after['loss_mask'] < 0.9 * losses[0]['loss_mask']
    assert after['loss_cls'] < 0.9 * losses[0]['loss_cls']
