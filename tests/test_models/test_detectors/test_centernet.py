"""CenterNet: the CenterNet-update config (FPN + CenterNetUpdateHead) and the original
CenterNet configs (ResNet-18 + CTResNetNeck + CenterNetHead): mmdetection 3.3's config values,
state_dict keys and shapes, the three forward modes and a tiny overfit.

Expected config values are written from mmdetection's configs/centernet files and their _base_
files; expected keys come from helpers_centernet_autoassign_keys / helpers_fcos_keys /
helpers_detr_keys, written from the module definitions. COCO models are built without
``init_weights`` (the pretrained init_cfgs would download weights).
"""
import copy
import inspect
from pathlib import Path

import torch
from helpers import init_weights_quietly, make_batch, make_det_sample
from helpers_centernet_autoassign_keys import (centernet_head, centernet_update_head,
                                               ct_resnet_neck, resnet18)
from helpers_detr_keys import resnet50
from helpers_fcos_keys import fpn
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_lite.models.dense_heads import CenterNetHead, CenterNetUpdateHead
from mmdet_lite.models.detectors import CenterNet, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'centernet'
CONFIG = CONFIGS / 'centernet-update_r50-caffe_fpn_ms-1x_coco.py'
DCN = CONFIGS / 'centernet_r18-dcnv2_8xb16-crop512-140e_coco.py'
PLAIN = CONFIGS / 'centernet_r18_8xb16-crop512-140e_coco.py'

register_all_modules()  # DetDataPreprocessor through mmengine's root registry

# mmdetection 3.3's centernet-update_r50-caffe_fpn_ms-1x_coco.py, model section.
MODEL = dict(
    type='CenterNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[103.530, 116.280, 123.675],
                           std=[1.0, 1.0, 1.0], bgr_to_rgb=False, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
                  norm_eval=True, style='caffe',
                  init_cfg=dict(type='Pretrained',
                                checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5,
              init_cfg=dict(type='Caffe2Xavier', layer='Conv2d'),
              relu_before_extra_convs=True),
    bbox_head=dict(type='CenterNetUpdateHead', num_classes=80, in_channels=256,
                   stacked_convs=4, feat_channels=256, strides=[8, 16, 32, 64, 128],
                   hm_min_radius=4, hm_min_overlap=0.8, more_pos_thresh=0.2, more_pos_topk=9,
                   soft_weight_on_reg=False,
                   loss_cls=dict(type='GaussianFocalLoss', pos_weight=0.25, neg_weight=0.75,
                                 loss_weight=1.0),
                   loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=None,
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))


def load() -> Config:
    return Config.fromfile(str(CONFIG))


def test_config_has_mmdetections_values():
    cfg = load()
    assert cfg.model.to_dict() == MODEL
    assert cfg.train_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='RandomChoiceResize',
             scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768),
                     (1333, 800)],
             keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')]
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.00025, by_epoch=False, begin=0, end=4000),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    # schedule_1x's SGD with lr 0.01 and no decay on norm layers, no clipping.
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
        paramwise_cfg=dict(norm_decay_mult=0.))
    assert cfg.auto_scale_lr.to_dict() == dict(enable=False, base_batch_size=16)
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)


def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(load().model)
    expected = {
        **resnet50('backbone'),
        # C3-C5 laterals; P6 from the P5 output, so every extra conv reads 256 channels.
        **fpn('neck', [256, 512, 1024, 2048], 256, start_level=1, num_outs=5,
              extra_source='on_output'),
        **centernet_update_head('bbox_head', num_classes=80),
    }
    assert shapes_of(model) == expected
    # A checkpoint with mmdetection's layout loads strictly.
    state = {k: torch.rand(shape) if shape else torch.tensor(0.5) for k, shape in
             expected.items()}
    for k in state:
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(7)
    model.load_state_dict(state, strict=True)
    assert isinstance(model.bbox_head, CenterNetUpdateHead)
    assert model.bbox_head.scales[4].scale.item() == 0.5


def test_detector_signature_requires_a_neck():
    assert issubclass(CenterNet, SingleStageDetector) and MODELS.get('CenterNet') is CenterNet
    params = inspect.signature(CenterNet.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert params['neck'].default is inspect.Parameter.empty


# ----------------------------------------------------------------------------- forward modes


def tiny_centernet() -> CenterNet:
    """The COCO config shrunk: ResNet-18 of 16 base channels from scratch, a 32-channel neck
    and head (2 convs per tower, GN of 8 groups), 3 classes, every score kept at test time."""
    cfg = load().model
    cfg.backbone.update(depth=18, base_channels=16, frozen_stages=-1, init_cfg=None,
                        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False)
    cfg.neck.update(in_channels=[16, 32, 64, 128], out_channels=32)
    cfg.bbox_head.update(num_classes=3, in_channels=32, feat_channels=32, stacked_convs=2,
                         norm_cfg=dict(type='GN', num_groups=8, requires_grad=True))
    cfg.test_cfg.score_thr = 0.0
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def two_images():
    return make_batch([make_det_sample([[8, 8, 40, 40]], [0]),
                       make_det_sample([[4, 24, 36, 60], [40, 2, 60, 20]], [2, 1])])


def preprocess(model, data, training=False):
    data = model.data_preprocessor(copy.deepcopy(data), training)
    return data['inputs'], data['data_samples']


def test_tensor_mode_returns_heatmap_logits_and_distances_of_p3_to_p7():
    model = tiny_centernet()
    inputs, _ = preprocess(model, two_images())
    cls_scores, bbox_preds = model(inputs, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px input at strides 8..128
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, s, s) for s in sizes]
    assert all(torch.all(b >= 0) for b in bbox_preds)


def test_loss_mode_gives_the_heatmap_and_box_losses():
    model = tiny_centernet()
    inputs, samples = preprocess(model, two_images(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    # Distances start near 0 (point boxes): GIoU loss about 1, times loss_weight 2.
    assert 1.5 < losses['loss_bbox'].item() <= 2.0


def test_predict_returns_boxes_in_original_image_pixels():
    model = tiny_centernet().eval()
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
        assert torch.all(pred.scores <= 1) and torch.all(pred.scores[:-1] >= pred.scores[1:])
        expected = in_input.bboxes / torch.tensor([64 / 48, 2.0, 64 / 48, 2.0])
        assert torch.allclose(pred.bboxes, expected, atol=1e-4)


def test_a_few_sgd_steps_reduce_the_loss():
    model = tiny_centernet()
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


# ----------------------------------------------------------------------------- original CenterNet

# mmdetection 3.3's centernet_r18-dcnv2_8xb16-crop512-140e_coco.py, model section.
R18_MODEL = dict(
    type='CenterNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=18, norm_eval=False, norm_cfg=dict(type='BN'),
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(type='CTResNetNeck', in_channels=512, num_deconv_filters=(256, 128, 64),
              num_deconv_kernels=(4, 4, 4), use_dcn=True),
    bbox_head=dict(type='CenterNetHead', num_classes=80, in_channels=64, feat_channels=64,
                   loss_center_heatmap=dict(type='GaussianFocalLoss', loss_weight=1.0),
                   loss_wh=dict(type='L1Loss', loss_weight=0.1),
                   loss_offset=dict(type='L1Loss', loss_weight=1.0)),
    train_cfg=None,
    test_cfg=dict(topk=100, local_maximum_kernel=3, max_per_img=100))
CROP_PAD_TEST = dict(type='RandomCenterCropPad', ratios=None, border=None, mean=[0, 0, 0],
                     std=[1, 1, 1], to_rgb=True, test_mode=True,
                     test_pad_mode=['logical_or', 31], test_pad_add_pix=1)


def test_original_configs_have_mmdetections_values():
    dcn, plain = Config.fromfile(str(DCN)), Config.fromfile(str(PLAIN))
    assert dcn.model.to_dict() == R18_MODEL
    r18_plain = copy.deepcopy(R18_MODEL)
    r18_plain['neck']['use_dcn'] = False
    assert plain.model.to_dict() == r18_plain

    train_pipeline = [
        dict(type='LoadImageFromFile', backend_args=None),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
             saturation_range=(0.5, 1.5), hue_delta=18),
        dict(type='RandomCenterCropPad', crop_size=(512, 512),
             ratios=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3), mean=[0, 0, 0], std=[1, 1, 1],
             to_rgb=True, test_pad_mode=None),
        dict(type='Resize', scale=(512, 512), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')]
    # The base's dataset is replaced (_delete_) by a 5-times RepeatDataset.
    assert plain.train_dataloader.to_dict() == dict(
        batch_size=16, num_workers=4, persistent_workers=True,
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='AspectRatioBatchSampler'),
        dataset=dict(type='RepeatDataset', times=5, dataset=dict(
            type='CocoDataset', data_root='data/coco/',
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline,
            backend_args=None)))
    assert plain.val_dataloader.dataset.pipeline == [
        dict(type='LoadImageFromFile', backend_args=None, to_float32=True), CROP_PAD_TEST,
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border'))]
    assert plain.test_dataloader == plain.val_dataloader
    assert plain.optim_wrapper.to_dict() == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
        clip_grad=dict(max_norm=35, norm_type=2))
    assert plain.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
        dict(type='MultiStepLR', begin=0, end=28, by_epoch=True, milestones=[18, 24],
             gamma=0.1)]
    assert plain.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=28, val_interval=1)
    assert plain.auto_scale_lr.to_dict() == dict(enable=False, base_batch_size=128)
    # centernet_tta.py
    assert plain.tta_model == dict(type='DetTTAModel', tta_cfg=dict(
        nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    assert plain.tta_pipeline == [
        dict(type='LoadImageFromFile', to_float32=True, backend_args=None),
        dict(type='TestTimeAug', transforms=[
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [CROP_PAD_TEST],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [dict(type='PackDetInputs',
                  meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'flip',
                             'flip_direction', 'border'))]])]


def test_original_state_dict_keys_and_shapes_equal_mmdetection():
    for path, use_dcn in ((DCN, True), (PLAIN, False)):
        model = MODELS.build(Config.fromfile(str(path)).model)
        assert isinstance(model.bbox_head, CenterNetHead)
        assert shapes_of(model) == {
            **resnet18('backbone'),
            **ct_resnet_neck('neck', 512, (256, 128, 64), (4, 4, 4), use_dcn=use_dcn),
            **centernet_head('bbox_head', num_classes=80, in_channels=64, feat_channels=64),
        }


def tiny_original_centernet() -> CenterNet:
    """The plain ResNet-18 config shrunk: 16 base channels from scratch, a 16-8-8 neck,
    3 classes."""
    cfg = Config.fromfile(str(PLAIN)).model
    cfg.backbone.update(base_channels=16, init_cfg=None)
    cfg.neck.update(in_channels=128, num_deconv_filters=(16, 8, 8))
    cfg.bbox_head.update(num_classes=3, in_channels=8, feat_channels=8)
    cfg.test_cfg.topk = 10
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def bordered_images():
    data = two_images()
    for sample in data['data_samples']:
        sample.set_metainfo(dict(border=(0, 64, 0, 64)))
    return data


def test_original_centernet_loss_and_predict_modes():
    model = tiny_original_centernet()
    inputs, samples = preprocess(model, bordered_images(), training=True)
    heatmaps, whs, offsets = model(inputs, mode='tensor')
    assert heatmaps[0].shape == (2, 3, 16, 16) and whs[0].shape == (2, 2, 16, 16)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_center_heatmap', 'loss_wh', 'loss_offset'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())

    model.eval()
    inputs, samples = preprocess(model, bordered_images())
    with torch.no_grad():
        results = model(inputs, samples, mode='predict')
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result in results:
        pred = result.pred_instances
        assert len(pred) == 10 and pred.bboxes.shape == (10, 4)
        assert torch.all(pred.scores[:-1] >= pred.scores[1:]) and torch.all(pred.labels < 3)


def test_original_centernet_a_few_sgd_steps_reduce_the_loss():
    model = tiny_original_centernet()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = bordered_images()
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(8)]
    assert all(torch.isfinite(torch.tensor(losses)))
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = sum(model(inputs, samples, mode='loss').values()).item()
    assert after < 0.9 * losses[0]
