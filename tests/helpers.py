"""Small builders shared by the model tests: fake data samples, masks and tiny detectors.

``tests/`` is on ``sys.path`` while pytest runs (it holds the rootdir conftest), so test
files import these as ``from helpers import ...``.
"""
import copy
import logging
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import MMLogger
from mmengine.structures import InstanceData

from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks


def box_masks(bboxes, height: int, width: int) -> BitmapMasks:
    """One filled rectangle per box: ``BitmapMasks`` [N, height, width].

    Pixel (y, x) is inside box (x1, y1, x2, y2) when x1 <= x < x2 and y1 <= y < y2 (after
    rounding the corners to whole pixels).
    """
    bboxes = np.asarray(bboxes, dtype=np.float32).reshape(-1, 4)
    masks = np.zeros((len(bboxes), height, width), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, np.round(bboxes).astype(int)):
        mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = 1
    return BitmapMasks(masks, height, width)


def make_det_sample(bboxes=(),
                    labels: Optional[Sequence[int]] = None,
                    img_shape: Tuple[int, int] = (64, 64),
                    ori_shape: Optional[Tuple[int, int]] = None,
                    scale_factor: Tuple[float, float] = (1.0, 1.0),
                    with_mask: bool = False,
                    ignored_bboxes=None) -> DetDataSample:
    """A ``DetDataSample`` as ``PackDetInputs`` + ``DetDataPreprocessor`` would give it.

    Args:
        bboxes: [N, 4] ground-truth boxes (x1, y1, x2, y2) in ``img_shape`` pixels; may be
            empty.
        labels: [N] class ids; all 0 when omitted.
        img_shape: (h, w) of the network input image.
        ori_shape: (h, w) of the original image; ``img_shape`` when omitted.
        scale_factor: (w_scale, h_scale) from the original to the input image.
        with_mask: Add rectangle ``BitmapMasks`` filling each box.
        ignored_bboxes: [K, 4] boxes to store in ``ignored_instances``.
    """
    bboxes = torch.as_tensor(np.asarray(bboxes, dtype=np.float32)).reshape(-1, 4)
    labels = torch.zeros(len(bboxes), dtype=torch.long) if labels is None else \
        torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    ori_shape = img_shape if ori_shape is None else ori_shape
    sample = DetDataSample(metainfo=dict(
        img_shape=tuple(img_shape), ori_shape=tuple(ori_shape), pad_shape=tuple(img_shape),
        batch_input_shape=tuple(img_shape), scale_factor=tuple(scale_factor)))
    gt = InstanceData(bboxes=bboxes, labels=labels)
    if with_mask:
        gt.masks = box_masks(bboxes.numpy(), *img_shape)
    sample.gt_instances = gt
    ignored = np.asarray(() if ignored_bboxes is None else ignored_bboxes, dtype=np.float32)
    sample.ignored_instances = InstanceData(
        bboxes=torch.as_tensor(ignored).reshape(-1, 4),
        labels=torch.zeros(ignored.size // 4, dtype=torch.long))
    return sample


def make_batch(samples: Sequence[DetDataSample], seed: int = 0) -> dict:
    """What the dataloader collates: ``inputs`` (uint8 [3, h, w] images) + ``data_samples``.

    Images are random noise with each GT box painted a bright flat colour, so a detector has
    something learnable.
    """
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for sample in samples:
        h, w = sample.img_shape
        img = torch.randint(0, 60, (3, h, w), generator=generator, dtype=torch.uint8)
        for x1, y1, x2, y2 in sample.gt_instances.bboxes.round().long().clamp(min=0).tolist():
            img[:, y1:y2, x1:x2] = 220
        inputs.append(img)
    return dict(inputs=inputs, data_samples=list(samples))


def tiny_two_stage_cfg(with_mask: bool = False, num_classes: int = 3) -> dict:
    """Faster (or Mask) R-CNN with mmdetection's structure but a tiny width.

    ResNet-18 with ``base_channels=8`` and a 16-channel FPN: a 64x64 image runs the whole
    model in milliseconds. Training settings follow the COCO config except for smaller
    sample counts.
    """
    fpn = 16
    roi_head = dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(type='SingleRoIExtractor',
                                roi_layer=dict(type='RoIAlign', output_size=7,
                                               sampling_ratio=0),
                                out_channels=fpn, featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(type='Shared2FCBBoxHead', in_channels=fpn, fc_out_channels=32,
                       roi_feat_size=7, num_classes=num_classes,
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                                       target_means=[0., 0., 0., 0.],
                                       target_stds=[0.1, 0.1, 0.2, 0.2]),
                       reg_class_agnostic=False,
                       loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                     loss_weight=1.0),
                       loss_bbox=dict(type='L1Loss', loss_weight=1.0)))
    rcnn_train = dict(
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
                      min_pos_iou=0.5, match_low_quality=with_mask, ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        pos_weight=-1, debug=False)
    rcnn_test = dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20)
    if with_mask:
        roi_head.update(
            mask_roi_extractor=dict(type='SingleRoIExtractor',
                                    roi_layer=dict(type='RoIAlign', output_size=14,
                                                   sampling_ratio=0),
                                    out_channels=fpn, featmap_strides=[4, 8, 16, 32]),
            mask_head=dict(type='FCNMaskHead', num_convs=2, in_channels=fpn,
                           conv_out_channels=fpn, num_classes=num_classes,
                           loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                                          loss_weight=1.0)))
        rcnn_train.update(mask_size=28)
        rcnn_test.update(mask_thr_binary=0.5)
    cfg = dict(
        type='MaskRCNN' if with_mask else 'FasterRCNN',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_mask=with_mask, pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, base_channels=8, num_stages=4,
                      out_indices=(0, 1, 2, 3), frozen_stages=-1,
                      norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True,
                      style='pytorch'),
        neck=dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=fpn, num_outs=5),
        rpn_head=dict(
            type='RPNHead', in_channels=fpn, feat_channels=fpn,
            anchor_generator=dict(type='AnchorGenerator', scales=[8],
                                  ratios=[0.5, 1.0, 2.0], strides=[4, 8, 16, 32, 64]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        roi_head=roi_head,
        train_cfg=dict(
            rpn=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                                   min_pos_iou=0.3, match_low_quality=True,
                                   ignore_iof_thr=-1),
                     sampler=dict(type='RandomSampler', num=64, pos_fraction=0.5,
                                  neg_pos_ub=-1, add_gt_as_proposals=False),
                     allowed_border=-1, pos_weight=-1, debug=False),
            rpn_proposal=dict(nms_pre=200, max_per_img=50,
                              nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
            rcnn=rcnn_train),
        test_cfg=dict(
            rpn=dict(nms_pre=200, max_per_img=50, nms=dict(type='nms', iou_threshold=0.7),
                     min_bbox_size=0),
            rcnn=rcnn_test))
    return copy.deepcopy(cfg)


def init_weights_quietly(module) -> None:
    """``module.init_weights()`` without mmengine's INFO line per parameter.

    Muted so that a failing test's captured output shows the failure, not hundreds of
    init lines.
    """
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        module.init_weights()
    finally:
        logger.setLevel(level)


def build_detector(cfg: dict):
    """Build a detector config with the default scope set, weights initialized."""
    from mmdet_lite.registry import MODELS
    from mmdet_lite.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(cfg)
    init_weights_quietly(model)
    return model


def assert_finite_losses(losses: dict) -> None:
    """Every loss entry (tensor or list of per-level tensors) is finite."""
    for name, value in losses.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            assert torch.isfinite(v).all(), f'{name} is not finite: {v}'
