"""PointAssigner (RepPoints): gt level from its size, nearest points on that level."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners import PointAssigner
from mmdet_lite.registry import TASK_UTILS

# Level 3 (stride 8) points at (4,4) ... (28,28); level 4 (stride 16) at (8,8), (24,24), (40,40).
POINTS = torch.tensor([[4., 4., 8., 8.], [12., 12., 8., 8.], [20., 20., 8., 8.],
                       [28., 28., 8., 8.], [8., 8., 16., 16.], [24., 24., 16., 16.],
                       [40., 40., 16., 16.]])
GT_A = [0., 0., 32., 32.]  # log2(32 / 4) = 3 -> level 3, center (16, 16)
GT_B = [0., 0., 64., 64.]  # log2(64 / 4) = 4 -> level 4, center (32, 32)
GT_C = [8., 8., 24., 24.]  # log2(16 / 4) = 2 -> clamped to level 3, center (16, 16)


def _assign(gts, labels, pos_num=2):
    assigner = TASK_UTILS.build(dict(type='PointAssigner', scale=4, pos_num=pos_num))
    gt = InstanceData(bboxes=torch.tensor(gts), labels=torch.tensor(labels))
    return assigner.assign(InstanceData(priors=POINTS), gt)


def test_each_gt_takes_its_nearest_points_on_its_level():
    result = _assign([GT_A, GT_B], [1, 6])
    # A: distances / 32 on level 3 are .53, .18, .18, .53; B on level 4: .53, .18, .18.
    assert result.gt_inds.tolist() == [0, 1, 1, 0, 0, 2, 2]
    assert result.labels.tolist() == [-1, 1, 1, -1, -1, 6, 6]
    assert result.max_overlaps is None


def test_contested_point_keeps_the_nearer_gt():
    # C wants the same points at normalized distance .35; A is nearer (.18) and wins either way.
    for order, a_index in (([GT_C, GT_A], 2), ([GT_A, GT_C], 1)):
        result = _assign(order, [0, 1])
        assert result.gt_inds[1:3].tolist() == [a_index, a_index]
    single = _assign([GT_C], [0], pos_num=1)
    assert single.gt_inds.tolist().count(1) == 1


def test_empty():
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = PointAssigner().assign(InstanceData(priors=POINTS), empty)
    assert result.gt_inds.tolist() == [0] * 7 and result.labels.tolist() == [-1] * 7
    gt = InstanceData(bboxes=torch.tensor([GT_A]), labels=torch.tensor([0]))
    assert PointAssigner().assign(InstanceData(priors=torch.zeros(0, 4)), gt).num_preds == 0
