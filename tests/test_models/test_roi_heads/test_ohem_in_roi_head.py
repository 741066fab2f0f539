"""OHEMSampler inside a real StandardRoIHead (its unit tests use a stub head)."""
import torch
from mmengine.structures import InstanceData

from mmdet_lite.structures.bbox import bbox2roi
from helpers import assert_finite_losses, build_detector, make_det_sample, tiny_two_stage_cfg


def _ohem_detector(num: int = 16):
    cfg = tiny_two_stage_cfg()
    cfg['train_cfg']['rcnn']['sampler'] = dict(
        type='OHEMSampler', num=num, pos_fraction=0.25, neg_pos_ub=-1,
        add_gt_as_proposals=True)
    return build_detector(cfg)


def test_ohem_trains_faster_rcnn_through_the_bbox_head_loss():
    torch.manual_seed(0)
    model = _ohem_detector()
    sample = make_det_sample([[8, 8, 40, 44]], [1])
    losses = model.loss(torch.rand(1, 3, 64, 64), [sample])
    assert_finite_losses(losses)
    total, _ = model.parse_losses(losses)  # RPN losses are per-level lists
    total.backward()
    assert model.roi_head.bbox_head.fc_cls.weight.grad.abs().sum() > 0


def test_ohem_keeps_the_hardest_negatives():
    torch.manual_seed(0)
    model = _ohem_detector(num=8)
    roi_head = model.roi_head
    sampler = roi_head.bbox_sampler
    feats = model.extract_feat(torch.rand(1, 3, 64, 64))
    sample = make_det_sample([[8, 8, 40, 44]], [1])
    proposals = torch.tensor([[0., 0., 10., 10.], [50., 50., 60., 60.], [20., 0., 30., 12.],
                              [40., 40., 63., 63.], [0., 40., 20., 63.], [30., 30., 50., 50.],
                              [5., 50., 15., 60.], [45., 0., 60., 15.], [25., 45., 35., 55.],
                              [0., 20., 6., 30.]])
    rpn_results = InstanceData(priors=proposals, bboxes=proposals)
    assign = roi_head.bbox_assigner.assign(rpn_results, sample.gt_instances)
    result = sampler.sample(assign, rpn_results, sample.gt_instances, feats=[f[:1] for f in feats])
    # Every proposal is a negative (IoU < 0.5 with the one box): the kept ones must be those
    # with the largest classification loss against the background label.
    with torch.no_grad():
        cls_score = roi_head._bbox_forward(feats, bbox2roi([proposals]))['cls_score']
        bg = torch.full((len(proposals), ), roi_head.bbox_head.num_classes)
        loss = torch.nn.functional.cross_entropy(cls_score, bg, reduction='none')
    num_neg = len(result.neg_inds)
    assert num_neg > 0
    hardest = set(loss.topk(num_neg).indices.tolist())
    # add_gt_as_proposals puts the gt box first, so proposal i is prior i + 1
    assert set((result.neg_inds - 1).tolist()) == hardest
