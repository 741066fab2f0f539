"""Mask Scoring R-CNN: mmdetection 3.3's COCO config (configs/ms_rcnn/
ms-rcnn_r50_fpn_1x_coco.py, over Mask R-CNN), its model's keys (written from mmdetection's
definitions, helpers_two_stage_extra_keys), loss / predict / tensor modes and a tiny overfit.
"""
import inspect
from pathlib import Path

import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample, tiny_two_stage_cfg
from helpers_state_dict import shapes_of
from helpers_two_stage_extra_keys import ms_rcnn_r50_fpn_keys
from mmengine.config import Config
from mmengine.structures import InstanceData

from mmdet_lite.models.detectors import MaskScoringRCNN
from mmdet_lite.models.roi_heads import MaskIoUHead, MaskScoringRoIHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[3] / 'configs'
CONFIG = CONFIGS / 'ms_rcnn' / 'ms-rcnn_r50_fpn_1x_coco.py'
MASK = CONFIGS / 'mask_rcnn' / 'mask-rcnn_r50_fpn_1x_coco.py'


def load_cfg(path: Path = CONFIG) -> Config:
    register_all_modules()
    return Config.fromfile(str(path))


def tiny_ms_cfg() -> dict:
    cfg = tiny_two_stage_cfg(with_mask=True)
    cfg['type'] = 'MaskScoringRCNN'
    cfg['roi_head'].update(
        type='MaskScoringRoIHead',
        mask_iou_head=dict(type='MaskIoUHead', num_convs=2, num_fcs=1, roi_feat_size=14,
                           in_channels=16, conv_out_channels=16, fc_out_channels=32,
                           num_classes=3))
    cfg['train_cfg']['rcnn']['mask_thr_binary'] = 0.5
    return cfg


def test_config_holds_mmdetections_values():
    cfg = load_cfg()
    mask = load_cfg(MASK)
    assert cfg.model.type == 'MaskScoringRCNN'
    assert cfg.model.roi_head.type == 'MaskScoringRoIHead'
    assert cfg.model.roi_head.mask_iou_head == dict(
        type='MaskIoUHead', num_convs=4, num_fcs=2, roi_feat_size=14, in_channels=256,
        conv_out_channels=256, fc_out_channels=1024, num_classes=80)
    assert cfg.model.train_cfg.rcnn.mask_thr_binary == 0.5
    # Everything else is Mask R-CNN's.
    for key in ('bbox_roi_extractor', 'bbox_head', 'mask_roi_extractor', 'mask_head'):
        assert cfg.model.roi_head[key] == mask.model.roi_head[key], key
    for key in ('backbone', 'neck', 'rpn_head', 'test_cfg', 'data_preprocessor'):
        assert cfg.model[key] == mask.model[key], key
    rcnn = dict(cfg.model.train_cfg.rcnn)
    del rcnn['mask_thr_binary']
    assert rcnn == mask.model.train_cfg.rcnn
    assert cfg.model.train_cfg.rpn == mask.model.train_cfg.rpn
    assert cfg.val_evaluator.metric == ['bbox', 'segm']


def test_constructor_arguments_are_mmdetections():
    params = inspect.signature(MaskScoringRCNN.__init__).parameters
    assert list(params) == ['self', 'backbone', 'rpn_head', 'roi_head', 'train_cfg',
                            'test_cfg', 'neck', 'data_preprocessor', 'init_cfg']
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
    assert required == ['self', 'backbone', 'rpn_head', 'roi_head', 'train_cfg', 'test_cfg']


def test_coco_model_state_dict_keys_and_shapes():
    model = MODELS.build(load_cfg().model)
    assert type(model) is MaskScoringRCNN
    assert type(model.roi_head) is MaskScoringRoIHead
    assert type(model.roi_head.mask_iou_head) is MaskIoUHead
    # Mask R-CNN's 360 + the MaskIoU head's 14
    assert len(ms_rcnn_r50_fpn_keys()) == 374
    assert shapes_of(model) == ms_rcnn_r50_fpn_keys()


def test_loss_predict_and_tensor_modes():
    model = build_detector(tiny_ms_cfg())
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=True)]
    data = model.data_preprocessor(make_batch(samples), True)
    losses = model.train()(**data, mode='loss')
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'acc', 'loss_bbox',
                           'loss_mask', 'loss_mask_iou'}
    assert torch.isfinite(losses['loss_mask_iou'])

    model.eval().roi_head.test_cfg.update(score_thr=0.0, max_per_img=5)
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        result = model(**data, mode='predict')[0].pred_instances
        outs = model(data['inputs'], data['data_samples'], mode='tensor')[0]
    assert set(result.keys()) == {'bboxes', 'scores', 'labels', 'masks'}
    assert len(result) == 5 and result.masks.shape == (5, 64, 64)
    assert result.masks.dtype == torch.bool
    cls_score, bbox_pred, mask_preds, mask_ious = outs
    assert mask_preds.shape[1:] == (3, 28, 28) and mask_ious.shape == (len(mask_preds), 3)


@pytest.mark.slow
def test_sgd_steps_reduce_the_roi_losses():
    """The RoI losses on fixed proposals (and a fixed sampling seed), trained on."""
    model = build_detector(tiny_ms_cfg()).train()
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=True),
               make_det_sample([[4, 30, 36, 62]], [1], with_mask=True)]
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
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(15):
        total, _ = objective()
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    with torch.no_grad():
        after = objective()[1]
    assert after['loss'] < 0.5 * before['loss']
    assert after['loss_mask'] < before['loss_mask']
    assert after['acc'] > before['acc']
    # loss_mask_iou is not compared: it averages over the positives whose binarized mask
    # overlaps the object, a set that grows as the masks improve (its own overfit is in
    # test_mask_scoring_roi_head.py).
    assert torch.isfinite(after['loss_mask_iou'])
