"""YOLOX: mmdetection's yolox_s model config, its batch multi-scale preprocessor, the three
forward modes and a tiny overfit."""
import copy
import logging
import types

import pytest
import torch
from helpers_csp_keys import csp_darknet, yolox_pafpn
from helpers_state_dict import shapes_of
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData

from mmdet_lite.engine.hooks import YOLOXModeSwitchHook
from mmdet_lite.models.dense_heads import YOLOXHead
from mmdet_lite.models.detectors import YOLOX, SingleStageDetector
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

# mmengine's BaseModel builds the data_preprocessor through the root registry, which finds
# DetDataPreprocessor only with mmdet_lite as the default scope.
register_all_modules()

BN = dict(type='BN', momentum=0.03, eps=0.001)
# mmdetection 3.3's configs/yolox/yolox_s_8xb8-300e_coco.py, model part.
YOLOX_S = dict(
    type='YOLOX',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchSyncRandomResize', random_size_range=(480, 800),
                             size_divisor=32, interval=10)]),
    backbone=dict(type='CSPDarknet', deepen_factor=0.33, widen_factor=0.5,
                  out_indices=(2, 3, 4), use_depthwise=False, spp_kernal_sizes=(5, 9, 13),
                  norm_cfg=BN, act_cfg=dict(type='Swish')),
    neck=dict(type='YOLOXPAFPN', in_channels=[128, 256, 512], out_channels=128,
              num_csp_blocks=1, use_depthwise=False,
              upsample_cfg=dict(scale_factor=2, mode='nearest'), norm_cfg=BN,
              act_cfg=dict(type='Swish')),
    bbox_head=dict(
        type='YOLOXHead', num_classes=80, in_channels=128, feat_channels=128, stacked_convs=2,
        strides=(8, 16, 32), use_depthwise=False, norm_cfg=BN, act_cfg=dict(type='Swish'),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum',
                      loss_weight=1.0),
        loss_bbox=dict(type='IoULoss', mode='square', eps=1e-16, reduction='sum',
                       loss_weight=5.0),
        loss_obj=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='sum',
                      loss_weight=1.0),
        loss_l1=dict(type='L1Loss', reduction='sum', loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5)),
    test_cfg=dict(score_thr=0.01, nms=dict(type='nms', iou_threshold=0.65)))


def tiny_yolox_cfg(batch_augments: bool = True) -> dict:
    """yolox_s shrunk: widen_factor 0.125 (backbone outputs 32, 64, 128 channels), a
    32-channel neck and head, 2 classes."""
    cfg = copy.deepcopy(YOLOX_S)
    cfg['backbone']['widen_factor'] = 0.125
    cfg['neck'].update(in_channels=[32, 64, 128], out_channels=32)
    cfg['bbox_head'].update(num_classes=2, in_channels=32, feat_channels=32)
    if not batch_augments:
        cfg['data_preprocessor'].pop('batch_augments')
    return cfg


def make_data(size: int = 64):
    """One uint8 image with a bright 24x16 rectangle, labelled class 1."""
    img = torch.full((3, size, size), 40, dtype=torch.uint8)
    img[:, 20:36, 16:40] = 220
    sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                         pad_shape=(size, size), scale_factor=(1.0, 1.0)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[16., 20., 40., 36.]]),
                                       labels=torch.tensor([1]))
    return dict(inputs=[img], data_samples=[sample])


def build(cfg: dict) -> YOLOX:
    model = MODELS.build(cfg)
    model.init_weights()
    return model


# ----------------------------------------------------------------------------- structure


def test_yolox_s_state_dict_matches_mmdet():
    model = MODELS.build(copy.deepcopy(YOLOX_S))
    assert type(model) is YOLOX and isinstance(model, SingleStageDetector)
    expected = csp_darknet('backbone', deepen_factor=0.33, widen_factor=0.5)
    expected.update(yolox_pafpn('neck', [128, 256, 512], 128, num_csp_blocks=1))
    # The head's own layout is checked against mmdetection's in test_yolox_head.py.
    head = YOLOXHead(num_classes=80, in_channels=128, feat_channels=128)
    expected.update({f'bbox_head.{k}': v for k, v in shapes_of(head).items()})
    assert shapes_of(model) == expected


def test_head_receives_train_and_test_cfg():
    model = MODELS.build(tiny_yolox_cfg())
    assert type(model.bbox_head.assigner).__name__ == 'SimOTAAssigner'
    assert model.bbox_head.assigner.center_radius == 2.5
    assert model.bbox_head.test_cfg['score_thr'] == 0.01


def test_neck_and_head_are_required():
    with pytest.raises(TypeError):
        YOLOX(backbone=YOLOX_S['backbone'], bbox_head=YOLOX_S['bbox_head'])


# ----------------------------------------------------------------------------- modes


def test_tensor_and_predict_modes():
    model = build(tiny_yolox_cfg()).eval()
    data = model.data_preprocessor(make_data(), False)
    cls_scores, bbox_preds, objectnesses = model(data['inputs'], mode='tensor')
    assert [tuple(t.shape) for t in cls_scores] == [(1, 2, s, s) for s in (8, 4, 2)]
    assert [tuple(t.shape) for t in bbox_preds] == [(1, 4, s, s) for s in (8, 4, 2)]
    assert [tuple(t.shape) for t in objectnesses] == [(1, 1, s, s) for s in (8, 4, 2)]
    (sample, ) = model(**data, mode='predict')
    pred = sample.pred_instances
    assert pred.bboxes.shape[1] == 4 and len(pred.scores) == len(pred.labels) == len(pred.bboxes)
    assert (pred.scores >= 0.01).all()


@pytest.fixture
def message_hub():
    """The current MessageHub (whose 'iter' BatchSyncRandomResize reads), restored after."""
    hub = MessageHub.get_current_instance()
    before = hub.get_info('iter')
    yield hub
    if before is None:
        hub.runtime_info.pop('iter', None)
    else:
        hub.update_info('iter', before)


def test_yolox_s_preprocessor_feeds_resized_batches_to_the_loss(message_hub):
    model = build(tiny_yolox_cfg())
    for iteration, expect_size in ((0, 64), (9, 64), (10, None)):
        message_hub.update_info('iter', iteration)
        data = model.data_preprocessor(make_data(), True)
        inputs, samples = data['inputs'], data['data_samples']
        size = inputs.shape[-1]
        if expect_size is not None:
            assert tuple(inputs.shape) == (1, 3, expect_size, expect_size)
        else:  # after iteration 9 a new size is drawn: a multiple of 32 in [480, 800]
            assert inputs.shape[-2] == size and size % 32 == 0 and 480 <= size <= 800
        # The gt box follows the image.
        scale = size / 64
        assert torch.allclose(samples[0].gt_instances.bboxes,
                              torch.tensor([[16., 20., 40., 36.]]) * scale)
        losses = model(**data, mode='loss')
        assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_obj'}
        assert all(torch.isfinite(v) for v in losses.values())


def test_mode_switch_hook_adds_the_l1_loss_to_the_detector_losses():
    model = build(tiny_yolox_cfg(batch_augments=False))
    runner = types.SimpleNamespace(
        model=model, epoch=0, max_epochs=3, logger=logging.getLogger('yolox_test'),
        train_dataloader=types.SimpleNamespace(
            dataset=types.SimpleNamespace(update_skip_type_keys=lambda keys: None),
            persistent_workers=False))
    hook = YOLOXModeSwitchHook(num_last_epochs=1)
    hook.before_train_epoch(runner)  # epoch 0: 0 + 1 < 3 - 1
    data = model.data_preprocessor(make_data(), True)
    assert 'loss_l1' not in model(**data, mode='loss')
    runner.epoch = 1
    hook.before_train_epoch(runner)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_obj', 'loss_l1'}
    assert losses['loss_l1'] > 0


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_tiny_yolox_overfits_one_image():
    model = build(tiny_yolox_cfg(batch_augments=False))
    model.bbox_head.use_l1 = True  # as after YOLOXModeSwitchHook: all four terms train
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=2e-3))
    history = []
    for _ in range(40):
        losses = model.train_step(make_data(), optim)
        history.append({k: v.item() for k, v in losses.items()})
    assert set(history[0]) == {'loss', 'loss_cls', 'loss_bbox', 'loss_obj', 'loss_l1'}
    first = sum(h['loss'] for h in history[:3]) / 3
    last = sum(h['loss'] for h in history[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    assert history[-1]['loss_bbox'] < history[0]['loss_bbox']

    # BN momentum is 0.03, so 40 steps leave the running statistics far from this image's:
    # predict with the batch statistics (train-mode BN) to see what the weights learned.
    with torch.no_grad():
        data = model.data_preprocessor(make_data(), False)
        (sample, ) = model.predict(data['inputs'], data['data_samples'])
    pred = sample.pred_instances
    assert len(pred) > 0 and pred.labels[0].item() == 1
    x1, y1, x2, y2 = pred.bboxes[0].tolist()
    inter = max(0., min(x2, 40) - max(x1, 16)) * max(0., min(y2, 36) - max(y1, 20))
    union = (x2 - x1) * (y2 - y1) + 24 * 16 - inter
    assert inter / union > 0.5
