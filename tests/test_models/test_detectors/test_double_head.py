"""Double-Head R-CNN: mmdetection 3.3's COCO config (configs/double_heads/
dh-faster-rcnn_r50_fpn_1x_coco.py, over Faster R-CNN), its model's keys (written from
mmdetection's definitions, helpers_two_stage_extra_keys), loss / predict and a tiny overfit.
"""
from pathlib import Path

import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample, tiny_two_stage_cfg
from helpers_state_dict import shapes_of
from helpers_two_stage_extra_keys import dh_faster_rcnn_r50_fpn_keys
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmdet_lite.models.roi_heads import DoubleConvFCBBoxHead, DoubleHeadRoIHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
CONFIG = CONFIGS / 'double_heads' / 'dh-faster-rcnn_r50_fpn_1x_coco.py'
FASTER = CONFIGS / 'faster_rcnn' / 'faster-rcnn_r50_fpn_1x_coco.py'


def load_cfg(path: Path = CONFIG) -> Config:
    register_all_modules()
    return Config.fromfile(str(path))


def tiny_dh_cfg() -> dict:
    cfg = tiny_two_stage_cfg()
    cfg['roi_head'].update(
        type='DoubleHeadRoIHead', reg_roi_scale_factor=1.3,
        bbox_head=dict(type='DoubleConvFCBBoxHead', num_convs=1, num_fcs=2, in_channels=16,
                       conv_out_channels=32, fc_out_channels=32, roi_feat_size=7,
                       num_classes=3,
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       reg_class_agnostic=False,
                       loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                     loss_weight=2.0),
                       loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=2.0)))
    return cfg


def test_config_holds_mmdetections_values():
    cfg = load_cfg()
    faster = load_cfg(FASTER)
    assert cfg.model.type == 'FasterRCNN'
    roi_head = cfg.model.roi_head
    assert roi_head.type == 'DoubleHeadRoIHead' and roi_head.reg_roi_scale_factor == 1.3
    # _delete_ drops Shared2FCBBoxHead's keys entirely.
    assert roi_head.bbox_head == dict(
        type='DoubleConvFCBBoxHead', num_convs=4, num_fcs=2, in_channels=256,
        conv_out_channels=1024, fc_out_channels=1024, roi_feat_size=7, num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        reg_class_agnostic=False,
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=2.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=2.0))
    assert roi_head.bbox_roi_extractor == faster.model.roi_head.bbox_roi_extractor
    for key in ('backbone', 'neck', 'rpn_head', 'train_cfg', 'test_cfg', 'data_preprocessor'):
        assert cfg.model[key] == faster.model[key], key
    assert cfg.val_evaluator == faster.val_evaluator


def test_coco_model_state_dict_keys_and_shapes():
    model = MODELS.build(load_cfg().model)
    assert type(model.roi_head) is DoubleHeadRoIHead
    assert type(model.roi_head.bbox_head) is DoubleConvFCBBoxHead
    # ResNet-50 318 + FPN 16 + RPN 6 + box head 98
    assert len(dh_faster_rcnn_r50_fpn_keys()) == 438
    assert shapes_of(model) == dh_faster_rcnn_r50_fpn_keys()


def test_loss_and_predict_on_a_small_image():
    model = build_detector(tiny_dh_cfg())
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2])]
    data = model.data_preprocessor(make_batch(samples), True)
    losses = model.train()(**data, mode='loss')
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox'}
    assert torch.isfinite(losses['loss_cls']) and torch.isfinite(losses['loss_bbox'])

    model.eval().roi_head.test_cfg.update(score_thr=0.0, max_per_img=8)
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        result = model(**data, mode='predict')[0].pred_instances
        cls_score, bbox_pred = model(data['inputs'], data['data_samples'], mode='tensor')[0]
    assert len(result) == 8 and result.bboxes.shape == (8, 4)
    assert torch.all(result.labels < 3) and result.labels.dtype == torch.long
    assert cls_score.shape[1] == 4 and bbox_pred.shape[1] == 12


@pytest.mark.slow
def test_sgd_steps_reduce_the_roi_losses():
    """The RoI head's losses on fixed proposals (and a fixed sampling seed), trained on."""
    model = build_detector(tiny_dh_cfg()).train()
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2]),
               make_det_sample([[4, 30, 36, 62]], [1])]
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
    # lr 0.005: with loss weights 2 the tiny head diverges at Faster R-CNN's test lr 0.02.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    for _ in range(15):
        total, _ = objective()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    with torch.no_grad():
        after = objective()[1]
    assert after['loss'] < 0.5 * before['loss']
    assert after['loss_cls'] < before['loss_cls']
    assert after['loss_bbox'] < before['loss_bbox']
    assert after['acc'] > before['acc']
