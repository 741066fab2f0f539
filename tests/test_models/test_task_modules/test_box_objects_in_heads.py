"""Ground truth as ``HorizontalBoxes`` or as a tensor gives the same targets and losses.

mmdetection's heads read ``gt_instances.bboxes`` through ``get_box_tensor`` (or the box-aware
assigners / coders), so a box object and its raw tensor must be interchangeable. Each test
runs the same seeded computation twice, once per kind, and compares the results exactly.
"""
import copy

import pytest
import torch
from helpers import init_weights_quietly, make_det_sample, tiny_two_stage_cfg
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules import (DeltaXYWHBBoxCoder, MaxIoUAssigner,
                                            RandomSampler)
from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import HorizontalBoxes

IMG = 64
GT_BOXES = [[8., 8., 40., 40.], [30., 20., 60., 50.]]
GT_LABELS = [0, 2]


def as_boxes(sample):
    """A deep copy of ``sample`` whose gt (and ignored) boxes are ``HorizontalBoxes``."""
    boxed = copy.deepcopy(sample)
    boxed.gt_instances.bboxes = HorizontalBoxes(sample.gt_instances.bboxes)
    if 'ignored_instances' in sample:
        boxed.ignored_instances.bboxes = HorizontalBoxes(sample.ignored_instances.bboxes)
    return boxed


def seeded(fn, seed=0):
    torch.manual_seed(seed)
    return fn()


def assert_same_losses(a: dict, b: dict):
    assert set(a) == set(b)
    for name in a:
        va = a[name] if isinstance(a[name], (list, tuple)) else [a[name]]
        vb = b[name] if isinstance(b[name], (list, tuple)) else [b[name]]
        for x, y in zip(va, vb):
            assert torch.isfinite(x).all(), name
            torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def feats(strides, channels, batch=1):
    return tuple(torch.rand(batch, channels, max(IMG // s, 1), max(IMG // s, 1))
                 for s in strides)


# ----------------------------------------------------------------------------- task modules


def test_assigner_sampler_coder_agree():
    torch.manual_seed(0)
    xy = torch.rand(40, 2) * 50
    priors = torch.cat([xy, xy + 4 + torch.rand(40, 2) * 20], dim=1)
    gt_tensor = torch.tensor(GT_BOXES)
    labels = torch.tensor(GT_LABELS)
    ignore = torch.tensor([[0., 40., 20., 63.]])
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.3, min_pos_iou=0.1,
                              ignore_iof_thr=0.5)
    sampler = RandomSampler(num=16, pos_fraction=0.5, add_gt_as_proposals=True)
    coder = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2))

    out = {}
    for kind, wrap in (('tensor', lambda t: t), ('boxes', HorizontalBoxes)):
        gt = InstanceData(bboxes=wrap(gt_tensor), labels=labels)
        ignored = InstanceData(bboxes=wrap(ignore), labels=torch.zeros(1, dtype=torch.long))
        pred = InstanceData(priors=priors)
        assign = assigner.assign(pred, gt, ignored)
        sampling = seeded(lambda: sampler.sample(assign, pred, gt))
        out[kind] = (assign, sampling)

    (assign_t, samp_t), (assign_b, samp_b) = out['tensor'], out['boxes']
    assert torch.equal(assign_t.gt_inds, assign_b.gt_inds)
    assert (assign_t.gt_inds == -1).any()  # the ignore region was applied in both
    assert torch.equal(assign_t.max_overlaps, assign_b.max_overlaps)
    assert torch.equal(samp_t.pos_inds, samp_b.pos_inds)
    assert torch.equal(samp_t.neg_inds, samp_b.neg_inds)
    # the priors stay tensors (gt boxes are added as tensors); pos_gt_bboxes keeps the
    # gt's kind as in mmdetection
    assert isinstance(samp_b.priors, torch.Tensor)
    assert isinstance(samp_b.pos_gt_bboxes, HorizontalBoxes)
    assert isinstance(samp_t.pos_gt_bboxes, torch.Tensor)
    torch.testing.assert_close(samp_b.pos_gt_bboxes.tensor, samp_t.pos_gt_bboxes)
    targets_t = coder.encode(samp_t.pos_priors, samp_t.pos_gt_bboxes)
    targets_b = coder.encode(HorizontalBoxes(samp_b.pos_priors), samp_b.pos_gt_bboxes)
    torch.testing.assert_close(targets_t, targets_b, rtol=0, atol=0)
    # decode round trip; with use_box_type the result is a HorizontalBoxes
    decoded = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2), use_box_type=True).decode(
        HorizontalBoxes(samp_b.pos_priors), targets_b)
    assert isinstance(decoded, HorizontalBoxes)
    torch.testing.assert_close(decoded.tensor, samp_t.pos_gt_bboxes, rtol=1e-5, atol=1e-4)


def test_sampler_with_box_priors_converts_gt_to_their_type():
    priors = HorizontalBoxes(torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]]))
    gt = InstanceData(bboxes=torch.tensor([[1., 1., 9., 9.]]), labels=torch.tensor([1]))
    assign = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.5).assign(
        InstanceData(priors=priors), gt)
    sampling = RandomSampler(num=4, pos_fraction=0.5).sample(
        assign, InstanceData(priors=priors), gt)
    assert isinstance(sampling.priors, HorizontalBoxes)
    # the gt (added first) and the overlapping prior are the positives
    assert sorted(sampling.pos_inds.tolist()) == [0, 1]


# ----------------------------------------------------------------------------- dense heads

RPN_STRIDES = [4, 8, 16, 32, 64]


def build_rpn():
    cfg = tiny_two_stage_cfg()
    head_cfg = dict(cfg['rpn_head'], in_channels=8, feat_channels=8,
                    train_cfg=ConfigDict(cfg['train_cfg']['rpn']),
                    test_cfg=ConfigDict(cfg['test_cfg']['rpn']))
    head = MODELS.build(head_cfg)
    init_weights_quietly(head)
    return head


def test_rpn_head_losses_and_proposals():
    head = build_rpn()
    x = feats(RPN_STRIDES, 8)
    sample = make_det_sample(GT_BOXES, GT_LABELS)
    proposal_cfg = ConfigDict(nms_pre=200, max_per_img=50,
                              nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0)
    loss_t, props_t = seeded(lambda: head.loss_and_predict(x, [sample], proposal_cfg))
    loss_b, props_b = seeded(lambda: head.loss_and_predict(x, [as_boxes(sample)],
                                                           proposal_cfg))
    assert_same_losses(loss_t, loss_b)
    torch.testing.assert_close(props_t[0].bboxes, props_b[0].bboxes, rtol=0, atol=0)


def build_retina(**kwargs):
    cfg = dict(type='RetinaHead', num_classes=3, in_channels=8, feat_channels=8,
               stacked_convs=1,
               anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                     scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                     strides=[8, 16, 32, 64, 128]),
               loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                             loss_weight=1.0),
               loss_bbox=dict(type='L1Loss', loss_weight=1.0),
               train_cfg=ConfigDict(
                   assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                 min_pos_iou=0, ignore_iof_thr=0.5),
                   sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
                   debug=False),
               test_cfg=ConfigDict(nms_pre=100, min_bbox_size=0, score_thr=0.0,
                                   nms=dict(type='nms', iou_threshold=0.5), max_per_img=20))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    init_weights_quietly(head)
    return head


@pytest.mark.parametrize('decoded', [False, True])
def test_retina_head_losses(decoded):
    extra = dict(reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', use_box_type=True)) \
        if decoded else {}
    head = build_retina(**extra)
    x = feats([8, 16, 32, 64, 128], 8)
    sample = make_det_sample(GT_BOXES, GT_LABELS, ignored_bboxes=[[0., 44., 20., 63.]])
    loss_t = seeded(lambda: head.loss(x, [sample]))
    loss_b = seeded(lambda: head.loss(x, [as_boxes(sample)]))
    assert_same_losses(loss_t, loss_b)
    if decoded:
        # predictions come back as HorizontalBoxes when the coder uses box types
        results = head.predict(x, [sample], rescale=False)
        assert isinstance(results[0].bboxes, HorizontalBoxes)
        assert len(results[0]) > 0


def test_detr_head_losses():
    head = MODELS.build(dict(type='DETRHead', num_classes=3, embed_dims=8))
    init_weights_quietly(head)
    hidden = torch.randn(2, 1, 5, 8)  # [layers, batch, queries, dims]
    sample = make_det_sample(GT_BOXES, GT_LABELS)
    loss_t = head.loss(hidden, [sample])
    loss_b = head.loss(hidden, [as_boxes(sample)])
    assert_same_losses(loss_t, loss_b)


# ----------------------------------------------------------------------------- RoI head


def build_roi_head():
    cfg = tiny_two_stage_cfg(with_mask=True)
    head_cfg = copy.deepcopy(cfg['roi_head'])
    head_cfg.update(train_cfg=ConfigDict(cfg['train_cfg']['rcnn']),
                    test_cfg=ConfigDict(cfg['test_cfg']['rcnn']))
    head = MODELS.build(head_cfg)
    init_weights_quietly(head)
    return head


@pytest.mark.parametrize('boxed_proposals', [False, True])
def test_standard_roi_head_bbox_and_mask_losses(boxed_proposals):
    head = build_roi_head()
    x = feats(RPN_STRIDES, 16)
    sample = make_det_sample(GT_BOXES, GT_LABELS, with_mask=True)
    props = torch.tensor([[10., 10., 40., 40.], [0., 0., 20., 20.], [30., 22., 58., 50.],
                          [40., 0., 63., 20.]])
    rpn_t = InstanceData(bboxes=props, scores=torch.ones(4))
    rpn_b = InstanceData(bboxes=HorizontalBoxes(props) if boxed_proposals else props,
                         scores=torch.ones(4))
    loss_t = seeded(lambda: head.loss(x, [rpn_t], [sample]))
    loss_b = seeded(lambda: head.loss(x, [rpn_b], [as_boxes(sample)]))
    assert set(loss_t) == {'loss_cls', 'acc', 'loss_bbox', 'loss_mask'}
    assert_same_losses(loss_t, loss_b)
    head.eval()
    with torch.no_grad():
        pred_t = head.predict(x, [rpn_t], [sample])
        pred_b = head.predict(x, [rpn_b], [sample])
    torch.testing.assert_close(pred_t[0].bboxes, pred_b[0].bboxes, rtol=0, atol=0)
    assert torch.equal(pred_t[0].masks, pred_b[0].masks)
