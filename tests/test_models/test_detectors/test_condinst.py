"""CondInst: mmdetection 3.3's COCO config (values, keys and shapes), the three forward modes
and training.

Expected config values are written from mmdetection's
configs/condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py and its base
configs/common/ms-poly-90k_coco-instance.py (over _base_/default_runtime.py); expected keys
come from helpers_detr_keys (ResNet-50), helpers_fcos_keys (FPN) and helpers_condinst_keys,
written from the module definitions. The COCO model is built without ``init_weights`` (its
ResNet-50 init_cfg would download weights).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers import init_weights_quietly, make_batch, make_det_sample
from helpers_condinst_keys import condinst_bbox_head, condinst_mask_head
from helpers_detr_keys import resnet50
from helpers_fcos_keys import fpn
from helpers_state_dict import shapes_of
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from mmdet_lite.models.dense_heads import CondInstBboxHead, CondInstMaskHead
from mmdet_lite.models.detectors import CondInst, SingleStageInstanceSegmentor
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIG = (Path(__file__).resolve().parents[3] / 'configs' / 'condinst' /
          'condinst_r50_fpn_ms-poly-90k_coco_instance.py')

register_all_modules()


def load() -> Config:
    return Config.fromfile(str(CONFIG))


# ----------------------------------------------------------------------------- configs

MODEL = dict(
    type='CondInst',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_mask=True,
                           pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=True,
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
                  style='pytorch'),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5,
              relu_before_extra_convs=True),
    bbox_head=dict(type='CondInstBboxHead', num_params=169, num_classes=80, in_channels=256,
                   stacked_convs=4, feat_channels=256, strides=[8, 16, 32, 64, 128],
                   norm_on_bbox=True, centerness_on_reg=True, dcn_on_last_conv=False,
                   center_sampling=True, conv_bias=True,
                   loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                                 loss_weight=1.0),
                   loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
                   loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True,
                                        loss_weight=1.0)),
    mask_head=dict(type='CondInstMaskHead', num_layers=3, feat_channels=8,
                   size_of_interest=8, mask_out_stride=4, max_masks_to_train=300,
                   mask_feature_head=dict(in_channels=256, feat_channels=128, start_level=0,
                                          end_level=2, out_channels=8, mask_stride=8,
                                          num_stacked_convs=4,
                                          norm_cfg=dict(type='BN', requires_grad=True)),
                   loss_mask=dict(type='DiceLoss', use_sigmoid=True, activate=True,
                                  eps=5e-6, loss_weight=1.0)),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100, mask_thr=0.5))

LOAD_IMAGE = dict(type='LoadImageFromFile', backend_args=None, imdecode_backend='pillow')
LOAD_ANNOTATIONS = dict(type='LoadAnnotations', with_bbox=True, with_mask=True,
                        poly2mask=False)
TRAIN_PIPELINE = [
    LOAD_IMAGE, LOAD_ANNOTATIONS,
    dict(type='RandomChoiceResize',
         scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768),
                 (1333, 800)],
         keep_ratio=True, backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
TEST_PIPELINE = [
    LOAD_IMAGE,
    dict(type='Resize', scale=(1333, 800), keep_ratio=True, backend='pillow'),
    LOAD_ANNOTATIONS,
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]


def test_model_settings_are_mmdetections():
    assert load().model.to_dict() == MODEL


def test_data_and_schedule_are_mmdetections_ms_poly_90k():
    cfg = load()
    train = cfg.train_dataloader
    assert (train.batch_size, train.num_workers, train.persistent_workers,
            train.pin_memory) == (2, 2, True, True)
    assert train.sampler == dict(type='InfiniteSampler', shuffle=True)
    assert train.batch_sampler == dict(type='AspectRatioBatchSampler')
    assert train.dataset.to_dict() == dict(
        type='CocoDataset', data_root='data/coco/',
        ann_file='annotations/instances_train2017.json', data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=TRAIN_PIPELINE,
        backend_args=None)
    val = cfg.val_dataloader
    assert (val.batch_size, val.num_workers, val.persistent_workers, val.drop_last,
            val.pin_memory) == (1, 2, True, False, True)
    assert val.sampler == dict(type='DefaultSampler', shuffle=False)
    assert val.dataset.to_dict() == dict(
        type='CocoDataset', data_root='data/coco/',
        ann_file='annotations/instances_val2017.json', data_prefix=dict(img='val2017/'),
        test_mode=True, pipeline=TEST_PIPELINE, backend_args=None)
    assert cfg.test_dataloader == cfg.val_dataloader
    assert cfg.val_evaluator == dict(type='CocoMetric',
                                     ann_file='data/coco/annotations/instances_val2017.json',
                                     metric=['bbox', 'segm'], format_only=False,
                                     backend_args=None)
    assert cfg.test_evaluator == cfg.val_evaluator

    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=90000,
                                 val_interval=10000)
    assert cfg.val_cfg == dict(type='ValLoop') and cfg.test_cfg == dict(type='TestLoop')
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
        dict(type='MultiStepLR', begin=0, end=90000, by_epoch=False,
             milestones=[60000, 80000], gamma=0.1)]
    # the common file's SGD with CondInst's lr override
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.default_hooks.checkpoint == dict(type='CheckpointHook', by_epoch=False,
                                                interval=10000)
    assert cfg.log_processor.by_epoch is False


def test_pipelines_build():
    cfg = load()
    with DefaultScope.overwrite_default_scope('mmdet_lite'):
        for pipeline in (cfg.train_dataloader.dataset.pipeline,
                         cfg.val_dataloader.dataset.pipeline):
            assert len(Compose(pipeline).transforms) == len(pipeline)


def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(load().model)
    expected = {
        **resnet50('backbone'),
        # C3-C5 laterals; P6 from the P5 output, so every extra conv reads 256 channels.
        **fpn('neck', [256, 512, 1024, 2048], 256, start_level=1, num_outs=5,
              extra_source='on_output'),
        **condinst_bbox_head('bbox_head', num_classes=80, conv_bias=True),
        **condinst_mask_head('mask_head', in_channels=256, feat_channels=128, start_level=0,
                             end_level=2, out_channels=8, num_stacked_convs=4),
    }
    assert shapes_of(model) == expected

    # A checkpoint with mmdetection's layout loads strictly, values and all.
    state = {k: torch.rand(shape) if shape else torch.tensor(0.5)
             for k, shape in expected.items()}
    for k in state:
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(7)
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.controller.weight, state['bbox_head.controller.weight'])
    assert torch.equal(model.mask_head.mask_feature_head.convs_all_levels[2].conv2.conv.weight,
                       state['mask_head.mask_feature_head.convs_all_levels.2.conv2.conv.weight'])


def test_detector_and_heads_are_registered_with_mmdetections_signature():
    assert issubclass(CondInst, SingleStageInstanceSegmentor)
    assert MODELS.get('CondInst') is CondInst
    assert MODELS.get('CondInstBboxHead') is CondInstBboxHead
    assert MODELS.get('CondInstMaskHead') is CondInstMaskHead
    params = inspect.signature(CondInst.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'mask_head',
                            'train_cfg', 'test_cfg', 'data_preprocessor', 'init_cfg']
    assert all(params[name].default is inspect.Parameter.empty
               for name in ('backbone', 'neck', 'bbox_head', 'mask_head'))
    head_params = inspect.signature(CondInstMaskHead.__init__).parameters
    assert {name: p.default for name, p in head_params.items() if name != 'self'} == dict(
        mask_feature_head=inspect.Parameter.empty, num_layers=3, feat_channels=8,
        mask_out_stride=4, size_of_interest=8, max_masks_to_train=-1, topk_masks_per_img=-1,
        loss_mask=None, train_cfg=None, test_cfg=None)
    assert inspect.signature(CondInstBboxHead.__init__).parameters['num_params'].default == 169


# ----------------------------------------------------------------------------- forward modes


def tiny_condinst() -> CondInst:
    """The COCO config shrunk: ResNet-18 of 16 base channels from scratch, 32-channel neck
    and box head (2 convs per tower), a 16-channel mask branch, 3 classes, every score kept
    at test time."""
    cfg = load().model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, init_cfg=None,
                        norm_eval=False)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2,
                         norm_cfg=dict(type='GN', num_groups=8, requires_grad=True))
    cfg.mask_head.mask_feature_head.update(in_channels=32, feat_channels=16,
                                           num_stacked_convs=2)
    cfg.test_cfg.score_thr = 0.0
    torch.manual_seed(0)
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


def test_tensor_mode_returns_box_outputs_and_the_positives_masks():
    model = tiny_condinst()
    inputs, samples = preprocess(model, two_images(), training=True)
    bbox_outs, mask_outs = model(inputs, samples, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px input at strides 8..128
    cls_scores, bbox_preds, centernesses, param_preds = bbox_outs
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(c.shape) for c in centernesses] == [(2, 1, s, s) for s in sizes]
    assert [tuple(p.shape) for p in param_preds] == [(2, 169, s, s) for s in sizes]
    (mask_preds, ) = mask_outs
    infos = model.bbox_head.get_positive_infos()
    # one mask per positive, at stride 4 of the 64 px input
    assert [tuple(m.shape) for m in mask_preds] == [(len(i), 16, 16) for i in infos]
    assert all(len(i) > 0 for i in infos)


def test_loss_mode_gives_fcos_losses_and_the_mask_loss():
    model = tiny_condinst()
    inputs, samples = preprocess(model, two_images(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_centerness', 'loss_mask'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert 0 < losses['loss_mask'].item() < 1  # a Dice loss
    losses['loss_mask'].backward()
    assert model.bbox_head.controller.weight.grad.abs().sum() > 0  # trains the parameters


def test_predict_returns_boxes_and_masks_at_the_original_size():
    model = tiny_condinst().eval()
    data = two_images()
    for sample in data['data_samples']:  # resized from a 32x48 (h, w) original
        sample.set_metainfo(dict(ori_shape=(32, 48), scale_factor=(64 / 48, 2.0)))
    inputs, samples = preprocess(model, data)
    with torch.no_grad():
        in_input = [s.pred_instances for s in model.predict(inputs, copy.deepcopy(samples),
                                                            rescale=False)]
        results = model(inputs, samples, mode='predict')
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result, unscaled in zip(results, in_input):
        pred = result.pred_instances
        assert 0 < len(pred) <= 100
        assert {'bboxes', 'scores', 'labels', 'masks'} <= set(pred.keys())
        assert pred.masks.shape == (len(pred), 32, 48) and pred.masks.dtype == torch.bool
        assert unscaled.masks.shape == (len(pred), 64, 64)
        assert pred.labels.dtype == torch.long and torch.all(pred.labels < 3)
        assert torch.all(pred.scores[:-1] >= pred.scores[1:])
        expected = unscaled.bboxes / torch.tensor([64 / 48, 2.0, 64 / 48, 2.0])
        assert torch.allclose(pred.bboxes, expected, atol=1e-4)


def test_an_image_without_objects_trains_without_nan():
    model = tiny_condinst()
    data = make_batch([make_det_sample([], [], with_mask=True),
                       make_det_sample([[0, 0, 63, 63]], [2], with_mask=True)])
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(),
                                                                   lr=0.01)))
    assert all(torch.isfinite(v) for v in log_vars.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow  # about 2 s
def test_a_few_sgd_steps_reduce_the_box_and_mask_losses():
    model = tiny_condinst()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = two_images()
    # train_step computes the loss before updating, so the first one is the initial loss.
    first = model.train_step(copy.deepcopy(data), optim_wrapper)
    for _ in range(9):
        model.train_step(copy.deepcopy(data), optim_wrapper)
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = model(inputs, samples, mode='loss')
    assert sum(after.values()).item() < 0.9 * first['loss'].item()
    assert after['loss_mask'].item() < 0.9 * first['loss_mask'].item()
