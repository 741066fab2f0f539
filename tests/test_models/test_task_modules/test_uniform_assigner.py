"""UniformAssigner (YOLOF) and ApproxMaxIoUAssigner (Guided Anchoring) by hand."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.registry import TASK_UTILS

GT = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]), labels=torch.tensor([2]))
PRIORS = torch.tensor([[0., 0., 10., 10.], [0., 0., 20., 20.], [40., 40., 50., 50.],
                       [100., 100., 110., 110.]])
# Predicted boxes: far; L1(cxcywh) 2 from the gt (nearest, IoU 81/119); far; IoU .8 (L1 3).
PREDS = torch.tensor([[30., 30., 40., 40.], [1., 1., 11., 11.], [40., 40., 50., 50.],
                      [0., 0., 10., 8.]])


def _uniform(**cfg):
    cfg = {'pos_ignore_thr': 0.15, 'neg_ignore_thr': 0.7, 'match_times': 1, **cfg}
    assigner = TASK_UTILS.build(dict(type='UniformAssigner', **cfg))
    return assigner.assign(InstanceData(priors=PRIORS, decoder_priors=PREDS), GT)


def test_nearest_prediction_and_prior_are_positive():
    result = _uniform()
    # Prediction 1 is the nearest predicted box, prior 0 the nearest prior. Prediction 3
    # (IoU .8 > neg_ignore_thr) is ignored, not negative.
    assert result.gt_inds.tolist() == [1, 1, 0, -1]
    assert result.labels.tolist() == [2, 2, -1, -1]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1.]))  # per gt, priors
    assert result.get_extra_property('pos_idx').tolist() == [True, True]
    torch.testing.assert_close(result.get_extra_property('pos_predicted_boxes'),
                               PREDS[[1, 0]])
    torch.testing.assert_close(result.get_extra_property('target_boxes'),
                               GT.bboxes[[0, 0]])


def test_matches_with_low_prior_iou_are_ignored():
    # The pair (prediction 1, gt) uses prior 1's IoU with the gt: 100/400 < .3.
    result = _uniform(pos_ignore_thr=0.3)
    assert result.gt_inds.tolist() == [1, -1, 0, -1]
    assert result.get_extra_property('pos_idx').tolist() == [False, True]


def test_uniform_empty():
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    assigner = TASK_UTILS.build(dict(type='UniformAssigner', pos_ignore_thr=.15,
                                     neg_ignore_thr=.7))
    result = assigner.assign(InstanceData(priors=PRIORS, decoder_priors=PREDS), empty)
    assert result.gt_inds.tolist() == [0] * 4 and result.max_overlaps is None
    assert result.get_extra_property('pos_predicted_boxes').shape == (0, 4)


def test_approx_max_iou_takes_best_approx_per_square():
    squares = torch.tensor([[0., 0., 10., 10.], [50., 50., 60., 60.], [0., 0., 10., 4.]])
    approxs = torch.tensor([
        [[0., 0., 10., 5.], [0., 0., 10., 10.]],  # IoUs .5, 1 -> 1
        [[50., 50., 60., 60.], [0., 0., 10., 3.]],  # 0, .3 -> .3
        [[0., 0., 10., 4.], [0., 0., 10., 2.]],  # .4, .2 -> .4
    ])
    assigner = TASK_UTILS.build(dict(type='ApproxMaxIoUAssigner', pos_iou_thr=0.5,
                                     neg_iou_thr=0.3))
    result = assigner.assign(InstanceData(priors=squares, approxs=approxs), GT)
    # .3 is not < neg_iou_thr: ignored; .4 too.
    assert result.gt_inds.tolist() == [1, -1, -1]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., .3, .4]))
    wide = TASK_UTILS.build(dict(type='ApproxMaxIoUAssigner', pos_iou_thr=0.5,
                                 neg_iou_thr=0.45, gpu_assign_thr=0))
    assert wide.assign(InstanceData(priors=squares, approxs=approxs),
                       GT).gt_inds.tolist() == [1, 0, 0]
    # Ignore regions are measured on the squares.
    ignore = InstanceData(bboxes=torch.tensor([[45., 45., 65., 65.]]))
    ignoring = TASK_UTILS.build(dict(type='ApproxMaxIoUAssigner', pos_iou_thr=0.5,
                                     neg_iou_thr=0.45, ignore_iof_thr=0.5))
    assert ignoring.assign(InstanceData(priors=squares, approxs=approxs), GT,
                           ignore).gt_inds.tolist() == [1, -1, 0]


def test_approx_max_iou_empty():
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    assigner = TASK_UTILS.build(dict(type='ApproxMaxIoUAssigner', pos_iou_thr=0.5,
                                     neg_iou_thr=0.3))
    result = assigner.assign(
        InstanceData(priors=torch.zeros(2, 4), approxs=torch.zeros(2, 3, 4)), empty)
    assert result.gt_inds.tolist() == [0, 0] and result.labels.tolist() == [-1, -1]
