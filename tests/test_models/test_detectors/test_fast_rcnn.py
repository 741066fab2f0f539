"""Fast R-CNN: mmdetection 3.3's COCO config and model, trained and run on the proposals that
``LoadProposals`` + ``PackDetInputs`` put in the data samples.

Expected config values are written from mmdetection's configs/fast_rcnn/
fast-rcnn_r50_fpn_1x_coco.py and _base_/models/fast-rcnn_r50_fpn.py; expected keys from
mmdetection's module definitions (helpers_two_stage_extra_keys).
"""
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_detector, tiny_two_stage_cfg
from helpers_state_dict import shapes_of
from helpers_two_stage_extra_keys import fast_rcnn_r50_fpn_keys
from mmcv.transforms import Compose
from mmengine.config import Config

from mmdet_lite.models.detectors import FastRCNN
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIG = Path(__file__).resolve().parents[3] / 'configs' / 'fast_rcnn' / \
    'fast-rcnn_r50_fpn_1x_coco.py'


def load_cfg() -> Config:
    register_all_modules()
    return Config.fromfile(str(CONFIG))


def tiny_fast_rcnn_cfg() -> dict:
    """Faster R-CNN's tiny config without the RPN: FastRCNN's structure at a tiny width."""
    cfg = tiny_two_stage_cfg()
    del cfg['rpn_head']
    cfg.update(type='FastRCNN', train_cfg=dict(rcnn=cfg['train_cfg']['rcnn']),
               test_cfg=dict(rcnn=cfg['test_cfg']['rcnn']))
    return cfg


GT_BOXES = np.array([[8, 8, 40, 40], [30, 20, 60, 50]], dtype=np.float32)
GT_LABELS = np.array([0, 2], dtype=np.int64)


def proposal_boxes() -> np.ndarray:
    """Jittered copies of the GT boxes plus a 24 px grid, in the 64x64 input image."""
    grid = [[x, y, x + 24, y + 24] for x in range(0, 48, 8) for y in range(0, 48, 8)]
    return np.concatenate([GT_BOXES + [3, -2, 2, 3], GT_BOXES + [-4, 2, -3, -2],
                           np.array(grid, dtype=np.float32)]).astype(np.float32)


def packed_sample(proposals: np.ndarray, img_id: int = 0, num_max_proposals=None,
                  ori_shape=(64, 64), scale_factor=(1.0, 1.0)) -> dict:
    """One image through LoadProposals + PackDetInputs, as the config's pipeline gives it."""
    rng = np.random.default_rng(img_id)
    img = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in GT_BOXES.astype(int):
        img[y1:y2, x1:x2] = 220
    results = dict(img=img, img_id=img_id, img_path=f'{img_id}.jpg', img_shape=(64, 64),
                   ori_shape=ori_shape, scale_factor=scale_factor,
                   gt_bboxes=GT_BOXES.copy(), gt_bboxes_labels=GT_LABELS.copy(),
                   gt_ignore_flags=np.zeros(2, dtype=bool),
                   proposals=dict(bboxes=proposals,
                                  scores=np.linspace(1, 0.1, len(proposals))))
    pipeline = Compose([dict(type='LoadProposals', num_max_proposals=num_max_proposals),
                        dict(type='PackDetInputs')])
    return pipeline(results)


def batch_of(packed: list) -> dict:
    return dict(inputs=[p['inputs'] for p in packed],
                data_samples=[p['data_samples'] for p in packed])


# ---------------------------------------------------------------------------- config
def test_config_holds_mmdetections_values():
    cfg = load_cfg()
    model = cfg.model
    assert model.type == 'FastRCNN' and 'rpn_head' not in model
    assert model.backbone == dict(type='ResNet', depth=50, num_stages=4,
                                  out_indices=(0, 1, 2, 3), frozen_stages=1,
                                  norm_cfg=dict(type='BN', requires_grad=True),
                                  norm_eval=True, style='pytorch')
    assert model.neck == dict(type='FPN', in_channels=[256, 512, 1024, 2048],
                              out_channels=256, num_outs=5)
    assert model.roi_head == dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=7,
                                               sampling_ratio=0),
                                out_channels=256, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024,
                       roi_feat_size=7, num_classes=80,
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       reg_class_agnostic=False,
                       loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                     loss_weight=1.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=1.0)))
    assert model.train_cfg == dict(rcnn=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                      match_low_quality=False, ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        pos_weight=-1, debug=False))
    assert model.test_cfg == dict(rcnn=dict(score_thr=0.05,
                                            nms=dict(type='nms', iou_threshold=0.5),
                                            max_per_img=100))


def test_config_pipelines_load_and_broadcast_the_proposals():
    cfg = load_cfg()
    train = cfg.train_dataloader.dataset
    assert train.proposal_file == 'proposals/rpn_r50_fpn_1x_train2017.pkl'
    assert [t['type'] for t in train.pipeline] == [
        'LoadImageFromFile', 'LoadProposals', 'LoadAnnotations', 'ProposalBroadcaster',
        'PackDetInputs']
    assert train.pipeline[1] == dict(type='LoadProposals', num_max_proposals=2000)
    assert train.pipeline[3].transforms == [
        dict(type='Resize', scale=(1333, 800), keep_ratio=True), dict(type='RandomFlip', prob=0.5)]
    val = cfg.val_dataloader.dataset
    assert val.proposal_file == 'proposals/rpn_r50_fpn_1x_val2017.pkl'
    assert [t['type'] for t in val.pipeline] == [
        'LoadImageFromFile', 'LoadProposals', 'ProposalBroadcaster', 'PackDetInputs']
    assert val.pipeline[1] == dict(type='LoadProposals', num_max_proposals=None)
    assert val.pipeline[3].meta_keys == ('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor')
    assert cfg.test_dataloader == cfg.val_dataloader
    assert cfg.val_evaluator.metric == 'bbox'


def test_constructor_arguments_are_mmdetections():
    params = inspect.signature(FastRCNN.__init__).parameters
    assert list(params) == ['self', 'backbone', 'roi_head', 'train_cfg', 'test_cfg', 'neck',
                            'data_preprocessor', 'init_cfg']
    required = [n for n, p in params.items() if p.default is inspect.Parameter.empty]
    assert required == ['self', 'backbone', 'roi_head', 'train_cfg', 'test_cfg']


def test_coco_model_state_dict_keys_and_shapes():
    model = MODELS.build(load_cfg().model)
    assert type(model) is FastRCNN and not model.with_rpn
    assert len(fast_rcnn_r50_fpn_keys()) == 342  # Faster R-CNN's 348 less the RPN's 6
    assert shapes_of(model) == fast_rcnn_r50_fpn_keys()


# ---------------------------------------------------------------------------- behaviour
def test_loss_on_pipeline_proposals():
    model = build_detector(tiny_fast_rcnn_cfg()).train()
    packed = [packed_sample(proposal_boxes(), 0, num_max_proposals=30),
              packed_sample(proposal_boxes()[::-1].copy(), 1)]
    assert len(packed[0]['data_samples'].proposals) == 30
    data = model.data_preprocessor(batch_of(packed), True)
    losses = model(**data, mode='loss')
    # No RPN: only the RoI head's losses, as mmdetection's FastRCNN.
    assert set(losses) == {'loss_cls', 'acc', 'loss_bbox'}
    assert all(torch.isfinite(v).all() for v in losses.values())
    total, _ = model.parse_losses(losses)
    total.backward()
    assert model.backbone.conv1.weight.grad is not None


def test_predict_refines_the_given_proposals_in_original_pixels():
    model = build_detector(tiny_fast_rcnn_cfg()).eval()
    # Zero deltas: every detection is one of the proposals (clipped), mapped to the original
    # image by the scale factor.
    torch.nn.init.zeros_(model.roi_head.bbox_head.fc_reg.weight)
    torch.nn.init.zeros_(model.roi_head.bbox_head.fc_reg.bias)
    model.roi_head.test_cfg.update(score_thr=0.0, max_per_img=12)
    proposals = proposal_boxes()
    packed = [packed_sample(proposals, 0, ori_shape=(32, 32), scale_factor=(2.0, 2.0))]
    data = model.data_preprocessor(batch_of(packed), False)
    with torch.no_grad():
        result = model(**data, mode='predict')[0].pred_instances
    assert len(result) == 12 and result.bboxes.shape == (12, 4)
    assert result.labels.dtype == torch.long and torch.all(result.labels < 3)
    assert torch.all(result.scores[:-1] >= result.scores[1:])
    expected = torch.from_numpy(proposals).clamp(0, 64) / 2
    distance = torch.cdist(result.bboxes, expected).min(dim=1).values
    assert torch.all(distance < 1e-4)


def test_missing_proposals_raise_an_assertion_error():
    model = build_detector(tiny_fast_rcnn_cfg()).eval()
    sample = packed_sample(proposal_boxes())
    del sample['data_samples'].proposals
    data = model.data_preprocessor(batch_of([sample]), False)
    with pytest.raises(AssertionError, match='proposals'):
        model(**data, mode='predict')


@pytest.mark.slow
def test_sgd_steps_reduce_the_loss():
    model = build_detector(tiny_fast_rcnn_cfg()).train()
    packed = [packed_sample(proposal_boxes(), 0), packed_sample(proposal_boxes(), 1)]
    data = model.data_preprocessor(batch_of(packed), True)

    def objective() -> dict:
        torch.manual_seed(0)  # the same sampled RoIs before and after training
        with torch.no_grad():
            return model.parse_losses(model(**data, mode='loss'))[1]

    before = objective()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(15):
        total, _ = model.parse_losses(model(**data, mode='loss'))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    after = objective()
    assert after['loss'] < 0.75 * before['loss']
    assert after['loss_cls'] < before['loss_cls']
