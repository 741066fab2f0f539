"""RTMDet detector: SyncBN conversion only when distributed, the three modes, overfitting."""
import copy
import inspect

import pytest
import torch
from mmengine.structures import InstanceData
from torchvision.ops import box_iou

from mmdet_lite.models.detectors import RTMDet, SingleStageDetector
from mmdet_lite.models.detectors import rtmdet as rtmdet_module
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

register_all_modules()

BN = dict(type='BN', momentum=0.03, eps=0.001)
SILU = dict(type='SiLU', inplace=True)

# rtmdet_l's model with a tiny CSPNeXt (channels 32/64/128 at strides 8/16/32), 16-channel
# neck and head, 2 classes, and BN instead of SyncBN so that it trains on one CPU process.
TINY_RTMDET = dict(
    type='RTMDet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675],
                           std=[57.375, 57.12, 58.395], bgr_to_rgb=False, batch_augments=None),
    backbone=dict(type='CSPNeXt', arch='P5', expand_ratio=0.5, deepen_factor=0.167,
                  widen_factor=0.125, channel_attention=True, norm_cfg=BN, act_cfg=SILU),
    neck=dict(type='CSPNeXtPAFPN', in_channels=[32, 64, 128], out_channels=16,
              num_csp_blocks=1, expand_ratio=0.5, norm_cfg=BN, act_cfg=SILU),
    bbox_head=dict(
        type='RTMDetSepBNHead', num_classes=2, in_channels=16, stacked_convs=2,
        feat_channels=16,
        anchor_generator=dict(type='MlvlPointGenerator', offset=0, strides=[8, 16, 32]),
        bbox_coder=dict(type='DistancePointBBoxCoder'),
        loss_cls=dict(type='QualityFocalLoss', use_sigmoid=True, beta=2.0, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0), with_objectness=False,
        exp_on_reg=False, share_conv=True, pred_kernel_size=1, norm_cfg=BN, act_cfg=SILU),
    train_cfg=dict(assigner=dict(type='DynamicSoftLabelAssigner', topk=13), allowed_border=-1,
                   pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=30000, min_bbox_size=0, score_thr=0.001,
                  nms=dict(type='nms', iou_threshold=0.65), max_per_img=300))


def build(**kwargs) -> RTMDet:
    cfg = copy.deepcopy(TINY_RTMDET)
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def make_sample(boxes, labels, img_shape=(64, 64), scale_factor=(1.0, 1.0)) -> DetDataSample:
    sample = DetDataSample(metainfo=dict(img_shape=img_shape, pad_shape=img_shape,
                                         batch_input_shape=img_shape, ori_shape=img_shape,
                                         scale_factor=scale_factor))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(labels, dtype=torch.long))
    return sample


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


# ----------------------------------------------------------------------------- construction


def test_signature_and_registry():
    params = inspect.signature(RTMDet).parameters
    assert list(params) == ['backbone', 'neck', 'bbox_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg', 'use_syncbn']
    assert params['neck'].default is inspect.Parameter.empty  # required, as in mmdetection
    assert params['use_syncbn'].default is True
    model = build()
    assert type(model) is RTMDet and isinstance(model, SingleStageDetector)
    assert type(model.bbox_head).__name__ == 'RTMDetSepBNHead'
    assert model.bbox_head.train_cfg['assigner']['type'] == 'DynamicSoftLabelAssigner'


def test_single_process_keeps_batch_norm():
    model = build()  # use_syncbn=True by default
    norms = batch_norms(model)
    assert norms and not any(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)


@pytest.mark.parametrize('use_syncbn, converted', [(True, True), (False, False)])
def test_distributed_converts_to_sync_bn(monkeypatch, use_syncbn, converted):
    calls = []
    convert = torch.nn.SyncBatchNorm.convert_sync_batchnorm

    def spy(module, process_group=None):
        calls.append(module)
        return convert(module, process_group)

    monkeypatch.setattr(rtmdet_module, 'get_world_size', lambda: 2)
    monkeypatch.setattr(torch.nn.SyncBatchNorm, 'convert_sync_batchnorm', spy)
    model = build(use_syncbn=use_syncbn)
    # The conversion recurses through the class attribute, so the spy also sees submodules;
    # the first call is on the detector.
    if converted:
        assert calls and calls[0] is model
    else:
        assert calls == []
    # The conversion replaces the modules inside the detector itself.
    assert all(isinstance(m, torch.nn.SyncBatchNorm) == converted for m in batch_norms(model))


# ----------------------------------------------------------------------------- modes


def test_tensor_loss_and_predict_modes():
    model = build()
    inputs = torch.rand(2, 3, 64, 64) * 255
    samples = [make_sample([[8., 10., 40., 50.]], [1]), make_sample([], [])]
    data = model.data_preprocessor(dict(inputs=list(inputs), data_samples=samples), True)

    cls_scores, bbox_preds = model(data['inputs'], data['data_samples'], mode='tensor')
    assert [tuple(c.shape) for c in cls_scores] == [(2, 2, 8, 8), (2, 2, 4, 4), (2, 2, 2, 2)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 4, 8, 8), (2, 4, 4, 4), (2, 4, 2, 2)]

    losses = model(data['inputs'], data['data_samples'], mode='loss')
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    assert len(losses['loss_cls']) == 3 and len(losses['loss_bbox']) == 3
    assert all(torch.isfinite(v) for v in losses['loss_cls'] + losses['loss_bbox'])

    model.eval()
    with torch.no_grad():
        results = model(data['inputs'], data['data_samples'], mode='predict')
    assert len(results) == 2 and isinstance(results[0], DetDataSample)
    pred = results[0].pred_instances
    assert pred.bboxes.dim() == 2 and pred.bboxes.shape[1] == 4
    assert pred.scores.shape == pred.labels.shape == (len(pred.bboxes), )
    assert len(pred.bboxes) <= 300


@pytest.mark.slow
def test_overfits_one_image():
    """30 AdamW steps on one 64x64 image with one box.

    exp_on_reg=True (rtmdet_l's setting): the initial boxes are stride-sized, so the IoU soft
    labels and the losses are meaningful from the first step. (With raw distances near 0 the
    IoUs, and with them the normalised losses, start near 0 and first grow.)
    """
    torch.manual_seed(0)
    model = build(bbox_head=dict(TINY_RTMDET['bbox_head'], exp_on_reg=True))
    image = torch.full((1, 3, 64, 64), 114.0)
    image[:, :, 16:48, 12:44] = torch.tensor([20., 200., 60.]).view(1, 3, 1, 1)
    gt_box = torch.tensor([[12., 16., 44., 48.]])
    sample = make_sample(gt_box.tolist(), [1])
    data = model.data_preprocessor(dict(inputs=list(image), data_samples=[sample]), True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-3)
    totals = []
    for _ in range(30):
        losses = model(data['inputs'], data['data_samples'], mode='loss')
        total = sum(sum(v) for v in losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.25 * totals[0], totals

    # Still in train mode: after 30 steps the BN running statistics (momentum 0.03) lag far
    # behind the batch statistics the weights were fitted with.
    with torch.no_grad():
        pred = model(data['inputs'], data['data_samples'], mode='predict')[0].pred_instances
    best = pred.scores.argmax()
    assert pred.labels[best] == 1 and pred.scores[best] > 0.5
    assert box_iou(pred.bboxes[best:best + 1], gt_box).item() > 0.7
