"""DynamicSoftLabelAssigner (RTMDet): soft center prior, soft labels, box objects, masks."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules.assigners import DynamicSoftLabelAssigner
from mmdet_lite.models.task_modules.assigners.dynamic_soft_label_assigner import \
    center_of_mass
from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import HorizontalBoxes


def _gt(boxes, labels):
    return InstanceData(bboxes=boxes, labels=torch.tensor(labels))


def test_cheapest_candidate_by_hand():
    priors = torch.tensor([[10., 10., 8., 8.], [5., 5., 8., 8.], [30., 30., 8., 8.]])
    bboxes = torch.tensor([[0., 0., 20., 20.], [0., 0., 10., 10.], [0., 0., 20., 20.]])
    pred = InstanceData(priors=priors, bboxes=bboxes, scores=torch.zeros(3, 1))
    assigner = TASK_UTILS.build(dict(type='DynamicSoftLabelAssigner'))
    result = assigner.assign(pred, _gt(torch.tensor([[0., 0., 20., 20.]]), [0]))
    # Prior 2 lies outside the gt (not a candidate). IoUs 1 and .25 -> k = 1. Costs:
    # prior 0: log(2) * .5**2 + 0 + 10**-3; prior 1: log(2) * .25**2 - 3 log(.25) + ...
    assert result.gt_inds.tolist() == [1, 0, 0]
    assert result.labels.tolist() == [0, -1, -1]
    torch.testing.assert_close(result.max_overlaps, torch.tensor([1., -1e8, -1e8]))


def test_soft_center_prior_beats_a_better_iou_far_from_the_center():
    # Prior 1 predicts the better box (IoU .7 vs .6) but sits 7.95 strides from the center:
    # its center cost 10 ** (7.95 - 3) dwarfs the IoU cost difference.
    priors = torch.tensor([[50., 50., 8., 8.], [5., 5., 8., 8.]])
    bboxes = torch.tensor([[0., 0., 100., 60.], [0., 0., 100., 70.]])
    pred = InstanceData(priors=priors, bboxes=bboxes, scores=torch.zeros(2, 1))
    gt = _gt(torch.tensor([[0., 0., 100., 100.]]), [0])
    assert DynamicSoftLabelAssigner().assign(pred, gt).gt_inds.tolist() == [1, 0]
    # With a huge radius the center prior is ~0 everywhere and the IoU decides.
    wide = DynamicSoftLabelAssigner(soft_center_radius=100.)
    assert wide.assign(pred, gt).gt_inds.tolist() == [0, 1]


def test_box_objects_count_border_points_inside():
    # The only prior lies on the gt's left border: inside for HorizontalBoxes (as mmdet),
    # outside for a plain tensor.
    priors = torch.tensor([[0., 10., 8., 8.]])
    pred = InstanceData(priors=priors, bboxes=torch.tensor([[0., 0., 20., 20.]]),
                        scores=torch.zeros(1, 1))
    boxes = torch.tensor([[0., 0., 20., 20.]])
    assert DynamicSoftLabelAssigner().assign(pred, _gt(boxes, [0])).gt_inds.tolist() == [0]
    boxed = DynamicSoftLabelAssigner().assign(pred, _gt(HorizontalBoxes(boxes), [0]))
    assert boxed.gt_inds.tolist() == [1]


def test_center_of_mass_by_hand():
    masks = torch.zeros(2, 4, 4)
    masks[0, 1, 2] = masks[0, 3, 2] = 1  # x = 2, y = (1 + 3) / 2
    torch.testing.assert_close(center_of_mass(masks), torch.tensor([[2., 2.], [0., 0.]]))


def test_mask_center_replaces_box_center():
    # Gt box [0, 0, 100, 100] but its mask mass sits at (90, 90): the prior there wins.
    priors = torch.tensor([[50., 50., 8., 8.], [90., 90., 8., 8.]])
    pred = InstanceData(priors=priors, bboxes=torch.tensor([[0., 0., 100., 60.]] * 2),
                        scores=torch.zeros(2, 1))
    masks = torch.zeros(1, 100, 100)
    masks[0, 89:92, 89:92] = 1
    gt = _gt(torch.tensor([[0., 0., 100., 100.]]), [0])
    assert DynamicSoftLabelAssigner().assign(pred, gt).gt_inds.tolist() == [1, 0]
    gt.masks = masks
    assert DynamicSoftLabelAssigner().assign(pred, gt).gt_inds.tolist() == [0, 1]


def test_empty_cases():
    pred = InstanceData(priors=torch.tensor([[10., 10., 8., 8.]]),
                        bboxes=torch.tensor([[0., 0., 20., 20.]]), scores=torch.zeros(1, 1))
    empty = _gt(torch.zeros(0, 4), [])
    result = DynamicSoftLabelAssigner().assign(pred, empty)
    assert result.gt_inds.tolist() == [0] and result.labels.tolist() == [-1]
    assert result.max_overlaps.tolist() == [0.]
