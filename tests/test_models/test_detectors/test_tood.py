"""TOOD: mmdetection 3.3's COCO configs (anchor-free and anchor-based) and state_dict layout,
the three forward modes on a tiny model, both training stages.

Expected config values are written from mmdetection's tood_r50_fpn_1x_coco.py and
tood_r50_fpn_anchor-based_1x_coco.py; expected keys come from helpers_tood_vfnet_keys
(mmdetection's module definitions). The R-50 model is built without ``init_weights`` (its
init_cfg would download torchvision weights).
"""
import copy
import inspect
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, init_weights_quietly, make_batch, make_det_sample
from helpers_state_dict import shapes_of
from helpers_tood_vfnet_keys import tood_r50_fpn_coco
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from mmdet_lite.models.dense_heads import TOODHead
from mmdet_lite.models.detectors import TOOD, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

register_all_modules()

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'tood'
COCO_CONFIG = CONFIGS / 'tood_r50_fpn_1x_coco.py'
ANCHOR_BASED_CONFIG = CONFIGS / 'tood_r50_fpn_anchor-based_1x_coco.py'

# mmdetection 3.3's tood_r50_fpn_1x_coco.py, model part.
MMDET_MODEL = dict(
    type='TOOD',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=True, style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
              start_level=1, add_extra_convs='on_output', num_outs=5),
    bbox_head=dict(
        type='TOODHead', num_classes=80, in_channels=256, stacked_convs=6, feat_channels=256,
        anchor_type='anchor_free',
        anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                              scales_per_octave=1, strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        initial_loss_cls=dict(type='FocalLoss', use_sigmoid=True, activated=True, gamma=2.0,
                              alpha=0.25, loss_weight=1.0),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, activated=True, beta=2.0,
                      loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    train_cfg=dict(initial_epoch=4, initial_assigner=dict(type='ATSSAssigner', topk=9),
                   assigner=dict(type='TaskAlignedAssigner', topk=13), alpha=1, beta=6,
                   allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                  nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))


@pytest.fixture
def set_epoch():
    """Set the MessageHub's 'epoch' (what RuntimeInfoHook records); restored afterwards."""
    hub = MessageHub.get_current_instance()
    missing = object()
    old = hub.get_info('epoch', missing)
    yield lambda epoch: hub.update_info('epoch', epoch)
    if old is missing:
        hub.pop_info('epoch')
    else:
        hub.update_info('epoch', old)


def tiny_tood(config=COCO_CONFIG) -> TOOD:
    """The COCO model shrunk: ResNet-18 with 16 base channels, 32-channel neck and head
    (GN with 32 groups), 2 stacked convs, 3 classes, 16x16 anchors on P3."""
    cfg = Config.fromfile(str(config)).model
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


# ----------------------------------------------------------------------------- config / keys


def test_coco_configs_have_mmdetection_values():
    cfg = Config.fromfile(str(COCO_CONFIG))
    assert cfg.model.to_dict() == MMDET_MODEL
    assert cfg.optim_wrapper == dict(type='OptimWrapper',
                                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9,
                                                    weight_decay=0.0001))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'

    anchor_based = Config.fromfile(str(ANCHOR_BASED_CONFIG))
    expected = copy.deepcopy(MMDET_MODEL)
    expected['bbox_head']['anchor_type'] = 'anchor_based'
    assert anchor_based.model.to_dict() == expected
    assert anchor_based.optim_wrapper == cfg.optim_wrapper


@pytest.mark.slow
def test_state_dict_keys_and_shapes_equal_mmdetection():
    model = MODELS.build(Config.fromfile(str(COCO_CONFIG)).model)
    expected = tood_r50_fpn_coco()
    # ResNet-50 318, FPN 16; head: 6 inter convs x 3, 2 decompositions x 7, tood_cls/reg 4,
    # cls_prob / reg_offset modules 8, 5 scales
    assert len(expected) == 318 + 16 + 18 + 14 + 4 + 8 + 5
    assert shapes_of(model) == expected
    # so an mmdetection checkpoint loads strictly, values and all
    state = {k: torch.rand(shape) if shape else torch.tensor(3.5)
             for k, shape in expected.items() if not k.endswith('num_batches_tracked')}
    state.update({k: torch.tensor(7) for k in expected if k.endswith('num_batches_tracked')})
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.bbox_head.cls_decomp.layer_attention[2].weight,
                       state['bbox_head.cls_decomp.layer_attention.2.weight'])
    assert model.bbox_head.scales[4].scale.item() == 3.5


def test_signature_and_registry():
    params = inspect.signature(TOOD.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg']
    assert params['neck'].default is inspect.Parameter.empty
    assert MODELS.get('TOOD') is TOOD and issubclass(TOOD, SingleStageDetector)


# ----------------------------------------------------------------------------- forward modes


@pytest.mark.parametrize('config', [COCO_CONFIG, ANCHOR_BASED_CONFIG])
def test_tensor_loss_and_predict_modes(config, set_epoch):
    model = tiny_tood(config)
    assert isinstance(model.bbox_head, TOODHead)
    inputs, samples = preprocess(model, batch(), training=True)

    cls_scores, bbox_preds = model(inputs, mode='tensor')
    sizes = [8, 4, 2, 1, 1]  # 64 px at strides 8..128
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, s, s) for s in sizes]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, s, s) for s in sizes]
    assert all(((c > 0) & (c < 1)).all() for c in cls_scores)  # probabilities

    for epoch in (0, 4):  # ATSS stage, then task-aligned stage
        set_epoch(epoch)
        losses = model(inputs, samples, mode='loss')
        assert model.bbox_head.epoch == epoch
        assert set(losses) == {'loss_cls', 'loss_bbox'}
        assert all(len(v) == 5 for v in losses.values())
        assert_finite_losses(losses)
        assert sum(losses['loss_bbox']) > 0  # the gts found positives

    model.eval()
    with torch.no_grad():
        results = model(*preprocess(model, batch(scale_factor=(2.0, 2.0))), mode='predict')
    assert len(results) == 2 and all(isinstance(r, DetDataSample) for r in results)
    for result in results:
        pred = result.pred_instances
        assert 0 < len(pred) <= 100 and pred.bboxes.shape == (len(pred), 4)
        assert pred.labels.dtype == torch.long and torch.all(pred.labels < 3)
        assert torch.all((pred.scores > 0) & (pred.scores < 1))
        assert torch.equal(pred.scores, pred.scores.sort(descending=True)[0])


def test_predict_rescales_boxes_to_the_original_image():
    model = tiny_tood().eval()
    inputs, samples = preprocess(model, batch(scale_factor=(2.0, 2.0)))
    with torch.no_grad():
        in_input = [s.pred_instances.clone() for s in model.predict(
            inputs, copy.deepcopy(samples), rescale=False)]
        results = model.predict(inputs, samples, rescale=True)
    for result, resized in zip(results, in_input):
        assert torch.allclose(result.pred_instances.bboxes, resized.bboxes / 2, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('epoch', [0, 4])
def test_a_few_steps_reduce_the_loss(epoch, set_epoch):
    set_epoch(epoch)
    torch.manual_seed(0)
    model = tiny_tood()
    optim_wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=2e-3))
    data = batch()
    losses = [model.train_step(copy.deepcopy(data), optim_wrapper)['loss'].item()
              for _ in range(15)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]
