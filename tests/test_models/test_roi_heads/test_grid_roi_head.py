"""Grid R-CNN's GridRoIHead: the random jitter of the positive RoIs, the grid branch's part
in the loss (jittered positives, at most ``max_num_grid`` of them, no grid loss without
positives), and predictions refined by the grid head; on a tiny head (16-channel features).
"""
import copy
import inspect

import pytest
import torch
from helpers import assert_finite_losses, init_weights_quietly, make_det_sample
from helpers_grid_rcnn_keys import tiny_grid_rcnn_cfg
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.roi_heads import GridHead, GridRoIHead, StandardRoIHead
from mmdet_lite.models.task_modules.samplers import SamplingResult
from mmdet_lite.registry import MODELS

FPN = 16
STRIDES = [4, 8, 16, 32, 64]
PROPOSALS = [[10, 10, 40, 40], [0, 0, 20, 20], [30, 22, 58, 50], [40, 0, 63, 20],
             [9, 7, 42, 41], [29, 21, 61, 52]]


def make_roi_head(**rcnn_train) -> GridRoIHead:
    cfg = tiny_grid_rcnn_cfg()
    head_cfg = copy.deepcopy(cfg['roi_head'])
    head_cfg.update(train_cfg=ConfigDict(cfg['train_cfg']['rcnn'], **rcnn_train),
                    test_cfg=ConfigDict(cfg['test_cfg']['rcnn']))
    head = MODELS.build(head_cfg)
    init_weights_quietly(head)
    return head


def make_feats(num_imgs: int = 1):
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.rand(num_imgs, FPN, max(64 // s, 1), max(64 // s, 1),
                            generator=generator) for s in STRIDES)


def proposals(bboxes):
    return InstanceData(bboxes=torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4))


def _with_positives(pos: torch.Tensor) -> SamplingResult:
    """A SamplingResult whose positive RoIs are ``pos`` [P, 4]."""
    result = SamplingResult.random(rng=0)
    result.pos_priors = pos
    return result


# ----------------------------------------------------------------------- construction
def test_arguments_and_the_shared_extractor():
    params = inspect.signature(GridRoIHead.__init__).parameters
    assert list(params) == ['self', 'grid_roi_extractor', 'grid_head', 'kwargs']
    assert issubclass(GridRoIHead, StandardRoIHead)
    head = make_roi_head()
    assert isinstance(head.grid_head, GridHead) and not head.share_roi_extractor
    assert head.grid_roi_extractor.roi_layers[0].output_size == (14, 14)

    cfg = copy.deepcopy(tiny_grid_rcnn_cfg()['roi_head'])
    cfg['grid_roi_extractor'] = None
    shared = MODELS.build(cfg)
    assert shared.share_roi_extractor
    assert shared.grid_roi_extractor is shared.bbox_roi_extractor

    cfg['grid_head'] = None
    with pytest.raises(AssertionError, match='grid_head'):
        MODELS.build(cfg)


# ----------------------------------------------------------------------- jitter
def test_jitter_keeps_the_count_and_moves_boxes_within_the_amplitude():
    head = make_roi_head()
    boxes = torch.tensor([[100., 100., 200., 150.], [300., 50., 340., 250.],
                          [120., 400., 180., 480.]])
    results = [_with_positives(boxes.clone()), _with_positives(torch.zeros(0, 4))]
    metas = [dict(img_shape=(1000, 1000)), dict(img_shape=(1000, 1000))]
    torch.manual_seed(0)
    out = head._random_jitter(results, metas)
    assert out is results
    jittered = results[0].pos_priors
    assert jittered.shape == (3, 4) and results[1].pos_priors.shape == (0, 4)
    wh = boxes[:, 2:] - boxes[:, :2]
    new_wh = jittered[:, 2:] - jittered[:, :2]
    centre_shift = (jittered[:, :2] + jittered[:, 2:]) / 2 - (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (centre_shift.abs() <= 0.15 * wh + 1e-4).all()
    assert ((new_wh >= 0.85 * wh - 1e-4) & (new_wh <= 1.15 * wh + 1e-4)).all()
    assert not torch.allclose(jittered, boxes)


def test_jitter_draws_offsets_like_mmdetection_and_clips_to_the_image():
    """Offsets (dx, dy, dw, dh) ~ U(-0.15, 0.15) drawn as one [P, 4] tensor per image: the
    centre moves by (dx * w, dy * h), the size scales by (1 + dw, 1 + dh); then x is clipped
    to [0, W - 1] and y to [0, H - 1]."""
    head = make_roi_head()
    boxes = torch.tensor([[0., 0., 30., 20.], [40., 10., 64., 60.]])
    torch.manual_seed(3)
    offsets = torch.empty(2, 4).uniform_(-0.15, 0.15)
    expected = []
    for (x1, y1, x2, y2), (dx, dy, dw, dh) in zip(boxes.tolist(), offsets.tolist()):
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + dx * w, (y1 + y2) / 2 + dy * h
        nw, nh = w * (1 + dw), h * (1 + dh)
        expected.append([min(max(cx - nw / 2, 0), 63), min(max(cy - nh / 2, 0), 47),
                         min(max(cx + nw / 2, 0), 63), min(max(cy + nh / 2, 0), 47)])
    results = [_with_positives(boxes.clone())]
    torch.manual_seed(3)
    head._random_jitter(results, [dict(img_shape=(48, 64))])
    torch.testing.assert_close(results[0].pos_priors, torch.tensor(expected))
    assert results[0].pos_priors[:, 0::2].max() <= 63
    assert results[0].pos_priors[:, 1::2].max() <= 47


# ----------------------------------------------------------------------- loss
def test_loss_has_the_classification_and_grid_terms():
    head = make_roi_head()
    sample = make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2])
    torch.manual_seed(0)
    losses = head.loss(make_feats(), [proposals(PROPOSALS)], [sample])
    # with_reg=False: no loss_bbox, as in mmdetection
    assert set(losses) == {'loss_cls', 'acc', 'loss_grid'}
    assert_finite_losses(losses)
    assert losses['loss_grid'] > 0 and losses['loss_grid'].requires_grad


def test_grid_branch_sees_the_jittered_positives_and_at_most_max_num_grid(monkeypatch):
    head = make_roi_head(max_num_grid=3)
    seen = {}
    original_loss = head.grid_head.loss

    def capture_loss(grid_pred, sample_idx, sampling_results, cfg):
        seen.update(idx=sample_idx, pos=[r.pos_priors.clone() for r in sampling_results],
                    rows=grid_pred['fused'].shape[0])
        return original_loss(grid_pred, sample_idx, sampling_results, cfg)

    monkeypatch.setattr(head.grid_head, 'loss', capture_loss)
    rois_seen = []
    extractor_forward = head.grid_roi_extractor.forward

    def capture_rois(feats, rois, *args, **kwargs):
        rois_seen.append(rois.clone())
        return extractor_forward(feats, rois, *args, **kwargs)

    monkeypatch.setattr(head.grid_roi_extractor, 'forward', capture_rois)
    samples = [make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2]),
               make_det_sample([[4, 30, 36, 62]], [1])]
    torch.manual_seed(0)
    head.loss(make_feats(2), [proposals(PROPOSALS), proposals(PROPOSALS)], samples)
    num_pos = sum(len(p) for p in seen['pos'])
    assert num_pos > 3
    assert seen['rows'] == 3 and len(seen['idx']) == 3 and len(set(seen['idx'].tolist())) == 3
    # the grid RoIs are the (jittered) positives the targets are built from
    rois = rois_seen[0]
    assert rois.shape == (num_pos, 5)
    torch.testing.assert_close(rois[:, 1:], torch.cat(seen['pos']))
    assert rois[:, 0].tolist() == [0.0] * len(seen['pos'][0]) + [1.0] * len(seen['pos'][1])
    gt_boxes = torch.tensor([[8., 8., 40., 40.], [30., 20., 60., 50.], [4., 30., 36., 62.]])
    assert not any((gt_boxes == box).all(1).any() for box in torch.cat(seen['pos']))


def test_no_grid_loss_without_positives():
    head = make_roi_head()
    sample = make_det_sample([])
    losses = head.loss(make_feats(), [proposals(PROPOSALS)], [sample])
    assert set(losses) == {'loss_cls', 'acc'}


def test_bbox_loss_needs_the_image_metas():
    head = make_roi_head()
    with pytest.raises(AssertionError, match='batch_img_metas'):
        head.bbox_loss(make_feats(), [_with_positives(torch.zeros(0, 4))])


# ----------------------------------------------------------------------- predict
def test_predictions_are_the_classified_boxes_moved_by_the_grid_head():
    head = make_roi_head().eval()
    head.test_cfg.update(score_thr=0.0, max_per_img=5)
    meta = make_det_sample([], img_shape=(64, 64), scale_factor=(2.0, 0.5)).metainfo
    feats = make_feats()
    with torch.no_grad():
        # the classification-only box head keeps the proposal boxes
        classified = StandardRoIHead.predict_bbox(head, feats, [meta],
                                                  [proposals(PROPOSALS)], head.test_cfg)
        kept = classified[0].bboxes.clone()
        grid_preds = head.grid_head(head.grid_roi_extractor(
            feats[:4], torch.cat([kept.new_zeros(len(kept), 1), kept], 1)))
        expected = head.grid_head._predict_by_feat_single(grid_preds['fused'], kept, meta)
        results = head.predict_bbox(feats, [meta], [proposals(PROPOSALS)], head.test_cfg)
        rescaled = head.predict_bbox(feats, [meta], [proposals(PROPOSALS)], head.test_cfg,
                                     rescale=True)
    assert len(results[0]) == 5 and set(results[0].keys()) == {'bboxes', 'scores', 'labels'}
    assert all(any((kept_box == p).all() for p in torch.tensor(PROPOSALS, dtype=torch.float))
               for kept_box in kept)
    torch.testing.assert_close(results[0].bboxes, expected)
    torch.testing.assert_close(results[0].scores, classified[0].scores)
    assert not torch.allclose(results[0].bboxes, kept)
    torch.testing.assert_close(rescaled[0].bboxes,
                               expected / torch.tensor([2.0, 0.5, 2.0, 0.5]))


def test_predict_without_detections_skips_the_grid_head(monkeypatch):
    head = make_roi_head().eval()
    monkeypatch.setattr(head.grid_head, 'forward', lambda *a: pytest.fail('called'))
    meta = make_det_sample([]).metainfo
    with torch.no_grad():
        results = head.predict_bbox(make_feats(), [meta], [proposals([])], head.test_cfg)
    assert len(results[0]) == 0 and results[0].bboxes.shape == (0, 4)


def test_tensor_mode_returns_class_scores_and_grid_heatmaps():
    head = make_roi_head().eval()
    with torch.no_grad():
        outs = head.forward(make_feats(), [proposals(PROPOSALS)])
    cls_score, grid_preds = outs  # no bbox_pred: the box head does not regress
    assert cls_score.shape == (6, 4)
    assert grid_preds['fused'].shape == (6, 9, 28, 28)
    assert head.grid_head.test_mode is True
