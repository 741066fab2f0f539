"""mmdetection 3.3's assigner catalogue: registered names, constructor defaults, assign()
signatures, AssignResult strings, HungarianAssigner / MaxIoUAssigner inputs mmdetection
accepts, BboxOverlaps2D_GLIP."""
import inspect

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.task_modules import assigners
from mmdet_lite.models.task_modules.assigners import (AssignResult, BaseAssigner,
                                                      HungarianAssigner, MaxIoUAssigner)
from mmdet_lite.models.task_modules.assigners.max_iou_assigner import perm_repeat_bboxes
from mmdet_lite.registry import TASK_UTILS

IOU = dict(type='BboxOverlaps2D')
REQUIRED = inspect.Parameter.empty
# Constructor defaults of mmdetection 3.3 (REQUIRED marks arguments without default).
DEFAULTS = {
    'ATSSAssigner': dict(topk=REQUIRED, alpha=None, iou_calculator=IOU, ignore_iof_thr=-1),
    'CenterRegionAssigner': dict(pos_scale=REQUIRED, neg_scale=REQUIRED, min_pos_iof=1e-2,
                                 ignore_gt_scale=0.5, foreground_dominate=False,
                                 iou_calculator=IOU),
    'GridAssigner': dict(pos_iou_thr=REQUIRED, neg_iou_thr=REQUIRED, min_pos_iou=0.,
                         gt_max_assign_all=True, iou_calculator=IOU),
    'PointAssigner': dict(scale=4, pos_num=3),
    'RegionAssigner': dict(center_ratio=0.2, ignore_ratio=0.5),
    'SimOTAAssigner': dict(center_radius=2.5, candidate_topk=10, iou_weight=3.0,
                           cls_weight=1.0, iou_calculator=IOU),
    'DynamicSoftLabelAssigner': dict(soft_center_radius=3.0, topk=13, iou_weight=3.0,
                                     iou_calculator=IOU),
    'TaskAlignedAssigner': dict(topk=REQUIRED, iou_calculator=IOU),
    'UniformAssigner': dict(pos_ignore_thr=REQUIRED, neg_ignore_thr=REQUIRED, match_times=4,
                            iou_calculator=IOU),
    'ApproxMaxIoUAssigner': dict(pos_iou_thr=REQUIRED, neg_iou_thr=REQUIRED, min_pos_iou=0.,
                                 gt_max_assign_all=True, ignore_iof_thr=-1,
                                 ignore_wrt_candidates=True, match_low_quality=True,
                                 gpu_assign_thr=-1, iou_calculator=IOU),
    'MaxIoUAssigner': dict(pos_iou_thr=REQUIRED, neg_iou_thr=REQUIRED, min_pos_iou=0.,
                           gt_max_assign_all=True, ignore_iof_thr=-1,
                           ignore_wrt_candidates=True, match_low_quality=True,
                           gpu_assign_thr=-1, iou_calculator=IOU, perm_repeat_gt_cfg=None),
    'HungarianAssigner': dict(match_costs=REQUIRED),
    'TopkHungarianAssigner': dict(args=REQUIRED, cls_cost=dict(type='FocalLossCost',
                                                               weight=2.0),
                                  reg_cost=dict(type='BBoxL1Cost', weight=5.0),
                                  iou_cost=dict(type='IoUCost', iou_mode='giou', weight=2.0),
                                  kwargs=REQUIRED),
    'FocalLossCost': dict(alpha=0.25, gamma=2, eps=1e-12, binary_input=False, weight=1.),
    'BinaryFocalLossCost': dict(alpha=0.25, gamma=2, eps=1e-12, binary_input=False,
                                weight=1.),
    'DiceCost': dict(pred_act=False, eps=1e-3, naive_dice=True, weight=1.),
    'CrossEntropyLossCost': dict(use_sigmoid=True, weight=1.),
    'IoUCost': dict(iou_mode='giou', weight=1.),
    'BBoxL1Cost': dict(box_format='xyxy', weight=1.),
    'ClassificationCost': dict(weight=1),
    'BboxOverlaps2D': dict(scale=1., dtype=None),
    'BboxOverlaps2D_GLIP': dict(scale=1., dtype=None),
}
ASSIGN_ARGS = {
    'ATSSAssigner': ['pred_instances', 'num_level_priors', 'gt_instances',
                     'gt_instances_ignore'],
    'RegionAssigner': ['pred_instances', 'gt_instances', 'img_meta', 'featmap_sizes',
                       'num_level_anchors', 'anchor_scale', 'anchor_strides',
                       'gt_instances_ignore', 'allowed_border'],
    'TaskAlignedAssigner': ['pred_instances', 'gt_instances', 'gt_instances_ignore', 'alpha',
                            'beta'],
    'TopkHungarianAssigner': ['pred_scores', 'decode_bboxes', 'gt_bboxes', 'gt_labels',
                              'img_meta', 'alpha', 'beta', 'kwargs'],
    'HungarianAssigner': ['pred_instances', 'gt_instances', 'img_meta', 'kwargs'],
    'UniformAssigner': ['pred_instances', 'gt_instances', 'gt_instances_ignore'],
}


@pytest.mark.parametrize('name', sorted(DEFAULTS))
def test_registered_with_mmdetection_defaults(name):
    cls = TASK_UTILS.get(name)
    assert cls is getattr(assigners, name)
    params = inspect.signature(cls.__init__).parameters
    got = {k: p.default for k, p in params.items() if k != 'self'}
    assert got == DEFAULTS[name]


@pytest.mark.parametrize('name', sorted(ASSIGN_ARGS))
def test_assign_signatures(name):
    params = inspect.signature(getattr(assigners, name).assign).parameters
    assert [k for k in params if k != 'self'] == ASSIGN_ARGS[name]


def test_every_assigner_is_a_base_assigner():
    for name in DEFAULTS:
        if name.endswith('Assigner'):
            assert issubclass(getattr(assigners, name), BaseAssigner), name
    with pytest.raises(TypeError):
        BaseAssigner()


def test_assign_result_str_and_repr_follow_mmdetection():
    result = AssignResult(9, torch.tensor([-1, 1, 2, 0]), torch.tensor([0., .5, .9, 0.]),
                          torch.tensor([0, 3, 4, 0]))
    expected = ('<AssignResult(num_gts=9, gt_inds.shape=(4,), max_overlaps.shape=(4,), '
                'labels.shape=(4,))>')
    assert str(result) == expected
    assert repr(result) == expected[:-2] + f') at {hex(id(result))}>'
    result.max_overlaps = None
    assert 'max_overlaps=None' in str(result)
    result.set_extra_property('extra', 1)
    with pytest.raises(AssertionError, match='extra'):
        result.set_extra_property('extra', 2)
    with pytest.raises(KeyError):
        result.set_extra_property('labels', 2)


def _instances(num_preds, num_gts):
    pred = InstanceData(scores=torch.zeros(num_preds, 3),
                        bboxes=torch.tensor([[10. * i, 0., 10. * i + 8, 8.]
                                             for i in range(num_preds)]))
    gt = InstanceData(bboxes=torch.tensor([[10. * i, 0., 10. * i + 8, 8.]
                                           for i in range(num_gts)]),
                      labels=torch.arange(num_gts))
    return pred, gt


def test_hungarian_accepts_more_gts_than_predictions():
    # Each prediction is matched to its identical gt; the third gt stays unmatched.
    pred, gt = _instances(2, 3)
    result = HungarianAssigner([dict(type='IoUCost', iou_mode='iou')]).assign(pred, gt)
    assert result.num_gts == 3
    assert result.gt_inds.tolist() == [1, 2]
    assert result.labels.tolist() == [0, 1]


def test_hungarian_match_costs_forms():
    pred, gt = _instances(3, 2)
    as_tuple = HungarianAssigner((dict(type='IoUCost', iou_mode='iou'),
                                  dict(type='ClassificationCost')))
    assert len(as_tuple.match_costs) == 2
    assert as_tuple.assign(pred, gt).gt_inds.tolist() == [1, 2, 0]
    with pytest.raises(AssertionError, match='match_costs'):
        HungarianAssigner(match_costs=[])
    empty_pred, _ = _instances(0, 2)
    result = as_tuple.assign(empty_pred, gt)
    assert result.num_preds == 0 and result.max_overlaps is None


def test_max_iou_neg_iou_thr_forms():
    gt = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.]]), labels=torch.tensor([0]))
    priors = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 2.], [50., 50., 60., 60.]])
    pred = InstanceData(priors=priors)  # IoUs 1, .2, 0
    as_list = MaxIoUAssigner(0.5, [0.1, 0.3]).assign(pred, gt)
    assert as_list.gt_inds.tolist() == [1, 0, -1]
    as_int = MaxIoUAssigner(0.5, 1).assign(pred, gt)  # int threshold: IoU < 1
    assert as_int.gt_inds.tolist() == [1, 0, 0]
    with pytest.raises(AssertionError, match='neg_iou_thr'):
        MaxIoUAssigner(0.5, (0.1, 0.2, 0.3))
    # gpu_assign_thr below the gt count moves the work to the CPU; same result.
    assert MaxIoUAssigner(0.5, 0.3, gpu_assign_thr=0.5).assign(pred, gt).gt_inds.tolist() == \
        MaxIoUAssigner(0.5, 0.3).assign(pred, gt).gt_inds.tolist()


def test_perm_repeat_bboxes_separates_duplicates_only():
    torch.manual_seed(0)
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.], [20., 20., 40., 40.]])
    jittered = perm_repeat_bboxes(boxes, None, dict(iou_thr=0.9, perm_range=0.01))
    assert torch.equal(jittered[2], boxes[2])
    assert not torch.equal(jittered[0], jittered[1])
    assert ((jittered[:2] - boxes[:2]).abs() <= 0.1 + 1e-6).all()  # within 1 % of 10
    assert torch.equal(boxes[0], torch.tensor([0., 0., 10., 10.]))  # input untouched
    # Used by MaxIoUAssigner(perm_repeat_gt_cfg=...): the duplicated gts no longer tie.
    assigner = MaxIoUAssigner(0.5, 0.3, perm_repeat_gt_cfg=dict(iou_thr=0.9, perm_range=0.01))
    gt = InstanceData(bboxes=boxes[:2].clone(), labels=torch.tensor([0, 1]))
    result = assigner.assign(InstanceData(priors=torch.tensor([[0., 0., 10., 10.]])), gt)
    assert result.gt_inds.item() in (1, 2) and result.max_overlaps.item() >= 0.9


def test_glip_overlaps_count_end_pixels():
    calc = TASK_UTILS.build(dict(type='BboxOverlaps2D_GLIP'))
    a = torch.tensor([[0., 0., 9., 9.]])  # 10 x 10 pixels
    b = torch.tensor([[5., 0., 14., 9.]])  # overlap 5 x 10
    torch.testing.assert_close(calc(a, b), torch.tensor([[50. / 150.]]))
