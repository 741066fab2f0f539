"""Cascade (Mask) R-CNN: the COCO configs hold mmdetection 3.3's values and build its
weight layout; the detector trains and predicts end to end; the shapes config is the
Faster R-CNN shapes recipe with the cascade model.

The expected model settings are written out from mmdetection's
``configs/_base_/models/cascade-rcnn_r50_fpn.py`` and ``cascade-mask-rcnn_r50_fpn.py``; the
expected keys come from ``helpers_cascade_keys`` (mmdetection's module definitions).
"""
import copy
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, build_detector, make_batch, make_det_sample
from helpers_cascade_keys import cascade_rcnn_r50_fpn
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmdet_lite.models.detectors import CascadeRCNN, TwoStageDetector
from mmdet_lite.models.roi_heads import CascadeRoIHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
BOX_1X = CONFIGS / 'cascade_rcnn' / 'cascade-rcnn_r50_fpn_1x_coco.py'
MASK_1X = CONFIGS / 'cascade_rcnn' / 'cascade-mask-rcnn_r50_fpn_1x_coco.py'
BOX_20E = CONFIGS / 'cascade_rcnn' / 'cascade-rcnn_r50_fpn_20e_coco.py'
MASK_20E = CONFIGS / 'cascade_rcnn' / 'cascade-mask-rcnn_r50_fpn_20e_coco.py'
SHAPES = CONFIGS / 'shapes' / 'cascade-rcnn_r18_fpn_shapes.py'
FASTER_SHAPES = CONFIGS / 'shapes' / 'faster-rcnn_r18_fpn_shapes.py'

STAGE_STDS = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
STAGE_IOUS = (0.5, 0.6, 0.7)


def mmdet_cascade_rcnn_model() -> dict:
    """mmdetection's cascade-rcnn_r50_fpn.py ``model``, less the backbone's ``init_cfg``.

    mmdetection points the backbone at ``torchvision://resnet50``; mmdet_lite downloads
    nothing, so its R-CNN bases leave that key out (see configs/_base_/models/
    faster-rcnn_r50_fpn.py).
    """
    def bbox_head(stds):
        return dict(
            type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=stds),
            reg_class_agnostic=True,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))

    def rcnn_stage(iou):
        return dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                          min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                         add_gt_as_proposals=True),
            pos_weight=-1, debug=False)

    return dict(
        type='CascadeRCNN',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                      frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                      norm_eval=True, style='pytorch'),
        neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
                  num_outs=5),
        rpn_head=dict(
            type='RPNHead', in_channels=256, feat_channels=256,
            anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                                  strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
        roi_head=dict(
            type='CascadeRoIHead', num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
            bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                    roi_layer=dict(type='RoIAlign', output_size=7,
                                                   sampling_ratio=0),
                                    out_channels=256, featmap_strides=[4, 8, 16, 32]),
            bbox_head=[bbox_head(stds) for stds in STAGE_STDS]),
        train_cfg=dict(
            rpn=dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                              min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5,
                             neg_pos_ub=-1, add_gt_as_proposals=False),
                allowed_border=0, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=2000, max_per_img=2000,
                              nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=[rcnn_stage(iou) for iou in STAGE_IOUS]),
        test_cfg=dict(
            rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                     min_bbox_size=0),
            rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=100)))


def mmdet_cascade_mask_rcnn_model() -> dict:
    """mmdetection's cascade-mask-rcnn_r50_fpn.py: the box model plus its mask settings."""
    model = mmdet_cascade_rcnn_model()
    model['data_preprocessor']['pad_mask'] = True
    model['roi_head'].update(
        mask_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=14,
                                               sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=256, conv_out_channels=256,
                       num_classes=80,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                                      loss_weight=1.0)))
    for stage in model['train_cfg']['rcnn']:
        stage['mask_size'] = 28
    model['test_cfg']['rcnn']['mask_thr_binary'] = 0.5
    return model


def load(path: Path) -> Config:
    register_all_modules()
    return Config.fromfile(str(path))


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize('path, expected', [
    (BOX_1X, mmdet_cascade_rcnn_model), (MASK_1X, mmdet_cascade_mask_rcnn_model),
    (BOX_20E, mmdet_cascade_rcnn_model), (MASK_20E, mmdet_cascade_mask_rcnn_model)
], ids=['box_1x', 'mask_1x', 'box_20e', 'mask_20e'])
def test_model_settings_are_mmdetections(path, expected):
    assert load(path).model.to_dict() == expected()


@pytest.mark.parametrize('path, annotations', [
    (BOX_1X, dict(type='LoadAnnotations', with_bbox=True)),
    (MASK_1X, dict(type='LoadAnnotations', with_bbox=True, with_mask=True)),
], ids=['box', 'mask'])
def test_coco_data_and_1x_schedule(path, annotations):
    cfg = load(path)
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert annotations in cfg.train_dataloader.dataset.pipeline
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.param_scheduler[1].milestones == [8, 11]
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.02, momentum=0.9,
                                               weight_decay=0.0001)


@pytest.mark.parametrize('long, short', [(BOX_20E, BOX_1X), (MASK_20E, MASK_1X)],
                         ids=['box', 'mask'])
def test_20e_configs_differ_from_1x_only_by_mmdetections_20e_schedule(long, short):
    long_cfg, short_cfg = load(long).to_dict(), load(short).to_dict()
    # mmdetection's schedules/schedule_20e.py
    assert long_cfg.pop('train_cfg') == dict(type='EpochBasedTrainLoop', max_epochs=20,
                                             val_interval=1)
    assert long_cfg.pop('param_scheduler') == [
        dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=20, by_epoch=True, milestones=[16, 19],
             gamma=0.1)
    ]
    for name in ('train_cfg', 'param_scheduler'):
        short_cfg.pop(name)
    assert long_cfg == short_cfg


# ----------------------------------------------------------------------------- weights


def test_expected_key_counts():
    # Faster R-CNN's 348 keys with its one box head (8) replaced by three; each of the
    # three FCN mask heads adds 4 convs, the upsample and the logits (12 keys).
    assert len(cascade_rcnn_r50_fpn()) == 348 - 8 + 3 * 8 == 364
    assert len(cascade_rcnn_r50_fpn(with_mask=True)) == 364 + 3 * 12


@pytest.mark.slow
@pytest.mark.parametrize('path, with_mask', [(BOX_1X, False), (MASK_1X, True)],
                         ids=['box', 'mask'])
def test_state_dict_keys_and_shapes_are_mmdetections(path, with_mask):
    model = MODELS.build(load(path).model)
    assert type(model) is CascadeRCNN and isinstance(model, TwoStageDetector)
    assert type(model.roi_head) is CascadeRoIHead and model.roi_head.with_mask == with_mask
    assert shapes_of(model) == cascade_rcnn_r50_fpn(with_mask=with_mask)


# ----------------------------------------------------------------------------- running


def small_model_cfg(path: Path, num_classes: int = 3):
    """A COCO cascade config at a tiny width (ResNet-18 with 8 base channels, 16-channel
    FPN and heads) and with fewer proposals / RoIs; the structure is untouched."""
    cfg = load(path).model
    cfg.backbone.update(depth=18, base_channels=8)
    cfg.neck.update(in_channels=[8, 16, 32, 64], out_channels=16)
    cfg.rpn_head.update(in_channels=16, feat_channels=16)
    cfg.roi_head.bbox_roi_extractor.out_channels = 16
    for head in cfg.roi_head.bbox_head:
        head.update(in_channels=16, fc_out_channels=32, num_classes=num_classes)
    if 'mask_head' in cfg.roi_head:
        cfg.roi_head.mask_roi_extractor.out_channels = 16
        cfg.roi_head.mask_head.update(in_channels=16, conv_out_channels=16,
                                      num_classes=num_classes)
    cfg.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=50)
    for stage in cfg.train_cfg.rcnn:
        stage.sampler.num = 64
    cfg.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    return cfg


def gt_samples(with_mask: bool, **meta):
    return [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=with_mask,
                            **meta),
            make_det_sample([[4, 30, 36, 62]], [1], with_mask=with_mask, **meta)]


def stage_loss_names(with_mask: bool):
    names = ['loss_cls', 'acc', 'loss_bbox'] + (['loss_mask'] if with_mask else [])
    return [f's{s}.{n}' for s in range(3) for n in names]


@pytest.mark.parametrize('path, with_mask', [(BOX_1X, False), (MASK_1X, True)],
                         ids=['box', 'mask'])
def test_loss_predict_and_tensor_modes_on_small_images(path, with_mask):
    model = build_detector(small_model_cfg(path))
    assert type(model) is CascadeRCNN

    model.train()
    data = model.data_preprocessor(make_batch(gt_samples(with_mask)), True)
    torch.manual_seed(0)
    losses = model(**data, mode='loss')
    assert list(losses) == ['loss_rpn_cls', 'loss_rpn_bbox'] + stage_loss_names(with_mask)
    assert_finite_losses(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    # The last stage learns too (its inputs are refined boxes, without a gradient path).
    assert model.roi_head.bbox_head[2].fc_cls.weight.grad.abs().sum() > 0
    if with_mask:
        assert model.roi_head.mask_head[2].conv_logits.weight.grad.abs().sum() > 0

    model.eval()
    model.roi_head.test_cfg.update(score_thr=0.0, max_per_img=5)
    # The 64x64 input is the original 128x96 image resized by (0.5, 2/3).
    samples = gt_samples(with_mask, ori_shape=(96, 128), scale_factor=(0.5, 2 / 3))
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        predictions = model(**data, mode='predict')
    for sample in predictions:
        result = sample.pred_instances
        assert len(result) == 5
        assert result.bboxes.shape == (5, 4) and result.scores.shape == (5, )
        assert result.labels.dtype == torch.long and result.labels.max() < 3
        assert result.bboxes[:, 0::2].max() <= 128 and result.bboxes[:, 1::2].max() <= 96
        if with_mask:
            assert result.masks.shape == (5, 96, 128) and result.masks.dtype == torch.bool
        else:
            assert 'masks' not in result

    with torch.no_grad():
        outs = model(**data, mode='tensor')
    assert isinstance(outs, tuple) and len(outs) == 1
    roi_outs = outs[0]
    assert len(roi_outs) == (3 if with_mask else 2)
    cls_scores, bbox_preds = roi_outs[:2]
    assert len(cls_scores) == len(bbox_preds) == 2
    for i in range(2):
        num = len(cls_scores[i])
        assert 0 < num <= 50  # test_cfg.rpn.max_per_img
        assert cls_scores[i].shape == (num, 4) and bbox_preds[i].shape == (num, 4)
        if with_mask:
            assert roi_outs[2][i].shape == (num, 3, 28, 28)
            assert 0 <= roi_outs[2][i].min() and roi_outs[2][i].max() <= 1  # probabilities


def test_shapes_config_is_the_faster_rcnn_recipe_with_the_cascade():
    cascade, faster = load(SHAPES), load(FASTER_SHAPES)
    # Data, schedule and runtime are the Faster R-CNN shapes config's.
    assert {k: v for k, v in cascade.to_dict().items() if k != 'model'} == \
        {k: v for k, v in faster.to_dict().items() if k != 'model'}
    model, reference = cascade.model, faster.model
    assert model.type == 'CascadeRCNN' and model.roi_head.type == 'CascadeRoIHead'
    for part in ('backbone', 'neck'):
        assert model[part] == reference[part], part
    assert model.rpn_head.in_channels == model.rpn_head.feat_channels == 64
    assert model.roi_head.bbox_roi_extractor.out_channels == 64
    assert model.train_cfg.rpn_proposal.max_per_img == 300
    assert model.train_cfg.rpn_proposal.nms_pre == 1000
    assert model.test_cfg.rpn == reference.test_cfg.rpn
    reference_head = reference.roi_head.bbox_head
    for stage, (head, stds, iou) in enumerate(zip(model.roi_head.bbox_head, STAGE_STDS,
                                                  STAGE_IOUS)):
        assert (head.in_channels, head.fc_out_channels, head.num_classes) == \
            (reference_head.in_channels, reference_head.fc_out_channels, 3)
        assert head.bbox_coder.target_stds == stds and head.reg_class_agnostic
        rcnn = model.train_cfg.rcnn[stage]
        assert rcnn.sampler.num == reference.train_cfg.rcnn.sampler.num == 128
        assert rcnn.assigner.pos_iou_thr == rcnn.assigner.neg_iou_thr == iou


def test_shapes_config_builds_and_runs_a_loss_forward():
    cfg = load(SHAPES).model
    model = build_detector(cfg).train()
    assert type(model) is CascadeRCNN and len(model.roi_head.bbox_head) == 3
    data = model.data_preprocessor(make_batch(gt_samples(False)), True)
    torch.manual_seed(0)
    losses = model(**data, mode='loss')
    assert list(losses) == ['loss_rpn_cls', 'loss_rpn_bbox'] + stage_loss_names(False)
    assert_finite_losses(losses)


# ----------------------------------------------------------------------------- training


def fixed_proposals(gt_bboxes: torch.Tensor) -> InstanceData:
    """Shifted copies of the GT boxes plus a grid of 24 px boxes over the 64x64 image."""
    grid = torch.tensor([[x, y, x + 24, y + 24] for x in range(0, 48, 8)
                         for y in range(0, 48, 8)], dtype=torch.float32)
    boxes = torch.cat([gt_bboxes + torch.tensor([3., -2., 2., 3.]),
                       gt_bboxes + torch.tensor([-4., 2., -3., -2.]), grid])
    return InstanceData(bboxes=boxes.clamp(0, 64))


def objective(model, data, proposals) -> dict:
    """Losses on fixed proposals with a fixed sampling seed: a function of the weights.

    (The training loss itself is not monotone: as the RPN and the early stages improve,
    more RoIs become positives of the later stages and add box terms.)
    """
    torch.manual_seed(0)
    with torch.no_grad():
        x = model.extract_feat(data['inputs'])
        losses = model.rpn_head.loss(x, data['data_samples'])
        losses.update(model.roi_head.loss(x, copy.deepcopy(proposals), data['data_samples']))
    return model.parse_losses(losses)[1]


@pytest.mark.slow
@pytest.mark.parametrize('path, with_mask', [(BOX_1X, False), (MASK_1X, True)],
                         ids=['box', 'mask'])
def test_sgd_steps_reduce_the_losses(path, with_mask):
    torch.manual_seed(0)
    model = build_detector(small_model_cfg(path)).train()
    data = model.data_preprocessor(make_batch(gt_samples(with_mask)), True)
    proposals = [fixed_proposals(s.gt_instances.bboxes) for s in data['data_samples']]
    before = objective(model, data, proposals)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(15):
        total, _ = model.parse_losses(model(**data, mode='loss'))
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    after = objective(model, data, proposals)

    assert after['loss'] < 0.75 * before['loss']
    assert after['loss_rpn_cls'] < before['loss_rpn_cls']
    for stage in range(3):
        assert after[f's{stage}.loss_cls'] < before[f's{stage}.loss_cls'], stage
    assert after['s0.acc'] > before['s0.acc']
    if with_mask:
        assert after['s0.loss_mask'] < before['s0.loss_mask']
