"""GridAssigner (YOLOv3): responsible cells, inclusive negatives, strict positives."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners import GridAssigner
from mmdet_lite.registry import TASK_UTILS

GT = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]), labels=torch.tensor([2]))
# IoU with the gt: 1, .5, .4, 0, .8; only prior 0 is responsible.
PRIORS = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 5.], [0., 0., 10., 4.],
                       [50., 50., 60., 60.], [0., 0., 10., 8.]])
FLAGS = torch.tensor([1, 0, 0, 0, 0], dtype=torch.uint8)


def _assign(priors=PRIORS, flags=FLAGS, gt=GT, **cfg):
    cfg = {'pos_iou_thr': 0.5, 'neg_iou_thr': 0.5, 'min_pos_iou': 0., **cfg}
    assigner = TASK_UTILS.build(dict(type='GridAssigner', **cfg))
    return assigner.assign(InstanceData(priors=priors, responsible_flags=flags), gt)


def test_by_hand():
    result = _assign()
    # IoU .5 is negative (neg_iou_thr is inclusive); .8 is not responsible: ignored.
    assert result.gt_inds.tolist() == [1, 0, 0, 0, -1]
    assert result.labels.tolist() == [2, -1, -1, -1, -1]
    # max_overlaps after masking the non-responsible priors with -1.
    assert result.max_overlaps.tolist() == [1., -1., -1., -1., -1.]


def test_low_quality_match_is_strict_in_min_pos_iou():
    priors = PRIORS.clone()
    priors[0] = torch.tensor([0., 0., 10., 3.])  # responsible, IoU .3 < pos_iou_thr
    assert _assign(priors=priors).gt_inds.tolist() == [1, 0, 0, 0, -1]
    # IoU .3 is not > min_pos_iou .3: no low-quality match; .3 <= .5 -> negative.
    assert _assign(priors=priors, min_pos_iou=0.3).gt_inds.tolist() == [0, 0, 0, 0, -1]
    single = _assign(priors=priors, gt_max_assign_all=False)
    assert single.gt_inds.tolist() == [1, 0, 0, 0, -1]


def test_negative_range_is_open_below_and_closed_above():
    result = _assign(neg_iou_thr=(0.0, 0.45))
    # IoU 0 is not > 0 (stays ignored); .4 in (0, .45]; .5 above.
    assert result.gt_inds.tolist() == [1, -1, 0, -1, -1]


def test_empty_cases():
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = _assign(gt=empty)
    assert result.gt_inds.tolist() == [0] * 5 and result.labels.tolist() == [-1] * 5
    assert result.max_overlaps.tolist() == [0.] * 5
    result = GridAssigner(0.5, 0.5).assign(
        InstanceData(priors=torch.zeros(0, 4), responsible_flags=torch.zeros(0)), GT)
    assert result.gt_inds.shape == (0, )
