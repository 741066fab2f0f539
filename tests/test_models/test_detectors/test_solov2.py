"""SOLOv2: mmdetection 3.3's configs (values, keys and shapes), the three forward modes and
training.

Expected config values are written from mmdetection's files under configs/solov2 and its
_base_ files; expected keys come from helpers_solo_keys, written from the module
definitions. COCO models are built without ``init_weights`` (the ResNet init_cfg would
download).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers import init_weights_quietly, make_batch, make_det_sample
from helpers_solo_keys import r50_p2_p6_fpn, resnet18, solov2_head
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_lite.models.dense_heads import SOLOV2Head
from mmdet_lite.models.detectors import SOLOv2, SingleStageInstanceSegmentor
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'solov2'
SOLOV2_1X = CONFIGS / 'solov2_r50_fpn_1x_coco.py'
LIGHT_R50 = CONFIGS / 'solov2-light_r50_fpn_ms-3x_coco.py'
LIGHT_R18 = CONFIGS / 'solov2-light_r18_fpn_ms-3x_coco.py'

register_all_modules()


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


# ----------------------------------------------------------------------------- configs
GN32 = dict(type='GN', num_groups=32, requires_grad=True)
# mmdetection 3.3's solov2_r50_fpn_1x_coco.py, model section.
SOLOV2_MODEL = dict(
    type='SOLOv2',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=True,
                           pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
                  style='pytorch'),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=0, num_outs=5),
    mask_head=dict(
        type='SOLOV2Head', num_classes=80, in_channels=256, feat_channels=512,
        stacked_convs=4, strides=[8, 8, 16, 32, 32],
        scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
        pos_scale=0.2, num_grids=[40, 36, 24, 16, 12], cls_down_index=0,
        mask_feature_head=dict(feat_channels=128, start_level=0, end_level=3,
                               out_channels=256, mask_stride=4, norm_cfg=GN32),
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0)),
    test_cfg=dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05,
                  kernel='gaussian', sigma=2.0, max_per_img=100))


def light_model(depth: int = 50) -> dict:
    model = copy.deepcopy(SOLOV2_MODEL)
    model['mask_head'].update(
        stacked_convs=2, feat_channels=256,
        scale_ranges=((1, 56), (28, 112), (56, 224), (112, 448), (224, 896)))
    model['mask_head']['mask_feature_head']['out_channels'] = 128
    if depth == 18:
        model['backbone'].update(depth=18, init_cfg=dict(type='Pretrained',
                                                         checkpoint='torchvision://resnet18'))
        model['neck']['in_channels'] = [64, 128, 256, 512]
    return model


def test_solov2_1x_config_has_mmdetections_values():
    cfg = load(SOLOV2_1X)
    assert cfg.model.to_dict() == SOLOV2_MODEL
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
        clip_grad=dict(max_norm=35, norm_type=2))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.param_scheduler[1]['milestones'] == [8, 11]
    assert cfg.val_evaluator.metric == 'segm' and cfg.test_evaluator.metric == 'segm'


@pytest.mark.parametrize('path, depth', [(LIGHT_R50, 50), (LIGHT_R18, 18)],
                         ids=['r50', 'r18'])
def test_light_configs_have_mmdetections_values(path, depth):
    cfg = load(path)
    assert cfg.model.to_dict() == light_model(depth)
    # mmdetection's light config passes by_epoch to the loop as well
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=36, val_interval=1,
                                 by_epoch=True)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=36, by_epoch=True, milestones=[27, 33],
             gamma=0.1)]
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=35, norm_type=2)
    assert cfg.train_dataloader.dataset.pipeline[2] == dict(
        type='RandomChoiceResize',
        scales=[(768, 512), (768, 480), (768, 448), (768, 416), (768, 384), (768, 352)],
        keep_ratio=True)
    assert cfg.test_dataloader.dataset.pipeline[1] == dict(type='Resize', scale=(448, 768),
                                                           keep_ratio=True)


@pytest.mark.parametrize('path, expected', [
    (SOLOV2_1X, lambda: {**r50_p2_p6_fpn(), **solov2_head('mask_head')}),
    (LIGHT_R50, lambda: {**r50_p2_p6_fpn(),
                         **solov2_head('mask_head', feat_channels=256, stacked_convs=2,
                                       mask_out_channels=128)}),
    (LIGHT_R18, lambda: {**r50_p2_p6_fpn(resnet18('backbone'), (64, 128, 256, 512)),
                         **solov2_head('mask_head', feat_channels=256, stacked_convs=2,
                                       mask_out_channels=128)})],
    ids=['solov2', 'light-r50', 'light-r18'])
def test_state_dict_keys_and_shapes_equal_mmdetection(path, expected):
    model = MODELS.build(load(path).model)
    assert type(model) is SOLOv2 and type(model.mask_head) is SOLOV2Head
    expected = expected()
    assert shapes_of(model) == expected
    state = {k: torch.rand(shape) if shape else torch.tensor(3) for k, shape in
             expected.items()}
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.mask_head.conv_kernel.weight, state['mask_head.conv_kernel.weight'])


def test_detector_signature_and_registration():
    assert issubclass(SOLOv2, SingleStageInstanceSegmentor) and MODELS.get('SOLOv2') is SOLOv2
    assert list(inspect.signature(SOLOv2.__init__).parameters) == [
        'self', 'backbone', 'neck', 'bbox_head', 'mask_head', 'train_cfg', 'test_cfg',
        'data_preprocessor', 'init_cfg']


# ----------------------------------------------------------------------------- forward modes
def tiny_solov2() -> SOLOv2:
    """The COCO config shrunk: ResNet-18 of 16 base channels from scratch, 32-channel FPN
    and towers (2 convs), 16-channel mask features, 3 classes; COCO's grids and ranges."""
    cfg = load(SOLOV2_1X).model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, init_cfg=None)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    gn8 = dict(type='GN', num_groups=8, requires_grad=True)
    cfg.mask_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2,
                         norm_cfg=gn8)
    cfg.mask_head.mask_feature_head.update(feat_channels=16, out_channels=16, norm_cfg=gn8)
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def two_images():
    return make_batch([
        make_det_sample([[8, 8, 40, 40]], [0], with_mask=True),
        make_det_sample([[4, 24, 36, 60], [40, 2, 60, 20]], [2, 1], with_mask=True)])


def preprocess(model, data, training=False):
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


def test_tensor_mode_returns_kernels_scores_and_mask_features():
    model = tiny_solov2()
    inputs, _ = preprocess(model, two_images())
    (kernels, cls_preds, mask_feats), = model(inputs, mode='tensor')
    grids = [40, 36, 24, 16, 12]
    assert [tuple(k.shape) for k in kernels] == [(2, 16, g, g) for g in grids]
    assert [tuple(c.shape) for c in cls_preds] == [(2, 3, g, g) for g in grids]
    assert mask_feats.shape == (2, 16, 16, 16)  # stride 4 of the 64-px input


def test_loss_mode_gives_the_mask_and_class_losses():
    model = tiny_solov2()
    inputs, samples = preprocess(model, two_images(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_mask', 'loss_cls'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert 0.5 < losses['loss_mask'].item() <= 3.0


def test_predict_returns_masks_at_the_original_size():
    model = tiny_solov2().eval()
    model.mask_head.test_cfg.update(score_thr=0.0, filter_thr=0.0)
    data = two_images()
    for sample in data['data_samples']:
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


@pytest.mark.slow  # about 3 s
def test_a_few_adam_steps_reduce_both_losses():
    model = tiny_solov2()
    optim_wrapper = OptimWrapper(torch.optim.Adam(model.parameters(), lr=0.002))
    data = two_images()
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper) for _ in range(20)]
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = model(inputs, samples, mode='loss')
    assert after['loss_mask'] < 0.9 * losses[0]['loss_mask']
    assert after['loss_cls'] < 0.9 * losses[0]['loss_cls']
