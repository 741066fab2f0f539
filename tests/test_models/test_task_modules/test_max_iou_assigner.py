"""MaxIoUAssigner on hand-made boxes whose IoUs are easy to check."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules import AssignResult, MaxIoUAssigner
from mmdet_lite.registry import TASK_UTILS

# gt 0 = [0, 0, 10, 10] (label 3), gt 1 = [20, 20, 30, 30] (label 7).
GT = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.], [20., 20., 30., 30.]]),
                  labels=torch.tensor([3, 7]))
# IoU with its best gt:   1.0 (gt0), 0.5 (gt0), 0.2 (gt0), 0 (none), 0.6 (gt1)
PRIORS = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 5.], [0., 0., 10., 2.],
                       [50., 50., 60., 60.], [20., 20., 30., 26.]])


def _assign(priors=PRIORS, gt=GT, ignore=None, **cfg):
    cfg = {'pos_iou_thr': 0.5, 'neg_iou_thr': 0.3, **cfg}
    assigner = TASK_UTILS.build(dict(type='MaxIoUAssigner', **cfg))
    return assigner.assign(InstanceData(priors=priors), gt, ignore)


def test_positives_and_negatives_by_threshold():
    result = _assign()
    assert isinstance(result, AssignResult)
    assert result.num_gts == 2 and result.num_preds == 5
    assert result.gt_inds.tolist() == [1, 1, 0, 0, 2]
    assert result.labels.tolist() == [3, 3, -1, -1, 7]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., .5, .2, 0., .6]))


def test_between_thresholds_is_ignored_without_low_quality_match():
    result = _assign(pos_iou_thr=0.7, match_low_quality=False)
    assert result.gt_inds.tolist() == [1, -1, 0, 0, -1]
    assert result.labels.tolist() == [3, -1, -1, -1, -1]


def test_low_quality_match_gives_each_gt_its_best_prior():
    result = _assign(pos_iou_thr=0.7)  # prior 4 (IoU 0.6) is still gt 1's best
    assert result.gt_inds.tolist() == [1, -1, 0, 0, 2]
    assert result.labels.tolist() == [3, -1, -1, -1, 7]


def test_min_pos_iou_blocks_weak_low_quality_match():
    result = _assign(pos_iou_thr=0.7, min_pos_iou=0.65)
    assert result.gt_inds.tolist() == [1, -1, 0, 0, -1]


def test_gt_max_assign_all_assigns_every_tied_prior():
    # Two priors tie at IoU 0.6 with gt 1; neither reaches pos_iou_thr.
    priors = torch.cat([PRIORS, torch.tensor([[20., 24., 30., 30.]])])
    result = _assign(priors=priors, pos_iou_thr=0.7)
    assert result.gt_inds[4:].tolist() == [2, 2]
    single = _assign(priors=priors, pos_iou_thr=0.7, gt_max_assign_all=False)
    assert sorted(single.gt_inds[4:].tolist()) == [-1, 2]


def test_ignore_iof_thr_ignores_priors_inside_ignored_region():
    ignore = InstanceData(bboxes=torch.tensor([[40., 40., 70., 70.]]))
    # Prior 3 lies fully inside the ignored box: IoF w.r.t. the prior is 1.
    result = _assign(ignore=ignore, ignore_iof_thr=0.5)
    assert result.gt_inds.tolist() == [1, 1, 0, -1, 2]
    # Relative to the ignored box the IoF is only 100 / 900, so nothing is ignored.
    result = _assign(ignore=ignore, ignore_iof_thr=0.5, ignore_wrt_candidates=False)
    assert result.gt_inds.tolist() == [1, 1, 0, 0, 2]
    # ignore_iof_thr=-1 (default) disables ignoring.
    assert _assign(ignore=ignore).gt_inds.tolist() == [1, 1, 0, 0, 2]


def test_neg_iou_thr_as_range():
    result = _assign(neg_iou_thr=(0.1, 0.3))
    # Prior 3 (IoU 0) is below the range: neither negative nor positive.
    assert result.gt_inds.tolist() == [1, 1, 0, -1, 2]


def test_zero_gt_makes_every_prior_negative():
    gt = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = _assign(gt=gt)
    assert result.num_gts == 0
    assert result.gt_inds.tolist() == [0] * 5
    assert result.labels.tolist() == [-1] * 5
    assert result.max_overlaps.tolist() == [0.] * 5


def test_zero_priors():
    result = _assign(priors=torch.zeros(0, 4))
    assert result.num_preds == 0
    assert result.gt_inds.shape == result.labels.shape == result.max_overlaps.shape == (0, )


def test_proposals_given_as_bboxes_field():
    assigner = MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.3)
    scored = torch.cat([PRIORS, torch.rand(5, 1)], dim=1)  # [N, 5] with scores
    result = assigner.assign(InstanceData(bboxes=scored), GT)
    assert result.gt_inds.tolist() == [1, 1, 0, 0, 2]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match='neg_iou_thr'):
        MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=(0.1, 0.2, 0.3))
    with pytest.raises(KeyError, match='priors'):
        MaxIoUAssigner(pos_iou_thr=0.5, neg_iou_thr=0.3).assign(InstanceData(), GT)


def test_add_gt_prepends_perfect_matches():
    result = _assign()
    result.add_gt_(torch.tensor([3, 7]))
    assert result.num_preds == 7
    assert result.gt_inds[:2].tolist() == [1, 2]
    assert result.labels[:2].tolist() == [3, 7]
    assert result.max_overlaps[:2].tolist() == [1., 1.]
    assert set(result.info) >= {'num_gts', 'num_preds', 'gt_inds', 'max_overlaps', 'labels'}
