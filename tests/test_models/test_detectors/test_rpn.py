"""RPN as a detector: mmdetection 3.3's COCO config and model, its losses and proposals, and
the proposal recall that CocoMetric computes from them.

Expected config values are written from mmdetection's configs/rpn/rpn_r50_fpn_1x_coco.py and
_base_/models/rpn_r50_fpn.py; expected keys from mmdetection's module definitions
(helpers_two_stage_extra_keys: the head is stored as ``bbox_head``).
"""
import copy
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import build_detector, make_batch, make_det_sample, tiny_two_stage_cfg
from helpers_state_dict import shapes_of
from helpers_two_stage_extra_keys import rpn_r50_fpn_keys
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from mmdet_lite.evaluation import CocoMetric
from mmdet_lite.models.dense_heads import RPNHead
from mmdet_lite.models.detectors import RPN
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.utils import register_all_modules

CONFIG = Path(__file__).resolve().parents[3] / 'configs' / 'rpn' / 'rpn_r50_fpn_1x_coco.py'
COCO_THRS = [0.5 + 0.05 * i for i in range(10)]


def load_cfg() -> Config:
    register_all_modules()
    return Config.fromfile(str(CONFIG))


def tiny_rpn_cfg(max_per_img: int = 50) -> dict:
    """The RPN part of the tiny Faster R-CNN: ResNet-18 (8 base channels), 16-channel FPN."""
    cfg = tiny_two_stage_cfg()
    test_rpn = dict(cfg['test_cfg']['rpn'], max_per_img=max_per_img)
    return dict(type='RPN', data_preprocessor=cfg['data_preprocessor'],
                backbone=cfg['backbone'], neck=cfg['neck'], rpn_head=cfg['rpn_head'],
                train_cfg=dict(rpn=cfg['train_cfg']['rpn']), test_cfg=dict(rpn=test_rpn))


def with_img_id(sample: DetDataSample, img_id: int) -> DetDataSample:
    sample.set_metainfo(dict(img_id=img_id))
    return sample


# ---------------------------------------------------------------------------- config
def test_config_holds_mmdetections_values():
    cfg = load_cfg()
    model = cfg.model
    assert model.type == 'RPN'
    assert model.data_preprocessor == dict(type='DetDataPreprocessor',
                                           mean=[123.675, 116.28, 103.53],
                                           std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                                           pad_size_divisor=32)
    assert model.backbone == dict(type='ResNet', depth=50, num_stages=4,
                                  out_indices=(0, 1, 2, 3), frozen_stages=1,
                                  norm_cfg=dict(type='BN', requires_grad=True),
                                  norm_eval=True, style='pytorch')
    assert model.neck == dict(type='FPN', in_channels=[256, 512, 1024, 2048],
                              out_channels=256, num_outs=5)
    assert model.rpn_head == dict(
        type='RPNHead', in_channels=256, feat_channels=256,
        anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                              strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                        target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0))
    assert model.train_cfg == dict(rpn=dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                      ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                     add_gt_as_proposals=False),
        allowed_border=-1, pos_weight=-1, debug=False))
    assert model.test_cfg == dict(rpn=dict(nms_pre=2000, max_per_img=1000,
                                           nms=dict(type='nms', iou_threshold=0.7),
                                           min_bbox_size=0))
    # Proposal recall replaces box AP (the rest of the evaluator is the COCO base's).
    assert cfg.val_evaluator.type == 'CocoMetric'
    assert cfg.val_evaluator.metric == 'proposal_fast'
    assert cfg.test_evaluator == cfg.val_evaluator


def test_constructor_arguments_are_mmdetections():
    params = inspect.signature(RPN.__init__).parameters
    assert list(params) == ['self', 'backbone', 'neck', 'rpn_head', 'train_cfg', 'test_cfg',
                            'data_preprocessor', 'init_cfg', 'kwargs']
    assert params['data_preprocessor'].default is None and params['init_cfg'].default is None


def test_coco_model_state_dict_keys_and_shapes():
    model = MODELS.build(load_cfg().model)
    assert type(model.bbox_head) is RPNHead
    assert not hasattr(model, 'rpn_head')
    assert len(rpn_r50_fpn_keys()) == 340  # ResNet-50 318 + FPN 16 + RPN head 6
    assert shapes_of(model) == rpn_r50_fpn_keys()
    # Only the 'rpn' parts reach the head.
    assert model.bbox_head.test_cfg == load_cfg().model.test_cfg.rpn
    assert model.bbox_head.train_cfg == load_cfg().model.train_cfg.rpn


def test_construction_quirks_of_mmdetection():
    cfg = tiny_rpn_cfg()
    cfg['rpn_head']['num_classes'] = 80
    with pytest.warns(UserWarning, match='num_classes'):
        model = MODELS.build(dict(cfg, roi_head=dict(type='Ignored')))  # extra kwargs ignored
    assert model.bbox_head.num_classes == 1 and not hasattr(model, 'roi_head')
    assert cfg['rpn_head']['num_classes'] == 80  # the caller's config is left alone
    # Without a neck the head reads the backbone maps directly.
    no_neck = MODELS.build(dict(tiny_rpn_cfg(), neck=None,
                                backbone=dict(tiny_rpn_cfg()['backbone'], out_indices=(3, )),
                                rpn_head=dict(tiny_rpn_cfg()['rpn_head'], in_channels=64,
                                              anchor_generator=dict(
                                                  type='AnchorGenerator', scales=[8],
                                                  ratios=[1.0], strides=[32]))))
    assert no_neck.neck is None and not no_neck.with_neck
    # Inference-only RPN: no train_cfg.
    assert MODELS.build(dict(tiny_rpn_cfg(), train_cfg=None)).bbox_head.train_cfg is None
    with pytest.raises(TypeError, match='test_cfg'):
        MODELS.build(dict(tiny_rpn_cfg(), test_cfg=None))


# ---------------------------------------------------------------------------- behaviour
def test_loss_is_class_agnostic_and_leaves_the_samples_alone():
    model = build_detector(tiny_rpn_cfg()).train()
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [3, 17])]
    data = model.data_preprocessor(make_batch(samples), True)
    torch.manual_seed(0)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox'}
    assert len(losses['loss_rpn_cls']) == 5  # one value per FPN level
    assert data['data_samples'][0].gt_instances.labels.tolist() == [3, 17]
    # Any labels give the same losses: every object is "object".
    relabelled = copy.deepcopy(data['data_samples'])
    relabelled[0].gt_instances.labels = torch.tensor([0, 0])
    torch.manual_seed(0)
    same = model(data['inputs'], relabelled, mode='loss')
    for name in losses:
        for a, b in zip(losses[name], same[name]):
            torch.testing.assert_close(a, b)


def test_predict_returns_proposals_in_original_pixels():
    model = build_detector(tiny_rpn_cfg(max_per_img=20)).eval()
    samples = [make_det_sample([[8, 8, 40, 40]], img_shape=(64, 64), ori_shape=(32, 48),
                               scale_factor=(48 / 64, 0.5))]
    data = model.data_preprocessor(make_batch(samples), False)
    with torch.no_grad():
        result = model(**data, mode='predict')[0].pred_instances
        unscaled = model.predict(data['inputs'], copy.deepcopy(data['data_samples']),
                                 rescale=False)[0].pred_instances
    assert isinstance(result, InstanceData)
    assert set(result.keys()) == {'bboxes', 'scores', 'labels'}
    assert len(result) == 20 and result.bboxes.shape == (20, 4)
    assert result.labels.dtype == torch.long and torch.all(result.labels == 0)
    assert torch.all(result.scores[:-1] >= result.scores[1:])
    assert torch.all((result.scores > 0) & (result.scores < 1))  # sigmoid objectness
    torch.testing.assert_close(result.bboxes,
                               unscaled.bboxes / torch.tensor([48 / 64, 0.5, 48 / 64, 0.5]))
    # tensor mode: the head's raw maps, 5 levels of objectness and of deltas.
    with torch.no_grad():
        cls_scores, bbox_preds = model(data['inputs'], mode='tensor')
    assert [tuple(c.shape) for c in cls_scores] == [(1, 3, 64 // s, 64 // s)
                                                    for s in (4, 8, 16, 32)] + [(1, 3, 1, 1)]
    assert bbox_preds[0].shape == (1, 12, 16, 16)


def _write_coco(path: Path, boxes: dict, crowd: dict = None) -> str:
    """A one-category COCO json of 64x64 images: ``{img_id: [xyxy, ...]}`` objects, and
    ``crowd`` regions (iscrowd=1, not ground truth for recall)."""
    annotations = []
    for is_crowd, by_image in ((0, boxes), (1, crowd or {})):
        for img_id, img_boxes in by_image.items():
            for x1, y1, x2, y2 in img_boxes:
                annotations.append(dict(id=len(annotations) + 1, image_id=img_id,
                                        category_id=1, bbox=[x1, y1, x2 - x1, y2 - y1],
                                        area=(x2 - x1) * (y2 - y1), iscrowd=is_crowd))
    path.write_text(json.dumps(dict(
        images=[dict(id=i, file_name=f'{i}.jpg', height=64, width=64) for i in boxes],
        annotations=annotations, categories=[dict(id=1, name='object')])))
    return str(path)


# Image 1 holds A and B, image 2 holds C and a crowd region.
HAND_GT = {1: [[10, 10, 30, 30], [40, 40, 60, 60]], 2: [[5, 5, 45, 45]]}
HAND_CROWD = {2: [[0, 0, 64, 64]]}


def _proposal_sample(img_id: int, bboxes: list) -> DetDataSample:
    """A sample as RPN.predict returns it: proposals ranked by score, labels all 0."""
    sample = DetDataSample(metainfo=dict(img_id=img_id, ori_shape=(64, 64)))
    num = len(bboxes)
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor(bboxes, dtype=torch.float32),
        scores=torch.linspace(0.9, 0.1, num), labels=torch.zeros(num, dtype=torch.long))
    return sample


def _evaluate(metric: CocoMetric, outputs: list) -> dict:
    """What the val loop does with the model's outputs (to_dict, process, evaluate)."""
    evaluator = Evaluator([metric])
    evaluator.dataset_meta = dict(classes=('object', ))
    evaluator.process(data_samples=outputs, data_batch=None)
    return evaluator.evaluate(len(outputs))


def test_proposal_fast_recall_of_a_hand_computed_case(tmp_path):
    """Image 1: A is proposed exactly (IoU 1, all 10 thresholds), B by a box 4 px taller
    (IoU 400 / 480 = 0.833: thresholds 0.5 ... 0.8, 7 of 10), ranked second. Image 2: a miss
    ranked first, then C exactly; the crowd region is not ground truth.

    AR@1 = (10 [A] + 0 + 0) / 30 = 1/3;  AR@100 = (10 + 7 + 10) / 30 = 0.9.
    """
    ann = _write_coco(tmp_path / 'ann.json', HAND_GT, HAND_CROWD)
    metric = CocoMetric(ann_file=ann, metric='proposal_fast', proposal_nums=(1, 100))
    outputs = [_proposal_sample(1, [[10, 10, 30, 30], [40, 40, 60, 64]]),
               _proposal_sample(2, [[50, 50, 60, 60], [5, 5, 45, 45]])]
    results = _evaluate(metric, outputs)
    assert results['coco/AR@1'] == pytest.approx(1 / 3)
    assert results['coco/AR@100'] == pytest.approx(0.9)


def test_proposal_metric_through_cocoeval(tmp_path):
    ann = _write_coco(tmp_path / 'ann.json', HAND_GT, HAND_CROWD)
    metric = CocoMetric(ann_file=ann, metric='proposal')
    perfect = [_proposal_sample(1, [[10, 10, 30, 30], [40, 40, 60, 60]]),
               _proposal_sample(2, [[5, 5, 45, 45]])]
    results = _evaluate(metric, perfect)
    assert results['coco/AR@100'] == pytest.approx(1.0)
    assert results['coco/AR@1000'] == pytest.approx(1.0)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def test_rpn_predictions_feed_proposal_fast(tmp_path):
    """With one object per image the recall at a threshold is whether the best of the top-N
    proposals overlaps it that much; computed here from the model's own proposals."""
    gts = {1: [8, 8, 40, 40], 2: [20, 12, 60, 44]}
    ann = _write_coco(tmp_path / 'ann.json', {i: [box] for i, box in gts.items()})
    model = build_detector(tiny_rpn_cfg(max_per_img=50)).eval()
    samples = [with_img_id(make_det_sample([box]), i) for i, box in gts.items()]
    with torch.no_grad():
        outputs = model.test_step(make_batch(samples))
    nums = (1, 10, 50)
    results = _evaluate(CocoMetric(ann_file=ann, metric='proposal_fast',
                                   proposal_nums=nums), outputs)
    for num in nums:
        per_thr = []
        for thr in COCO_THRS:
            hits = [_iou(np.array(gts[out.img_id], dtype=np.float64),
                         out.pred_instances.bboxes[:num].double().numpy()).max() >= thr
                    for out in outputs]
            per_thr.append(np.mean(hits))
        assert results[f'coco/AR@{num}'] == pytest.approx(np.mean(per_thr), abs=1e-6)
    assert results['coco/AR@50'] >= results['coco/AR@1']


@pytest.mark.slow
def test_sgd_steps_reduce_the_loss():
    model = build_detector(tiny_rpn_cfg()).train()
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2]),
               make_det_sample([[4, 30, 36, 62]], [1])]
    data = model.data_preprocessor(make_batch(samples), True)

    def objective() -> dict:
        torch.manual_seed(0)  # the same sampled anchors before and after training
        with torch.no_grad():
            return model.parse_losses(model(**data, mode='loss'))[1]

    before = objective()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(30):
        total, _ = model.parse_losses(model(**data, mode='loss'))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    after = objective()
    assert after['loss'] < 0.8 * before['loss']
    assert after['loss_rpn_cls'] < before['loss_rpn_cls']
