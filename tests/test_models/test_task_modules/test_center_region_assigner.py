"""CenterRegionAssigner: core positives, shadowed pairs, priorities and ignore regions."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners import CenterRegionAssigner
from mmdet_lite.registry import TASK_UTILS

# Gt A = [0, 0, 100, 100]: core (scale .2) [40, 60]^2, shadow (scale .5) [25, 75]^2.
GT_A = [0., 0., 100., 100.]
# Gt B = [40, 40, 60, 60] (smaller, higher priority): core [48, 52]^2, shadow [45, 55]^2.
GT_B = [40., 40., 60., 60.]
PRIORS = torch.tensor([
    [45., 45., 55., 55.],  # center (50, 50): in the core of A (and of B)
    [28., 28., 38., 38.],  # center (33, 33): in A's shadow only
    [80., 80., 90., 90.],  # center in A, outside core and shadow: negative
    [200., 200., 210., 210.],  # outside everything
])


def _assign(gts, labels, ignore=None, **cfg):
    cfg = {'pos_scale': 0.2, 'neg_scale': 0.5, **cfg}
    assigner = TASK_UTILS.build(dict(type='CenterRegionAssigner', **cfg))
    gt = InstanceData(bboxes=torch.tensor(gts), labels=torch.tensor(labels))
    return assigner.assign(InstanceData(priors=PRIORS), gt, ignore)


def test_core_is_positive_and_shadow_is_recorded():
    result = _assign([GT_A], [3])
    assert result.gt_inds.tolist() == [1, 0, 0, 0]
    assert result.labels.tolist() == [3, -1, -1, -1]
    assert result.max_overlaps is None
    # (prior index, label of the shadowing gt)
    assert result.get_extra_property('shadowed_labels').tolist() == [[1, 3]]


def test_smaller_gt_wins_and_the_loser_shadows():
    result = _assign([GT_A, GT_B], [3, 5])
    assert result.gt_inds.tolist() == [2, 0, 0, 0]
    assert result.labels.tolist() == [5, -1, -1, -1]
    # Shadow pairs first, then the core pair gt A lost.
    assert result.get_extra_property('shadowed_labels').tolist() == [[1, 3], [0, 3]]


def test_same_label_shadow_turns_positive_negative_unless_foreground_dominates():
    result = _assign([GT_A, GT_B], [3, 3])
    assert result.gt_inds.tolist() == [0, 0, 0, 0]
    assert result.labels.tolist() == [-1, -1, -1, -1]
    assert result.get_extra_property('shadowed_labels').tolist() == [[1, 3], [0, 3]]
    dominated = _assign([GT_A, GT_B], [3, 3], foreground_dominate=True)
    assert dominated.gt_inds.tolist() == [2, 0, 0, 0]
    assert dominated.get_extra_property('shadowed_labels').tolist() == [[1, 3]]


def test_priors_centered_in_scaled_ignore_boxes_are_ignored():
    # Ignore box scaled by 0.5 -> [25, 75]^2 contains the centers of priors 0 and 1.
    ignore = InstanceData(bboxes=torch.tensor([GT_A]))
    result = _assign([GT_A], [3], ignore=ignore)
    assert result.gt_inds.tolist() == [-1, -1, 0, 0]
    assert result.labels.tolist() == [-1, -1, -1, -1]


def test_gt_priorities_and_one_hot_assignment():
    assigner = CenterRegionAssigner(0.2, 0.5)
    areas = torch.tensor([[0., 0., 10., 10.], [0., 0., 2., 2.], [0., 0., 5., 5.]])
    assert assigner.get_gt_priorities(areas).tolist() == [0, 2, 1]  # smallest highest
    core = torch.tensor([[True, True], [False, False]])
    shadow = torch.tensor([[False, False], [True, False]])
    inds, shadowed = assigner.assign_one_hot_gt_indices(core, shadow,
                                                        torch.tensor([0, 1]))
    assert inds.tolist() == [2, 0]
    assert shadowed.tolist() == [[1, 1], [0, 1]]


def test_no_gts_or_no_priors():
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = CenterRegionAssigner(0.2, 0.5).assign(InstanceData(priors=PRIORS), empty)
    assert result.num_gts == 0
    assert result.gt_inds.tolist() == [0, 0, 0, 0]
    assert result.labels.tolist() == [-1] * 4
    assert result.get_extra_property('shadowed_labels').shape == (0, 2)
    gt = InstanceData(bboxes=torch.tensor([GT_A]), labels=torch.tensor([1]))
    result = CenterRegionAssigner(0.2, 0.5).assign(InstanceData(priors=torch.zeros(0, 4)), gt)
    assert result.gt_inds.shape == (0, )
