"""AutoAssign: mmdetection 3.3's config values, state_dict keys and shapes, the three forward
modes and a tiny overfit.

Expected config values are written from mmdetection's
configs/autoassign/autoassign_r50-caffe_fpn_1x_coco.py and its _base_ files; expected keys come
from helpers_centernet_autoassign_keys / helpers_fcos_keys / helpers_detr_keys, written from
the module definitions. The COCO model is built without ``init_weights`` (the caffe ResNet-50
init_cfg would download weights).
"""
import copy
import inspect
from pathlib import Path

import torch
from helpers import init_weights_quietly, make_batch, make_det_sample
from helpers_centernet_autoassign_keys import autoassign_head
from helpers_detr_keys import resnet50
from helpers_fcos_keys import fpn
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from mmdet_lite.models.dense_heads import AutoAssignHead
from mmdet_lite.models.detectors import AutoAssign, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIG = Path(__file__).resolve().parents[3] / 'configs' / 'autoassign' / \
    'autoassign_r50-caffe_fpn_1x_coco.py'

register_all_modules()  # DetDataPreprocessor through mmengine's root registry

# mmdetection 3.3's autoassign_r50-caffe_fpn_1x_coco.py, model section.
MODEL = dict(
    type='AutoAssign',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[102.9801, 115.9465, 122.7717],
                           std=[1.0, 1.0, 1.0], bgr_to_rgb=False, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=False),
                  norm_eval=True, style='caffe',
                  init_cfg=dict(type='Pretrained',
                                checkpoint='open-mmlab://detectron2/resnet50_caffe')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs=True, num_outs=5, relu_before_extra_convs=True,
              init_cfg=dict(type='Caffe2Xavier', layer='Conv2d')),
    bbox_head=dict(type='AutoAssignHead', num_classes=80, in_channels=256, stacked_convs=4,
                   feat_channels=256, strides=[8, 16, 32, 64, 128],
                   loss_bbox=dict(type='GIoULoss', loss_weight=5.0)),
    train_cfg=None,
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))


def load() -> Config:
    return Config.fromfile(str(CONFIG))


def test_config_has_mmdetections_values():
    cfg = load()
    assert cfg.model.to_dict() == MODEL
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]
    assert cfg.optim_wrapper.to_dict() == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001),
        paramwise_cfg=dict(norm_decay_mult=0.))
    assert cfg.auto_scale_lr.to_dict() == dict(enable=False, base_batch_size=16)
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.train_dataloader.batch_size == 2


def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(load().model)
    expected = {
        **resnet50('backbone'),
        # add_extra_convs=True is 'on_input': P6 from C5 (2048 channels).
        **fpn('neck', [256, 512, 1024, 2048], 256, start_level=1, num_outs=5,
              extra_source='on_input'),
        **autoassign_head('bbox_head', num_classes=80),
    }
    assert shapes_of(model) == expected
    state = {k: torch.rand(shape) if shape else torch.tensor(0.5) for k, shape in
             expected.items()}
    for k in state:
        if k.endswith('num_batches_tracked'):
            state[k] = torch.tensor(7)
    model.load_state_dict(state, strict=True)
    assert isinstance(model.bbox_head, AutoAssignHead)
    assert torch.equal(model.bbox_head.center_prior.sigma, state['bbox_head.center_prior.sigma'])


def test_detector_signature_requires_a_neck():
    assert issubclass(AutoAssign, SingleStageDetector)
    assert MODELS.get('AutoAssign') is AutoAssign
    params = inspect.signature(AutoAssign.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert params['neck'].default is inspect.Parameter.empty


# ----------------------------------------------------------------------------- forward modes


def tiny_autoassign() -> AutoAssign:
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


def test_tensor_mode_returns_scores_pixel_distances_and_objectness_of_p3_to_p7():
    model = tiny_autoassign()
    inputs, _ = preprocess(model, two_images())
    cls_scores, bbox_preds, objectnesses = model(inputs, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px input at strides 8..128
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, s, s) for s in sizes]
    assert [tuple(o.shape) for o in objectnesses] == [(2, 1, s, s) for s in sizes]
    # conv_reg's bias starts at 4: about 4 strides per side.
    for bbox_pred, stride in zip(bbox_preds, [8, 16, 32, 64, 128]):
        assert torch.allclose(bbox_pred.mean(), torch.tensor(4. * stride), rtol=0.1)


def test_loss_mode_gives_the_positive_negative_and_center_losses():
    model = tiny_autoassign()
    inputs, samples = preprocess(model, two_images(), training=True)
    losses = model(inputs, samples, mode='loss')
    assert set(losses) == {'loss_pos', 'loss_neg', 'loss_center'}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert all(v.item() > 0 for v in losses.values())


def test_predict_returns_boxes_in_original_image_pixels():
    model = tiny_autoassign().eval()
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
        # score = sigmoid(cls) * sigmoid(objectness) <= 1, highest first
        assert torch.all(pred.scores <= 1) and torch.all(pred.scores[:-1] >= pred.scores[1:])
        expected = in_input.bboxes / torch.tensor([64 / 48, 2.0, 64 / 48, 2.0])
        assert torch.allclose(pred.bboxes, expected, atol=1e-4)


def test_a_few_sgd_steps_reduce_the_loss():
    model = tiny_autoassign()
    optim_wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    data = two_images()
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(8)]
    assert all(torch.isfinite(torch.tensor(losses)))
    inputs, samples = preprocess(model, data, training=True)
    with torch.no_grad():
        after = sum(model(inputs, samples, mode='loss').values()).item()
    assert after < 0.9 * losses[0]


def test_an_image_without_objects_trains_without_nan():
    model = tiny_autoassign()
    data = make_batch([make_det_sample([], []), make_det_sample([[0, 0, 63, 63]], [2])])
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(),
                                                                   lr=0.01)))
    assert all(torch.isfinite(v) for v in log_vars.values())
    assert all(torch.isfinite(p).all() for p in model.parameters())
