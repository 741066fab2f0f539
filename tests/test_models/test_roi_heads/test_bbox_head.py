"""Box head: layers, training targets, losses on a hand-made case, and predictions."""
import math

import pytest
import torch
from helpers import init_weights_quietly
from mmengine.config import ConfigDict

from mmdet_lite.models.roi_heads import Shared2FCBBoxHead
from mmdet_lite.models.task_modules.assigners import AssignResult
from mmdet_lite.models.task_modules.samplers import SamplingResult

# Encoded (dx, dy, dw, dh) of GT (4, 4, 16, 16) on prior (5, 5, 15, 15) with stds
# (0.1, 0.1, 0.2, 0.2): same centre, sizes 12 vs 10.
T = math.log(1.2) / 0.2
TRAIN_CFG = ConfigDict(pos_weight=-1)
TEST_CFG = ConfigDict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=100)


def make_head(num_classes: int = 3, **kwargs) -> Shared2FCBBoxHead:
    head = Shared2FCBBoxHead(in_channels=2, roi_feat_size=7, fc_out_channels=8,
                             num_classes=num_classes,
                             loss_bbox=dict(type='L1Loss', loss_weight=1.0), **kwargs)
    init_weights_quietly(head)
    return head


def sampling_results():
    """Image 0: two positives (GT labels 2 and 1) and one negative; image 1: one negative."""
    priors = torch.tensor([[0., 0., 10., 10.], [5., 5., 15., 15.], [20., 20., 30., 30.]])
    gt_bboxes = torch.tensor([[0., 0., 10., 10.], [4., 4., 16., 16.]])
    assign = AssignResult(2, gt_inds=torch.tensor([1, 2, 0]),
                          max_overlaps=torch.tensor([1.0, 0.69, 0.0]),
                          labels=torch.tensor([2, 1, -1]))
    first = SamplingResult(torch.tensor([0, 1]), torch.tensor([2]), priors, gt_bboxes, assign,
                           torch.zeros(3, dtype=torch.uint8))
    assign = AssignResult(0, gt_inds=torch.tensor([0]), max_overlaps=torch.tensor([0.0]),
                          labels=torch.tensor([-1]))
    second = SamplingResult(torch.tensor([], dtype=torch.long), torch.tensor([0]),
                            torch.tensor([[0., 0., 5., 5.]]), torch.zeros(0, 4), assign,
                            torch.zeros(1, dtype=torch.uint8))
    return [first, second]


def sampled_rois(results):
    return torch.cat([torch.cat([r.priors.new_full((len(r.priors), 1), i), r.priors], 1)
                      for i, r in enumerate(results)])


# ----------------------------------------------------------------------------- layers


def test_coco_head_layers_match_mmdet():
    head = Shared2FCBBoxHead(in_channels=256, fc_out_channels=1024, roi_feat_size=7,
                             num_classes=80)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        'shared_fcs.0.weight': (1024, 256 * 7 * 7), 'shared_fcs.0.bias': (1024, ),
        'shared_fcs.1.weight': (1024, 1024), 'shared_fcs.1.bias': (1024, ),
        'fc_cls.weight': (81, 1024), 'fc_cls.bias': (81, ),  # background last
        'fc_reg.weight': (320, 1024), 'fc_reg.bias': (320, ),
    }
    cls_score, bbox_pred = head(torch.rand(3, 256, 7, 7))
    assert cls_score.shape == (3, 81)
    assert bbox_pred.shape == (3, 320)


def test_class_agnostic_head_predicts_one_box_per_roi():
    head = make_head(reg_class_agnostic=True)
    assert head.fc_reg.weight.shape == (4, 8)
    cls_score, bbox_pred = head(torch.rand(5, 2, 7, 7))
    assert cls_score.shape == (5, 4)
    assert bbox_pred.shape == (5, 4)


def test_no_branch_at_all_is_rejected_as_an_assertion():
    # mmdetection asserts with_cls or with_reg; it has no num_classes check.
    with pytest.raises(AssertionError, match='with_cls or with_reg'):
        make_head(with_cls=False, with_reg=False)


# ----------------------------------------------------------------------------- targets


def test_get_targets_labels_weights_and_encoded_boxes():
    labels, label_weights, bbox_targets, bbox_weights = make_head().get_targets(
        sampling_results(), TRAIN_CFG)
    assert labels.tolist() == [2, 1, 3, 3]  # negatives get the background label 3
    assert label_weights.tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(bbox_targets, torch.tensor(
        [[0., 0., 0., 0.], [0., 0., T, T], [0., 0., 0., 0.], [0., 0., 0., 0.]]))
    torch.testing.assert_close(bbox_weights, torch.tensor([[1.] * 4, [1.] * 4, [0.] * 4,
                                                           [0.] * 4]))


def test_pos_weight_and_decoded_targets():
    head = make_head(reg_decoded_bbox=True)
    _, label_weights, bbox_targets, _ = head.get_targets(sampling_results(),
                                                         ConfigDict(pos_weight=2.0))
    assert label_weights.tolist() == [2, 2, 1, 1]
    torch.testing.assert_close(bbox_targets[:2],
                               torch.tensor([[0., 0., 10., 10.], [4., 4., 16., 16.]]))


# ----------------------------------------------------------------------------- losses


def hand_made_predictions(box_dim_per_roi: int):
    """Logits with ln(3) on one class: CE is ln 2 when it is the label, ln 6 when not."""
    ln3 = math.log(3)
    cls_score = torch.tensor([[0., 0., ln3, 0.],  # label 2: right
                              [ln3, 0., 0., 0.],  # label 1: wrong
                              [0., 0., 0., ln3],  # background: right
                              [0., ln3, 0., 0.]])  # background: wrong
    bbox_pred = torch.rand(4, box_dim_per_roi) * 5  # ignored except the positives' slots
    return cls_score, bbox_pred


def test_loss_values_on_a_hand_made_case():
    results = sampling_results()
    cls_score, bbox_pred = hand_made_predictions(12)
    bbox_pred[0, 8:12] = torch.tensor([1., 0., 0., 0.])  # RoI 0, class 2: off by 1 in dx
    bbox_pred[1, 4:8] = torch.tensor([0., 0., T, T])  # RoI 1, class 1: exact
    out = make_head().loss_and_target(cls_score, bbox_pred, sampled_rois(results), results,
                                      TRAIN_CFG)
    losses = out['loss_bbox']
    assert set(losses) == {'loss_cls', 'acc', 'loss_bbox'}
    assert losses['loss_cls'].item() == pytest.approx(math.log(12) / 2, abs=1e-6)
    assert losses['acc'].item() == pytest.approx(50.0)
    # L1 summed over the positives, divided by all 4 sampled RoIs.
    assert losses['loss_bbox'].item() == pytest.approx(0.25, abs=1e-6)
    assert out['bbox_targets'][0].tolist() == [2, 1, 3, 3]


def test_class_agnostic_loss_reads_the_single_box():
    results = sampling_results()
    cls_score, bbox_pred = hand_made_predictions(4)
    bbox_pred[0] = torch.tensor([1., 0., 0., 0.])
    bbox_pred[1] = torch.tensor([0., 0., T, T])
    losses = make_head(reg_class_agnostic=True).loss_and_target(
        cls_score, bbox_pred, sampled_rois(results), results, TRAIN_CFG)['loss_bbox']
    assert losses['loss_bbox'].item() == pytest.approx(0.25, abs=1e-6)


def test_no_positives_gives_a_zero_box_loss_with_gradient():
    results = sampling_results()[1:]
    bbox_pred = torch.rand(1, 12, requires_grad=True)
    losses = make_head().loss_and_target(torch.zeros(1, 4), bbox_pred, sampled_rois(results),
                                         results, TRAIN_CFG)['loss_bbox']
    assert losses['loss_bbox'].item() == 0
    losses['loss_bbox'].backward()
    # Still in the graph (DDP needs every parameter used), but no box pulls on it.
    assert bbox_pred.grad is not None and bbox_pred.grad.shape == (1, 12)
    assert torch.count_nonzero(bbox_pred.grad) == 0


# ----------------------------------------------------------------------------- predict


def predict_case():
    """Two RoIs in a 32x32 input made from a 64x64 image (scale 0.5), zero deltas."""
    rois = torch.tensor([[0., 10., 10., 20., 30.], [0., 20., 20., 40., 40.]])
    # softmax: RoI 0 -> (0.1, 0.8, 0.1); RoI 1 -> (0.25, 0.5, 0.25); last column background.
    cls_score = torch.log(torch.tensor([[1., 8., 1.], [1., 2., 1.]]))
    meta = dict(img_shape=(32, 32), ori_shape=(64, 64), scale_factor=(0.5, 0.5))
    return (rois, ), (cls_score, ), (torch.zeros(2, 8), ), [meta]


def test_predict_decodes_clips_and_runs_nms():
    results = make_head(num_classes=2).predict_by_feat(*predict_case(), rcnn_test_cfg=TEST_CFG)
    res = results[0]
    # RoI 1 is clipped to the 32x32 input; the boxes only touch, so NMS keeps all four.
    assert res.labels.tolist() == [1, 1, 0, 0]
    assert res.scores.tolist() == pytest.approx([0.8, 0.5, 0.25, 0.1])
    torch.testing.assert_close(res.bboxes, torch.tensor(
        [[10., 10., 20., 30.], [20., 20., 32., 32.], [20., 20., 32., 32.],
         [10., 10., 20., 30.]]))


def test_predict_rescales_to_the_original_image():
    cfg = ConfigDict(TEST_CFG, max_per_img=2)
    res = make_head(num_classes=2).predict_by_feat(*predict_case(), rcnn_test_cfg=cfg,
                                                   rescale=True)[0]
    assert res.labels.tolist() == [1, 1]
    torch.testing.assert_close(res.bboxes,
                               torch.tensor([[20., 20., 40., 60.], [40., 40., 64., 64.]]))


def test_predict_without_test_cfg_returns_every_class_box():
    res = make_head(num_classes=2).predict_by_feat(*predict_case(), rcnn_test_cfg=None)[0]
    assert res.bboxes.shape == (2, 8)
    torch.testing.assert_close(res.scores.sum(1), torch.ones(2))


def test_predict_with_no_rois_is_empty():
    meta = dict(img_shape=(32, 32), scale_factor=(1.0, 1.0))
    res = make_head().predict_by_feat((torch.zeros(0, 5), ), (torch.zeros(0, 4), ),
                                      (torch.zeros(0, 12), ), [meta], TEST_CFG)[0]
    assert res.bboxes.shape == (0, 4)
    assert res.labels.dtype == torch.int64
