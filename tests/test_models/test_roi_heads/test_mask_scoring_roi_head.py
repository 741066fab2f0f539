"""Mask Scoring R-CNN's MaskIoUHead and MaskScoringRoIHead: layers and defaults as
mmdetection's, the forward against a functional reference, the mask IoU targets and loss on
hand-computed cases, and the rescoring of detections (score = class score * mask IoU)."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (assert_finite_losses, init_weights_quietly, make_det_sample,
                     tiny_two_stage_cfg)
from helpers_state_dict import shapes_of
from helpers_two_stage_extra_keys import maskiou_head
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.losses import MSELoss
from mmdet_lite.models.roi_heads import MaskIoUHead, MaskScoringRoIHead
from mmdet_lite.registry import MODELS
from mmdet_lite.structures.mask import BitmapMasks

FPN = 16
STRIDES = [4, 8, 16, 32, 64]
NUM_CLASSES = 3


def make_iou_head(**kwargs) -> MaskIoUHead:
    args = dict(num_convs=2, num_fcs=2, roi_feat_size=14, in_channels=4,
                conv_out_channels=6, fc_out_channels=10, num_classes=NUM_CLASSES)
    args.update(kwargs)
    head = MaskIoUHead(**args)
    init_weights_quietly(head)
    return head


# ----------------------------------------------------------------------- MaskIoUHead
def test_coco_layers_and_defaults_are_mmdetections():
    head = MaskIoUHead()
    assert len(maskiou_head('h')) == 14
    assert {f'h.{k}': v for k, v in shapes_of(head).items()} == maskiou_head('h')
    assert [c.stride for c in head.convs] == [(1, 1), (1, 1), (1, 1), (2, 2)]
    assert isinstance(head.loss_iou, MSELoss) and head.loss_iou.loss_weight == 0.5
    assert head.loss_iou.reduction == 'mean'
    assert head.init_cfg == [dict(type='Kaiming', override=dict(name='convs')),
                             dict(type='Caffe2Xavier', override=dict(name='fcs')),
                             dict(type='Normal', std=0.01, override=dict(name='fc_mask_iou'))]


def test_forward_matches_a_functional_reference():
    head = make_iou_head().eval()
    feats, logits = torch.randn(5, 4, 14, 14), torch.randn(5, 28, 28)
    p = head.state_dict()
    x = torch.cat([feats, F.max_pool2d(torch.sigmoid(logits)[:, None], 2)], 1)
    x = F.relu(F.conv2d(x, p['convs.0.weight'], p['convs.0.bias'], padding=1))
    x = F.relu(F.conv2d(x, p['convs.1.weight'], p['convs.1.bias'], stride=2, padding=1))
    x = x.flatten(1)  # [5, 6 * 7 * 7]
    x = F.relu(F.linear(x, p['fcs.0.weight'], p['fcs.0.bias']))
    x = F.relu(F.linear(x, p['fcs.1.weight'], p['fcs.1.bias']))
    expected = F.linear(x, p['fc_mask_iou.weight'], p['fc_mask_iou.bias'])
    with torch.no_grad():
        out = head(feats, logits)
    assert out.shape == (5, NUM_CLASSES)
    torch.testing.assert_close(out, expected)


def gt_masks() -> BitmapMasks:
    """Object 0: a 4x4 square; object 1: x in [4, 20), y in [4, 12) (area 128)."""
    masks = np.zeros((2, 32, 32), dtype=np.uint8)
    masks[0, 20:24, 20:24] = 1
    masks[1, 4:12, 4:20] = 1
    return BitmapMasks(masks, 32, 32)


def test_area_ratio_crops_truncated_proposal_corners():
    # (4.9, 4.2, 12.7, 8.9) truncates to (4, 4, 12, 8): 8 x 4 = 32 of object 1's 128 pixels.
    # (Rounding would give (5, 4, 13, 9): 40 pixels.) (18, 18, 22, 22) holds 4 of object
    # 0's 16.
    ratios = MaskIoUHead._get_area_ratio(
        torch.tensor([[4.9, 4.2, 12.7, 8.9], [18., 18., 22., 22.]]), torch.tensor([1, 0]),
        gt_masks())
    torch.testing.assert_close(ratios, torch.tensor([0.25, 0.25]))
    assert MaskIoUHead._get_area_ratio(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long),
                                       gt_masks()).shape == (0, )


def iou_case():
    """One positive, (4, 4, 12, 12) on object 1: half of the object (ratio 0.5).

    On a 4x4 grid the GT target is all ones (16 cells), so the whole object is 32 cells.
    The predicted logits are 2.0 on the left half and 0.3 (probability 0.57) on the right:
    mmdetection thresholds the logits with mask_thr_binary = 0.5, so only the left 8 cells
    count. IoU = 8 / (8 + 32 - 8) = 0.25.
    A second positive, on object 0, predicts nothing above the threshold: IoU 0.
    """
    res = SimpleNamespace(pos_priors=torch.tensor([[4., 4., 12., 12.], [18., 18., 22., 22.]]),
                          pos_assigned_gt_inds=torch.tensor([1, 0]))
    logits = torch.full((2, 4, 4), 0.3)
    logits[0, :, :2] = 2.0
    logits[1] = -1.0
    targets = torch.ones(2, 4, 4)
    return [res], [InstanceData(masks=gt_masks())], logits, targets


def test_targets_of_a_hand_computed_case():
    head = make_iou_head()
    results, gts, logits, targets = iou_case()
    iou = head.get_targets(results, gts, logits, targets, ConfigDict(mask_thr_binary=0.5))
    torch.testing.assert_close(iou, torch.tensor([0.25, 0.0]), atol=1e-6, rtol=0)


def test_loss_uses_only_positive_targets():
    head = make_iou_head()
    results, gts, logits, targets = iou_case()
    pred = torch.tensor([0.65, 0.9], requires_grad=True)
    loss = head.loss_and_target(pred, logits, targets, results, gts,
                                ConfigDict(mask_thr_binary=0.5))
    assert set(loss) == {'loss_mask_iou'}
    # 0.5 * mean over the one target above 0: 0.5 * (0.65 - 0.25)^2 = 0.08.
    torch.testing.assert_close(loss['loss_mask_iou'], torch.tensor(0.08))
    loss['loss_mask_iou'].backward()
    assert pred.grad[1] == 0

    # No target above 0: a zero loss that still reaches the predictions.
    pred = torch.tensor([0.3, 0.2], requires_grad=True)
    loss = head.loss_and_target(pred, torch.full_like(logits, -1.0), targets, results, gts,
                                ConfigDict(mask_thr_binary=0.5))['loss_mask_iou']
    assert loss.item() == 0 and loss.requires_grad


def test_iou_head_fits_fixed_targets():
    """Fixed features, masks and GT: the targets stay put and the IoU loss falls."""
    head = make_iou_head()
    generator = torch.Generator().manual_seed(3)
    num = 6
    boxes = torch.tensor([[4., 4., 12., 12.]]).repeat(num, 1)
    res = SimpleNamespace(pos_priors=boxes, pos_assigned_gt_inds=torch.ones(num, dtype=torch.long))
    gts = [InstanceData(masks=gt_masks())]
    # Predicted masks covering 1 .. 6 of the 8 columns of a 4x8 grid: IoUs from 1/16 to 6/16.
    logits = torch.full((num, 4, 8), -2.0)
    for i in range(num):
        logits[i, :, :i + 1] = 2.0
    targets = torch.ones(num, 4, 8)
    feats = torch.randn(num, 4, 14, 14, generator=generator)
    net_logits = F.interpolate(logits[:, None], size=(28, 28))[:, 0]  # what the head sees
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = ConfigDict(mask_thr_binary=0.5)
    rows = torch.arange(num)

    def loss():
        pred = head(feats, net_logits)[rows, labels]
        return head.loss_and_target(pred, logits, targets, [res], gts, cfg)['loss_mask_iou']

    before = loss().item()
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    for _ in range(40):
        value = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    assert loss().item() < 0.2 * before


def test_predict_by_feat_multiplies_scores_by_the_labels_iou():
    head = make_iou_head()
    results = [InstanceData(scores=torch.tensor([0.9, 0.5]), labels=torch.tensor([2, 0])),
               InstanceData(scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long))]
    ious = (torch.tensor([[0.1, 0.2, 0.8], [0.6, 0.3, 0.4]]), torch.zeros(0, NUM_CLASSES))
    out = head.predict_by_feat(ious, results)
    torch.testing.assert_close(out[0].scores, torch.tensor([0.9 * 0.8, 0.5 * 0.6]))
    assert len(out[1]) == 0
    with pytest.raises(AssertionError):
        head.predict_by_feat(ious[:1], results)


# --------------------------------------------------------------- MaskScoringRoIHead
def make_roi_head():
    cfg = tiny_two_stage_cfg(with_mask=True, num_classes=NUM_CLASSES)
    head_cfg = copy.deepcopy(cfg['roi_head'])
    head_cfg.update(type='MaskScoringRoIHead',
                    mask_iou_head=dict(type='MaskIoUHead', num_convs=2, num_fcs=1,
                                       roi_feat_size=14, in_channels=FPN,
                                       conv_out_channels=FPN, fc_out_channels=32,
                                       num_classes=NUM_CLASSES),
                    train_cfg=ConfigDict(cfg['train_cfg']['rcnn'], mask_thr_binary=0.5),
                    test_cfg=ConfigDict(cfg['test_cfg']['rcnn']))
    head = MODELS.build(head_cfg)
    init_weights_quietly(head)
    return head


def make_feats():
    return tuple(torch.rand(1, FPN, max(64 // s, 1), max(64 // s, 1)) for s in STRIDES)


def proposals(bboxes):
    return InstanceData(bboxes=torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4))


PROPOSALS = [[10, 10, 40, 40], [0, 0, 20, 20], [30, 22, 58, 50], [40, 0, 63, 20]]


def test_mask_iou_head_is_required():
    cfg = tiny_two_stage_cfg(with_mask=True)['roi_head']
    with pytest.raises(AssertionError):
        MaskScoringRoIHead(mask_iou_head=None, **{k: v for k, v in cfg.items() if k != 'type'})


def test_loss_adds_mask_iou_of_the_gt_class(monkeypatch):
    head = make_roi_head()
    sample = make_det_sample([[8, 8, 40, 40], [30, 20, 60, 50]], [0, 2], with_mask=True)
    seen = {}
    original = head.mask_iou_head.loss_and_target

    def capture(mask_iou_pred, mask_preds, mask_targets, *args):
        seen.update(mask_iou_pred=mask_iou_pred, mask_preds=mask_preds,
                    mask_targets=mask_targets)
        return original(mask_iou_pred, mask_preds, mask_targets, *args)

    monkeypatch.setattr(head.mask_iou_head, 'loss_and_target', capture)
    mask_loss = head.mask_loss
    results = {}

    def keep(*args):
        results.update(mask_loss(*args))
        return results

    monkeypatch.setattr(head, 'mask_loss', keep)
    torch.manual_seed(0)
    losses = head.loss(make_feats(), [proposals(PROPOSALS)], [sample])
    assert set(losses) == {'loss_cls', 'acc', 'loss_bbox', 'loss_mask', 'loss_mask_iou'}
    assert_finite_losses(losses)
    num_pos = results['mask_preds'].size(0)
    assert num_pos > 0
    # The IoU head gets each positive's GT-class logits and scores that class's IoU.
    assert seen['mask_preds'].shape == (num_pos, 28, 28)
    assert seen['mask_iou_pred'].shape == (num_pos, )
    assert seen['mask_targets'] is results['mask_targets']
    channels = [int(torch.nonzero((results['mask_preds'][i] == seen['mask_preds'][i])
                                  .flatten(1).all(1)).flatten()[0]) for i in range(num_pos)]
    assert set(channels) == {0, 2}  # the GT labels of the two objects


def test_loss_of_an_image_without_objects_is_zero_for_masks():
    head = make_roi_head()
    sample = make_det_sample([], with_mask=True)
    losses = head.loss(make_feats(), [proposals(PROPOSALS)], [sample])
    assert losses['loss_mask'].item() == 0 and losses['loss_mask_iou'].item() == 0
    assert losses['loss_mask_iou'].requires_grad


def test_predict_rescores_with_the_predicted_mask_iou(monkeypatch):
    head = make_roi_head().eval()
    head.test_cfg.update(score_thr=0.0, max_per_img=6)
    sample = make_det_sample(img_shape=(64, 64))
    feats = make_feats()
    with torch.no_grad():
        boxes_only = head.predict_bbox(feats, [sample.metainfo], [proposals(PROPOSALS)],
                                       head.test_cfg)[0]
    per_class_iou = torch.tensor([0.5, 0.25, 2.0])
    monkeypatch.setattr(head.mask_iou_head, 'forward',
                        lambda feats, preds: per_class_iou.expand(len(preds), -1))
    with torch.no_grad():
        result = head.predict(feats, [proposals(PROPOSALS)], [sample])[0]
    assert len(result) == 6 and result.masks.shape == (6, 64, 64)
    torch.testing.assert_close(result.labels, boxes_only.labels)
    torch.testing.assert_close(result.scores,
                               boxes_only.scores * per_class_iou[boxes_only.labels])


def test_predict_without_detections_is_empty():
    head = make_roi_head().eval()
    head.test_cfg.update(score_thr=1.1)
    sample = make_det_sample(img_shape=(64, 64))
    with torch.no_grad():
        result = head.predict(make_feats(), [proposals(PROPOSALS)], [sample])[0]
    assert len(result) == 0 and result.masks.shape == (0, 64, 64)


def test_tensor_forward_adds_mask_ious_of_the_first_100_rois():
    head = make_roi_head().eval()
    boxes = torch.rand(120, 2) * 30
    many = proposals(torch.cat([boxes, boxes + 20], 1))
    with torch.no_grad():
        outs = head.forward(make_feats(), [many])
    assert len(outs) == 4
    cls_score, bbox_pred, mask_preds, mask_ious = outs
    assert cls_score.shape == (120, NUM_CLASSES + 1) and bbox_pred.shape == (120, 12)
    assert mask_preds.shape == (100, NUM_CLASSES, 28, 28)
    assert mask_ious.shape == (100, NUM_CLASSES)
