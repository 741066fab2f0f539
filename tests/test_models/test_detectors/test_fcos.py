"""FCOS: mmdetection 3.3's configs (values, keys and shapes), the three forward modes,
training, and the shapes config.

Expected config values are written from mmdetection's files under configs/fcos and its
_base_ files; expected keys come from helpers_fcos_keys / helpers_detr_keys, written from the
module definitions. COCO models are built without ``init_weights`` (the caffe ResNet-50
init_cfg would download weights).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers import init_weights_quietly, make_batch, make_det_sample
from helpers_detr_keys import resnet50
from helpers_fcos_keys import fcos_head, fpn
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_lite.models.dense_heads import FCOSHead
from mmdet_lite.models.detectors import FCOS, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
BASIC = CONFIGS / 'fcos' / 'fcos_r50-caffe_fpn_gn-head_1x_coco.py'
IMPRV = CONFIGS / 'fcos' / \
    'fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py'
SHAPES = CONFIGS / 'shapes' / 'fcos_r18_fpn_shapes.py'

# mmengine's BaseModel builds the data_preprocessor through the root registry, which finds
# DetDataPreprocessor only with mmdet_lite as the default scope.
register_all_modules()


def load(path: Path) -> Config:
    return Config.fromfile(str(path))


# ----------------------------------------------------------------------------- configs

# mmdetection 3.3's fcos_r50-caffe_fpn_gn-head_1x_coco.py, model section.
BASIC_MODEL = dict(
    type='FCOS',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[102.9801, 115.9465, 122.7717],
                           std=[1.0, 1.0, 1.0], bgr_to_rgb=False, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
                  norm_eval=True, style='caffe',
                  init_cfg=dict(type='Pretrained',
                                checkpoint='open-mmlab://detectron/resnet50_caffe')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5,
              relu_before_extra_convs=True),
    bbox_head=dict(type='FCOSHead', num_classes=80, in_channels=256, stacked_convs=4,
                   feat_channels=256, strides=[8, 16, 32, 64, 128],
                   loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                 loss_weight=1.0),
                   loss_bbox=dict(type='IoULoss', loss_weight=1.0),
                   loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True,
                                        loss_weight=1.0)),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))


def imprv_model() -> dict:
    """The model of ...-center-normbbox-centeronreg-giou_1x_coco.py merged over its base."""
    model = copy.deepcopy(BASIC_MODEL)
    model['data_preprocessor']['mean'] = [103.530, 116.280, 123.675]
    model['backbone']['init_cfg']['checkpoint'] = 'open-mmlab://detectron2/resnet50_caffe'
    model['bbox_head'].update(norm_on_bbox=True, centerness_on_reg=True,
                              dcn_on_last_conv=False, center_sampling=True, conv_bias=True,
                              loss_bbox=dict(type='GIoULoss', loss_weight=1.0))
    model['test_cfg']['nms']['iou_threshold'] = 0.6
    return model


def test_basic_config_has_mmdetections_values():
    cfg = load(BASIC)
    assert cfg.model.to_dict() == BASIC_MODEL
    assert cfg.param_scheduler == [
        dict(type='ConstantLR', factor=1.0 / 3, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    # schedule_1x's SGD with the FCOS lr, bias multipliers and clipping.
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
        paramwise_cfg=dict(bias_lr_mult=2., bias_decay_mult=0.),
        clip_grad=dict(max_norm=35, norm_type=2))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.train_dataloader.batch_size == 2


def test_imprv_config_has_mmdetections_values():
    cfg = load(IMPRV)
    assert cfg.model.to_dict() == imprv_model()
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1.0 / 3.0, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    assert cfg.optim_wrapper.clip_grad is None
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.optim_wrapper.paramwise_cfg == dict(bias_lr_mult=2., bias_decay_mult=0.)


def expected_coco_keys(conv_bias: bool) -> dict:
    return {
        **resnet50('backbone'),
        # C3-C5 laterals; P6 from the P5 output, so every extra conv reads 256 channels.
        **fpn('neck', [256, 512, 1024, 2048], 256, start_level=1, num_outs=5,
              extra_source='on_output'),
        **fcos_head('bbox_head', num_classes=80, conv_bias=conv_bias),
    }


@pytest.mark.parametrize('path, conv_bias', [(BASIC, False), (IMPRV, True)],
                         ids=['basic', 'imprv'])
def test_state_dict_keys_and_shapes_equal_mmdetection(path, conv_bias):
    model = MODELS.build(load(path).model)
    expected = expected_coco_keys(conv_bias)
    assert shapes_of(model) == expected

    # A checkpoint with mmdetection's layout loads strictly, values and all.
    state = {k: torch.rand(shape) if shape else torch.tensor(0.5) for k, shape in
             expected.items()}
    for k in state:
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(7)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.conv_centerness.weight,
                       state['bbox_head.conv_centerness.weight'])
    assert model.bbox_head.scales[3].scale.item() == 0.5


def test_heads_of_the_configs_have_the_imprv_options():
    basic = MODELS.build(load(BASIC).model.bbox_head)
    imprv = MODELS.build(load(IMPRV).model.bbox_head)
    assert isinstance(basic, FCOSHead) and isinstance(imprv, FCOSHead)
    assert not (basic.norm_on_bbox or basic.centerness_on_reg or basic.center_sampling)
    assert imprv.norm_on_bbox and imprv.centerness_on_reg and imprv.center_sampling
    assert type(basic.loss_bbox).__name__ == 'IoULoss'
    assert type(imprv.loss_bbox).__name__ == 'GIoULoss'
    assert basic.regress_ranges == ((-1, 64), (64, 128), (128, 256), (256, 512), (512, 1e8))


def test_detector_signature_requires_a_neck():
    assert issubclass(FCOS, SingleStageDetector) and MODELS.get('FCOS') is FCOS
    params = inspect.signature(FCOS.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert params['neck'].default is inspect.Parameter.empty


# ----------------------------------------------------------------------------- forward modes


def tiny_fcos() -> FCOS:
    """The imprv COCO config shrunk: ResNet-18 of 16 base channels from scratch, 32-channel
    neck and head (2 convs per tower), 3 classes, every score kept at test time."""
    cfg = load(IMPRV).model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, init_cfg=None,
                        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2,
                         norm_cfg=dict(type='GN', num_groups=8, requires_grad=True))
    cfg.test_cfg.score_thr = 0.0
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def two_images():
    return make_batch([make_det_sample([[8, 8, 40, 40]], [0]),
                       make_det_sample([[4, 24, 36, 60], [40, 2, 60, 20]], [2, 1])])


def preprocess(model, data, training=False):
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


def test_tensor_mode_returns_scores_distances_and_centerness_of_p3_to_p7():
    model = tiny_fcos()
    inputs, _ = preprocess(model, two_images())
    cls_scores, bbox_preds, centernesses = model(inputs, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px input at strides 8..128 (P6/P7 round up)
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, s, s) for s in sizes]
    assert [tuple(c.shape) for c in centernesses] == [(2, 1, s, s) for s in sizes]


def test_loss_mode_gives_the_three_scalar_losses():
    model = tiny_fcos()
    inputs, samples = preprocess(model, two_images(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    # Every class starts at probability ~0.01: the focal loss of the negatives is small and
    # normalised by the positives, of order 1.
    assert 0.1 < losses['loss_cls'].item() < 10


def test_predict_returns_boxes_in_original_image_pixels():
    model = tiny_fcos().eval()
    data = two_images()
    for sample in data['data_samples']:  # resized from a 32x48 (h, w) original
        sample.set_metainfo(dict(ori_shape=(32, 48), scale_factor=(64 / 48, 2.0)))
    inputs, samples = preprocess(model, data)
    with torch.no_grad():
        resized = [s.pred_instances.clone() for s in model.predict(
            inputs, copy.deepcopy(samples), rescale=False)]
        results = model(inputs, samples, mode='predict')
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result, in_input in zip(results, resized):
        pred = result.pred_instances
        assert 0 < len(pred) <= 100
        assert pred.bboxes.shape == (len(pred), 4) and pred.scores.shape == (len(pred), )
        assert pred.labels.dtype == torch.long and torch.all(pred.labels < 3)
        # score = sigmoid(cls) * sigmoid(centerness) <= 1, highest first
        assert torch.all(pred.scores <= 1) and torch.all(pred.scores[:-1] >= pred.scores[1:])
        expected = in_input.bboxes / torch.tensor([64 / 48, 2.0, 64 / 48, 2.0])
        assert torch.allclose(pred.bboxes, expected, atol=1e-4)


@pytest.mark.slow  # about 2 s
def test_a_few_sgd_steps_reduce_the_loss():
    model = tiny_fcos()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = two_images()
    # train_step computes the loss before updating, so the first one is the initial loss.
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(8)]
    assert all(torch.isfinite(torch.tensor(losses)))
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = sum(model(inputs, samples, mode='loss').values()).item()
    assert after < 0.9 * losses[0]


def test_an_image_without_objects_trains_without_nan():
    model = tiny_fcos()
    data = make_batch([make_det_sample([], []), make_det_sample([[0, 0, 63, 63]], [2])])
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(),
                                                                   lr=0.01)))
    assert all(torch.isfinite(v) for v in log_vars.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ----------------------------------------------------------------------------- shapes


def test_shapes_config_builds_and_runs_a_loss_forward():
    cfg = load(SHAPES)
    assert cfg.train_dataloader.dataset.type == 'ShapesDataset'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.train_cfg.max_epochs == 24
    head_cfg = cfg.model.bbox_head
    assert head_cfg.norm_on_bbox and head_cfg.centerness_on_reg and head_cfg.center_sampling
    assert head_cfg.loss_bbox.type == 'GIoULoss'
    assert head_cfg.regress_ranges == ((-1, 32), (32, 64), (64, 128), (128, 256), (256, 1e8))

    model = MODELS.build(cfg.model)
    init_weights_quietly(model)
    assert model.backbone.frozen_stages == -1 and model.backbone.norm_eval is False
    expected_head = fcos_head('bbox_head', num_classes=3, in_channels=64, feat_channels=64,
                              conv_bias=True)
    shapes = shapes_of(model)
    assert {k: v for k, v in shapes.items() if k.startswith('bbox_head.')} == expected_head
    assert {k: v for k, v in shapes.items() if k.startswith('neck.')} == fpn(
        'neck', [32, 64, 128, 256], 64, start_level=1, num_outs=5, extra_source='on_output')

    data = make_batch([make_det_sample([[20, 30, 90, 100]], [1], img_shape=(128, 128))])
    inputs, samples = preprocess(model, data, training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['loss_bbox'] > 0  # the 70-px box has positives on P3/P4
