"""CascadeRoIHead on its own: building, per-stage losses, refinement between stages, and the
test-time merging of the stages (mean class logits, last stage's deltas, mean mask
probabilities), against hand-computed boxes and a step-by-step reference.

Boxes are hand-decoded with the DeltaXYWH formula: ``cx' = cx + w * std_x * dx``,
``w' = w * exp(std_w * dw)`` (corners then clipped to the image). Constant deltas are set by
zeroing a stage's ``fc_reg`` weight and putting the deltas in its bias.
"""
import pytest
import torch
import torch.nn.functional as F
from helpers import assert_finite_losses, init_weights_quietly, make_det_sample
from helpers_cascade_keys import cascade_roi_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import nn

from mmdet_lite.models.roi_heads import CascadeRoIHead
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

FPN = 8  # feature channels of the tiny head
NUM_CLASSES = 3
IMG = 64
STRIDES = [4, 8, 16, 32, 64]
STDS = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
IOUS = (0.5, 0.6, 0.7)


def extractor_cfg(size: int = 7) -> dict:
    return dict(type='SingleRoIExtractor',
                roi_layer=dict(type='RoIAlign', output_size=size, sampling_ratio=0),
                out_channels=FPN, featmap_strides=[4, 8, 16, 32])


def bbox_head_cfg(stds) -> dict:
    return dict(type='Shared2FCBBoxHead', in_channels=FPN, fc_out_channels=16, roi_feat_size=7,
                num_classes=NUM_CLASSES,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                target_stds=stds),
                reg_class_agnostic=True,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))


def head_cfg(with_mask: bool = True, **overrides) -> dict:
    """The COCO cascade's RoI head (3 stages, IoU 0.5/0.6/0.7) at a tiny width."""
    cfg = dict(
        type='CascadeRoIHead', num_stages=3, stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=extractor_cfg(), bbox_head=[bbox_head_cfg(s) for s in STDS],
        train_cfg=[
            ConfigDict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                              min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=32, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                mask_size=28, pos_weight=-1, debug=False) for iou in IOUS
        ],
        test_cfg=ConfigDict(score_thr=0.0, nms=dict(type='nms', iou_threshold=0.5),
                            max_per_img=20, mask_thr_binary=0.5))
    if with_mask:
        cfg.update(mask_roi_extractor=extractor_cfg(14),
                   mask_head=dict(type='FCNMaskHead', num_convs=2, in_channels=FPN,
                                  conv_out_channels=FPN, num_classes=NUM_CLASSES,
                                  loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                                                 loss_weight=1.0)))
    cfg.update(overrides)
    return cfg


def make_head(with_mask: bool = True, **overrides) -> CascadeRoIHead:
    register_all_modules()
    torch.manual_seed(0)
    head = MODELS.build(head_cfg(with_mask, **overrides))
    init_weights_quietly(head)
    return head


def make_feats(batch: int = 1):
    generator = torch.Generator().manual_seed(1)
    return tuple(torch.rand(batch, FPN, IMG // s, IMG // s, generator=generator)
                 for s in STRIDES)


def proposals(bboxes) -> InstanceData:
    bboxes = torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4)
    return InstanceData(bboxes=bboxes, scores=torch.ones(len(bboxes)))


def gt_sample(with_mask: bool = True):
    return make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=with_mask)


def near_gt_proposals() -> InstanceData:
    return proposals([[10, 10, 40, 40], [0, 0, 20, 20], [30, 22, 58, 50], [40, 0, 63, 20],
                      [6, 9, 38, 42], [28, 18, 62, 52]])


def set_constant_deltas(head, stage: int, deltas) -> None:
    """Make stage ``stage`` predict ``deltas`` (dx, dy, dw, dh) for every RoI."""
    fc_reg = head.bbox_head[stage].fc_reg
    with torch.no_grad():
        fc_reg.weight.zero_()
        fc_reg.bias.copy_(torch.tensor(deltas))


def decode(boxes: torch.Tensor, deltas, stds, img_hw=(IMG, IMG)) -> torch.Tensor:
    """DeltaXYWH decoding of one delta for all boxes [N, 4], clipped to the image."""
    dx, dy, dw, dh = (d * s for d, s in zip(deltas, stds))
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = cx + w * dx, cy + h * dy
    w, h = w * torch.exp(torch.tensor(dw)), h * torch.exp(torch.tensor(dh))
    out = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)
    out[:, 0::2] = out[:, 0::2].clamp(0, img_hw[1])
    out[:, 1::2] = out[:, 1::2].clamp(0, img_hw[0])
    return out


def with_batch_index(boxes_per_img):
    return torch.cat([torch.cat([b.new_full((len(b), 1), i), b], 1)
                      for i, b in enumerate(boxes_per_img)])


# ----------------------------------------------------------------------------- building


def test_one_config_is_built_once_per_stage_and_a_list_per_stage_as_given():
    head = make_head(bbox_head=bbox_head_cfg(STDS[0]))
    assert len(head.bbox_head) == len(head.bbox_roi_extractor) == len(head.mask_head) == 3
    assert head.bbox_head[0] is not head.bbox_head[1]
    assert all(list(h.bbox_coder.stds) == STDS[0] for h in head.bbox_head)
    head = make_head(with_mask=False)
    assert [list(h.bbox_coder.stds) for h in head.bbox_head] == list(STDS)
    assert [a.pos_iou_thr for a in head.bbox_assigner] == list(IOUS)
    assert [s.num for s in head.bbox_sampler] == [32, 32, 32]
    assert not head.with_mask and head.with_bbox


def test_mask_branch_shares_the_box_extractors_without_its_own():
    head = make_head(mask_roi_extractor=None)
    assert head.share_roi_extractor and head.mask_roi_extractor is head.bbox_roi_extractor
    head = make_head()
    assert not head.share_roi_extractor
    assert [e.roi_layers[0].output_size for e in head.mask_roi_extractor] == [(14, 14)] * 3


def test_state_dict_keys_and_shapes_follow_mmdetection():
    head = make_head()
    assert shapes_of(head) == cascade_roi_head('', 3, FPN, 16, NUM_CLASSES, with_mask=True,
                                               mask_channels=FPN, num_mask_convs=2)
    assert 'bbox_head.2.fc_reg.weight' in shapes_of(head)


@pytest.mark.parametrize('overrides', [
    dict(bbox_head=[bbox_head_cfg(s) for s in STDS[:2]]),
    dict(bbox_roi_extractor=[extractor_cfg()] * 4),
    dict(mask_roi_extractor=[extractor_cfg(14)] * 2),
    dict(shared_head=dict(type='ResLayer', depth=50)),
    dict(bbox_head=None),
    dict(train_cfg=ConfigDict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5,
                                            neg_iou_thr=0.5),
                              sampler=dict(type='RandomSampler', num=8,
                                           pos_fraction=0.25))),
], ids=['2_bbox_heads', '4_extractors', '2_mask_extractors', 'shared_head', 'no_bbox_head',
        'train_cfg_not_a_list'])
def test_bad_arguments_raise_assertion_errors(overrides):
    register_all_modules()
    with pytest.raises(AssertionError):
        MODELS.build(head_cfg(**overrides))


def test_missing_stage_settings_raise_at_loss_time():
    head = make_head(with_mask=False, stage_loss_weights=[1, 0.5])
    with pytest.raises(AssertionError, match='stage_loss_weights'):
        head.loss(make_feats(), [near_gt_proposals()], [gt_sample(False)])


def test_mask_heads_keep_pytorch_init_as_in_mmdetection():
    # mmdetection keeps the mask heads in a plain nn.ModuleList, which init_weights does not
    # descend into: FCNMaskHead's Kaiming init (and zero bias) of conv_logits never runs.
    register_all_modules()
    torch.manual_seed(0)
    head = MODELS.build(head_cfg())
    assert isinstance(head.mask_head, nn.ModuleList)
    logits_bias = head.mask_head[0].conv_logits.bias.clone()
    cls_weight = head.bbox_head[0].fc_cls.weight.clone()
    init_weights_quietly(head)
    assert torch.equal(head.mask_head[0].conv_logits.bias, logits_bias)
    assert logits_bias.abs().sum() > 0  # PyTorch's default init, not zeros
    # The box heads do get their init_cfg (fc_cls ~ Normal(0, 0.01)).
    assert not torch.equal(head.bbox_head[0].fc_cls.weight, cls_weight)
    assert head.bbox_head[0].fc_cls.weight.std() < 0.02


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize('with_mask', [True, False], ids=['mask', 'box'])
def test_loss_names_are_prefixed_by_stage(with_mask):
    head = make_head(with_mask=with_mask)
    losses = head.loss(make_feats(), [near_gt_proposals()], [gt_sample(with_mask)])
    names = ['loss_cls', 'acc', 'loss_bbox'] + (['loss_mask'] if with_mask else [])
    assert list(losses) == [f's{s}.{n}' for s in range(3) for n in names]
    assert_finite_losses(losses)
    assert all(losses[f's{s}.loss_cls'] > 0 for s in range(3))


def test_stage_loss_weights_scale_each_stage_but_not_the_accuracy():
    head = make_head()
    feats, samples = make_feats(), [gt_sample()]
    results = []
    for weights in ([1, 1, 1], [1, 0.5, 0.25]):
        head.stage_loss_weights = weights
        torch.manual_seed(7)  # the same sampler draws for both calls
        results.append(head.loss(feats, [near_gt_proposals()], samples))
    plain, weighted = results
    for stage, weight in enumerate([1, 0.5, 0.25]):
        for name in ('loss_cls', 'loss_bbox', 'loss_mask'):
            key = f's{stage}.{name}'
            torch.testing.assert_close(weighted[key], plain[key] * weight, msg=key)
        torch.testing.assert_close(weighted[f's{stage}.acc'], plain[f's{stage}.acc'])
    assert plain['s2.loss_cls'] > 0 and plain['s1.loss_mask'] > 0


def test_each_stage_trains_on_the_previous_stage_refined_boxes(monkeypatch):
    head = make_head(with_mask=False)
    deltas = ([0.5, -0.5, 0.3, -0.2], [-1.0, 0.8, -0.4, 0.5])
    for stage in (0, 1):
        set_constant_deltas(head, stage, deltas[stage])
    sampled, assigned = {}, {}
    for stage in range(3):
        sampler, assigner = head.bbox_sampler[stage], head.bbox_assigner[stage]

        def sample(*args, _sample=sampler.sample, _stage=stage, **kwargs):
            result = _sample(*args, **kwargs)
            sampled.setdefault(_stage, []).append(result)
            return result

        def assign(pred_instances, *args, _assign=assigner.assign, _stage=stage, **kwargs):
            assigned.setdefault(_stage, []).append(pred_instances.priors.clone())
            return _assign(pred_instances, *args, **kwargs)

        monkeypatch.setattr(sampler, 'sample', sample)
        monkeypatch.setattr(assigner, 'assign', assign)

    samples = [gt_sample(False), make_det_sample([[4, 30, 36, 62]], [1])]
    props = [near_gt_proposals(), proposals([[2, 28, 30, 60], [20, 0, 50, 30]])]
    head.loss(make_feats(batch=2), props, samples)

    torch.testing.assert_close(assigned[0][1], props[1].bboxes)
    for stage in (0, 1):
        for img in range(2):
            result = sampled[stage][img]
            # The GT boxes the sampler added as proposals are dropped before refinement.
            kept = torch.cat([~result.pos_is_gt.bool(),
                              result.priors.new_ones(len(result.neg_priors)).bool()])
            assert int(result.pos_is_gt.sum()) == len(samples[img].gt_instances)
            expected = decode(result.priors[kept], deltas[stage], STDS[stage])
            torch.testing.assert_close(assigned[stage + 1][img], expected)


def test_a_batch_without_any_roi_stops_after_the_first_stage():
    head = make_head(with_mask=False)
    empty = make_det_sample([], [])
    losses = head.loss(make_feats(), [proposals([])], [empty])
    # No RoI: no classification term (as mmdetection's BBoxHead), a zero box loss, and
    # refine_bboxes has nothing to pass on to stage 1.
    assert list(losses) == ['s0.loss_bbox'] and losses['s0.loss_bbox'] == 0


def test_ohem_samplers_score_rois_with_their_own_stage():
    # A sampler built with the head as context reads ``current_stage`` at build time and
    # mines with ``_bbox_forward(stage, ...)`` during the loss.
    cfg = head_cfg(with_mask=False)
    for stage_cfg in cfg['train_cfg']:
        stage_cfg.sampler = dict(type='OHEMSampler', num=16, pos_fraction=0.25,
                                 neg_pos_ub=-1, add_gt_as_proposals=True)
    register_all_modules()
    head = MODELS.build(cfg)
    init_weights_quietly(head)
    assert [s.bbox_head for s in head.bbox_sampler] == list(head.bbox_head)
    losses = head.loss(make_feats(), [near_gt_proposals()], [gt_sample(False)])
    assert_finite_losses(losses)
    assert len(losses) == 9


# ----------------------------------------------------------------------------- inference


def stage_reference(head, feats, props, deltas):
    """Step by step: each stage's RoIs and logits, with constant deltas per stage."""
    rois = [p.bboxes for p in props]
    stage_rois, logits = [], []
    for stage in range(3):
        stage_rois.append(rois)
        extractor = head.bbox_roi_extractor[stage]
        flat = with_batch_index(rois)
        cls_score, _ = head.bbox_head[stage](extractor(feats[:extractor.num_inputs], flat))
        logits.append(cls_score.split([len(r) for r in rois]))
        rois = [decode(r, deltas[stage], STDS[stage]) for r in rois]
    return stage_rois, logits, rois


@pytest.fixture
def sharp_head():
    """A head whose class logits differ clearly between stages, with fixed deltas."""
    head = make_head()
    torch.manual_seed(3)
    for bbox_head in head.bbox_head:
        nn.init.normal_(bbox_head.fc_cls.weight, std=0.5)
    deltas = ([0.5, -0.5, 0.3, -0.2], [-1.0, 0.8, -0.4, 0.5], [0.6, 0.4, 0.2, -0.3])
    for stage in range(3):
        set_constant_deltas(head, stage, deltas[stage])
    return head.eval(), deltas


def two_images():
    samples = [make_det_sample(img_shape=(IMG, IMG)) for _ in range(2)]
    props = [near_gt_proposals(), proposals([[2, 28, 30, 60], [20, 0, 50, 30], [5, 5, 60, 60]])]
    return samples, props


def test_predict_averages_the_stage_logits_and_decodes_with_the_last_stage(sharp_head):
    head, deltas = sharp_head
    feats, (samples, props) = make_feats(batch=2), two_images()
    metas = [s.metainfo for s in samples]
    with torch.no_grad():
        raw = head.predict_bbox(feats, metas, props, rcnn_test_cfg=None)
        _, logits, final_boxes = stage_reference(head, feats, props, deltas)
    for img in range(2):
        mean_logits = sum(stage[img] for stage in logits) / 3
        torch.testing.assert_close(raw[img].scores, F.softmax(mean_logits, -1))
        # The softmax comes after the mean: the mean of the stages' softmaxes differs.
        mean_softmax = sum(F.softmax(stage[img], -1) for stage in logits) / 3
        assert not torch.allclose(raw[img].scores, mean_softmax, atol=1e-3)
        torch.testing.assert_close(raw[img].bboxes, final_boxes[img])


def test_tensor_forward_matches_mmdetection_outputs(sharp_head):
    head, deltas = sharp_head
    feats, (samples, props) = make_feats(batch=2), two_images()
    with torch.no_grad():
        cls_scores, bbox_preds, masks = head.forward(feats, props, samples)
        stage_rois, logits, _ = stage_reference(head, feats, props, deltas)
        last_rois = with_batch_index(stage_rois[2])
        probs = [head.mask_head[s](head.mask_roi_extractor[s](feats[:4], last_rois)).sigmoid()
                 for s in range(3)]
    mean_probs = (sum(probs) / 3).split([6, 3])
    assert len(cls_scores) == len(bbox_preds) == len(masks) == 2
    for img, num in enumerate([6, 3]):
        # Mean raw logits (no softmax), the last stage's deltas, mean mask probabilities
        # of the RoIs the last stage saw.
        torch.testing.assert_close(cls_scores[img], sum(s[img] for s in logits) / 3)
        torch.testing.assert_close(bbox_preds[img],
                                   torch.tensor([deltas[2]]).expand(num, 4))
        assert masks[img].shape == (num, NUM_CLASSES, 28, 28)
        torch.testing.assert_close(masks[img], mean_probs[img])


def test_masks_are_predicted_from_the_mean_of_the_stage_probabilities(sharp_head, monkeypatch):
    head, _ = sharp_head
    feats, (samples, props) = make_feats(batch=2), two_images()
    captured = {}
    last_mask_head = head.mask_head[-1]
    original = last_mask_head.predict_by_feat

    def predict_by_feat(**kwargs):
        captured.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(last_mask_head, 'predict_by_feat', predict_by_feat)
    with torch.no_grad():
        results = head.predict(feats, props, samples, rescale=True)
        det_rois = with_batch_index([r.bboxes for r in captured['results_list']])
        probs = [head.mask_head[s](head.mask_roi_extractor[s](feats[:4], det_rois)).sigmoid()
                 for s in range(3)]
    assert captured['activate_map'] is True
    expected = (sum(probs) / 3).split([len(r) for r in results])
    for got, want in zip(captured['mask_preds'], expected):
        torch.testing.assert_close(got, want)
    for res in results:
        assert len(res) > 0
        assert res.masks.shape == (len(res), IMG, IMG) and res.masks.dtype == torch.bool
        assert res.bboxes.shape == (len(res), 4) and res.labels.max() < NUM_CLASSES


def test_no_proposals_give_empty_detections_and_masks():
    head = make_head().eval()
    sample = make_det_sample(img_shape=(IMG, IMG), ori_shape=(48, 80))
    with torch.no_grad():
        res = head.predict(make_feats(), [proposals([])], [sample], rescale=True)[0]
    assert res.bboxes.shape == (0, 4) and res.scores.shape == (0, )
    assert res.masks.shape == (0, 48, 80)


def test_class_specific_refinement_uses_the_best_foreground_class():
    # With per-class deltas, a RoI moves to the next stage with the deltas of its best
    # foreground class, even when the background logit is the largest.
    head = make_head(with_mask=False,
                     bbox_head=[dict(bbox_head_cfg(s), reg_class_agnostic=False) for s in STDS])
    head.eval()
    with torch.no_grad():
        for bbox_head in head.bbox_head:
            bbox_head.fc_reg.weight.zero_()
            bbox_head.fc_reg.bias.zero_()
        first = head.bbox_head[0]
        first.fc_cls.weight.zero_()
        first.fc_cls.bias.copy_(torch.tensor([0., 5., 1., 9.]))  # classes 0..2, background
        first.fc_reg.bias[4:6] = 1.0  # class 1: (dx, dy) = (1, 1)
        first.fc_reg.bias[8:10] = -1.0  # class 2 would move the other way
        metas = [make_det_sample(img_shape=(IMG, IMG)).metainfo]
        raw = head.predict_bbox(make_feats(), metas, [proposals([[10, 10, 40, 40]])],
                                rcnn_test_cfg=None)[0]
    # std 0.1 on a 30 px box: a 3 px shift; the later stages predict zero deltas.
    torch.testing.assert_close(raw.bboxes, torch.tensor([[13., 13., 43., 43.]]).repeat(1, 3))
