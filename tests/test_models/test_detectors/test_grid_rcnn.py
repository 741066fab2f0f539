"""Grid R-CNN: mmdetection 3.3's COCO configs (configs/grid_rcnn/, the model written out in
grid-rcnn_r50_fpn_gn-head_2x_coco.py over the dataset and runtime bases), the COCO model's
keys (written from mmdetection's definitions, helpers_grid_rcnn_keys), the loss / predict /
tensor modes on a tiny model, and a tiny overfit.

The R-50 model is built without ``init_weights`` (its init_cfg would download weights).
"""
import inspect
from pathlib import Path

import pytest
import torch
from helpers import assert_finite_losses, build_detector, make_batch, make_det_sample
from helpers_grid_rcnn_keys import grid_rcnn_r50_fpn_keys, tiny_grid_rcnn_cfg
from helpers_state_dict import shapes_of
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmdet_lite.models.detectors import GridRCNN, TwoStageDetector
from mmdet_lite.models.roi_heads import GridHead, GridRoIHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs' / 'grid_rcnn'
CONFIG = CONFIGS / 'grid-rcnn_r50_fpn_gn-head_2x_coco.py'

# mmdetection 3.3's grid-rcnn_r50_fpn_gn-head_2x_coco.py, model part.
MMDET_MODEL = dict(
    type='GridRCNN',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=True, style='pytorch',
                  init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
    rpn_head=dict(
        type='RPNHead', in_channels=256, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type='GridRoIHead',
        bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=7,
                                               sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(type='Shared2FCBBoxHead', with_reg=False, in_channels=256,
                       fc_out_channels=1024, roi_feat_size=7, num_classes=80,
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                                       target_means=[0., 0., 0., 0.],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       reg_class_agnostic=False),
        grid_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=14,
                                               sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        grid_head=dict(type='GridHead', grid_points=9, num_convs=8, in_channels=256,
                       point_feat_channels=64, norm_cfg=dict(type='GN', num_groups=36),
                       loss_grid=dict(type='CrossEntropyLoss', use_sigmoid=True,
                                      loss_weight=15))),
    train_cfg=dict(
        rpn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                               min_pos_iou=0.3, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                              add_gt_as_proposals=False),
                 allowed_border=0, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=2000,
                          nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                                min_pos_iou=0.5, ignore_iof_thr=-1),
                  sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25,
                               neg_pos_ub=-1, add_gt_as_proposals=True),
                  pos_radius=1, pos_weight=-1, max_num_grid=192, debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                 min_bbox_size=0),
        rcnn=dict(score_thr=0.03, nms=dict(type='nms', iou_threshold=0.3), max_per_img=100)))


def load_cfg(name: str = CONFIG.name) -> Config:
    register_all_modules()
    return Config.fromfile(str(CONFIGS / name))


# ----------------------------------------------------------------------- configs
def test_2x_config_holds_mmdetections_values():
    cfg = load_cfg()
    assert cfg.model.to_dict() == MMDET_MODEL
    assert cfg.optim_wrapper == dict(type='OptimWrapper',
                                     optimizer=dict(type='SGD', lr=0.02, momentum=0.9,
                                                    weight_decay=0.0001))
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=25, val_interval=1)
    assert cfg.val_cfg == dict(type='ValLoop') and cfg.test_cfg == dict(type='TestLoop')
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=1.0 / 80, by_epoch=False, begin=0, end=3665),
        dict(type='MultiStepLR', begin=0, end=25, by_epoch=True, milestones=[17, 23],
             gamma=0.1)]
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_dataloader.dataset.type == 'CocoDataset'
    assert cfg.val_evaluator.metric == 'bbox'


def test_1x_config_changes_only_the_schedule():
    cfg, base = load_cfg('grid-rcnn_r50_fpn_gn-head_1x_coco.py'), load_cfg()
    assert cfg.model == base.model
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
    assert cfg.param_scheduler == [
        dict(type='LinearLR', start_factor=0.0001, by_epoch=False, begin=0, end=500),
        dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11],
             gamma=0.1)]


@pytest.mark.parametrize('name, backbone', [
    ('grid-rcnn_r101_fpn_gn-head_2x_coco.py',
     dict(type='ResNet', depth=101, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=1,
          norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch',
          init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101'))),
    ('grid-rcnn_x101-32x4d_fpn_gn-head_2x_coco.py',
     dict(type='ResNeXt', depth=101, groups=32, base_width=4, num_stages=4,
          out_indices=(0, 1, 2, 3), frozen_stages=1,
          norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch',
          init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext101_32x4d'))),
    ('grid-rcnn_x101-64x4d_fpn_gn-head_2x_coco.py',
     dict(type='ResNeXt', depth=101, groups=64, base_width=4, num_stages=4,
          out_indices=(0, 1, 2, 3), frozen_stages=1,
          norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, style='pytorch',
          init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d'))),
])
def test_deeper_backbone_configs(name, backbone):
    cfg, base = load_cfg(name), load_cfg()
    assert cfg.model.backbone.to_dict() == backbone
    for key in ('neck', 'rpn_head', 'roi_head', 'train_cfg', 'test_cfg'):
        assert cfg.model[key] == base.model[key], key
    assert cfg.param_scheduler == base.param_scheduler


def test_constructor_arguments_are_mmdetections():
    params = inspect.signature(GridRCNN.__init__).parameters
    assert list(params) == ['self', 'backbone', 'rpn_head', 'roi_head', 'train_cfg',
                            'test_cfg', 'neck', 'data_preprocessor', 'init_cfg']
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
    assert required == ['self', 'backbone', 'rpn_head', 'roi_head', 'train_cfg', 'test_cfg']
    assert MODELS.get('GridRCNN') is GridRCNN and issubclass(GridRCNN, TwoStageDetector)


def test_coco_model_state_dict_keys_and_shapes():
    model = MODELS.build(load_cfg().model)
    assert type(model.roi_head) is GridRoIHead and type(model.roi_head.grid_head) is GridHead
    assert model.roi_head.train_cfg.max_num_grid == 192
    expected = grid_rcnn_r50_fpn_keys()
    # ResNet-50 318 + FPN 16 + RPN 6 + box head (no fc_reg) 6 + grid head 230
    assert len(expected) == 576
    assert shapes_of(model) == expected


# ----------------------------------------------------------------------- forward modes
SAMPLES = ([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2])


def test_loss_predict_and_tensor_modes():
    model = build_detector(tiny_grid_rcnn_cfg())
    samples = [make_det_sample(*SAMPLES)]
    data = model.data_preprocessor(make_batch(samples), True)
    torch.manual_seed(0)
    losses = model.train()(**data, mode='loss')
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_grid'}
    assert_finite_losses(losses)

    model.eval().roi_head.test_cfg.update(score_thr=0.0, max_per_img=5)
    samples = [make_det_sample(*SAMPLES, img_shape=(64, 64), ori_shape=(32, 128),
                               scale_factor=(0.5, 2.0))]
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        result = model(**data, mode='predict')[0].pred_instances
        outs = model(data['inputs'], data['data_samples'], mode='tensor')[0]  # (roi_outs, )
    assert set(result.keys()) == {'bboxes', 'scores', 'labels'}
    assert result.bboxes.shape == (5, 4) and result.labels.dtype == torch.long
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    cls_score, grid_preds = outs
    assert cls_score.shape[1] == 4
    assert grid_preds['fused'].shape == (min(len(cls_score), 100), 9, 28, 28)


@pytest.mark.slow
def test_sgd_steps_reduce_the_roi_losses():
    """The RoI losses on fixed proposals (and a fixed sampling / jitter seed), trained on."""
    model = build_detector(tiny_grid_rcnn_cfg()).train()
    samples = [make_det_sample(*SAMPLES), make_det_sample([[4, 30, 36, 62]], [1])]
    data = model.data_preprocessor(make_batch(samples), True)
    grid = torch.tensor([[0., 0., 24., 24.], [30., 30., 60., 60.], [10., 40., 40., 64.]])
    proposals = [InstanceData(bboxes=torch.cat([s.gt_instances.bboxes + 2,
                                                s.gt_instances.bboxes - 3, grid]).clamp(0, 64))
                 for s in data['data_samples']]

    def objective():
        torch.manual_seed(0)
        x = model.extract_feat(data['inputs'])
        return model.parse_losses(model.roi_head.loss(x, proposals, data['data_samples']))

    with torch.no_grad():
        before = objective()[1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for _ in range(15):
        total, _ = objective()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    with torch.no_grad():
        after = objective()[1]
    assert after['loss_cls'] < 0.5 * before['loss_cls']
    assert after['loss'] < before['loss']
    # the heatmap deconvs start at std 0.001, so with SGD the grid loss moves slowly here;
    # the grid head's own overfit (test_grid_head.py) shows it learning the points
    assert after['loss_grid'] < before['loss_grid']
