"""DINOHead: denoising targets and losses by hand, output split, loss names."""
import pytest
import torch
import torch.nn.functional as F
from helpers import make_det_sample
from mmengine.structures import InstanceData
from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

from mmdet_lite.models.dense_heads import DeformableDETRHead, DINOHead
from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import HorizontalBoxes

FOCAL = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0)
FOCAL_COST_CFG = dict(assigner=dict(type='HungarianAssigner', match_costs=[
    dict(type='FocalLossCost', weight=2.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0)]))


def build_head(**kwargs):
    cfg = dict(type='DINOHead', num_classes=2, embed_dims=8, sync_cls_avg_factor=True,
               loss_cls=FOCAL, share_pred_layer=False, num_pred_layer=3, as_two_stage=True,
               train_cfg=FOCAL_COST_CFG)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def gt(bboxes, labels):
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


def xyxy(cxcywh):
    cx, cy, w, h = cxcywh.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def reference_dn_losses(cls_scores, bbox_preds, target_labels, target_boxes, img_wh,
                        num_classes=2):
    """Independent DINO denoising losses of one image (focal, L1 x5, GIoU x2).

    ``target_labels`` [D] with ``num_classes`` for background; ``target_boxes`` [D, 4]
    normalized cxcywh, rows of background queries ignored.
    """
    pos = target_labels < num_classes
    num_pos = max(int(pos.sum()), 1)
    onehot = F.one_hot(target_labels, num_classes + 1)[:, :num_classes].float()
    loss_cls = sigmoid_focal_loss(cls_scores, onehot, alpha=0.25, gamma=2.0,
                                  reduction='sum') / num_pos
    loss_bbox = 5.0 * (bbox_preds[pos] - target_boxes[pos]).abs().sum() / num_pos
    scale = torch.tensor([*img_wh, *img_wh], dtype=torch.float32)
    giou = generalized_box_iou(xyxy(bbox_preds[pos]) * scale, xyxy(target_boxes[pos]) * scale)
    loss_iou = 2.0 * (1 - giou.diagonal()).sum() / num_pos
    return loss_cls, loss_bbox, loss_iou


def test_is_a_deformable_detr_head_with_its_keys():
    head = build_head(num_classes=80, embed_dims=256, num_pred_layer=7)
    assert isinstance(head, DeformableDETRHead)
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    expected = {}
    for i in range(7):
        expected.update({f'cls_branches.{i}.weight': (80, 256), f'cls_branches.{i}.bias': (80, ),
                         f'reg_branches.{i}.0.weight': (256, 256),
                         f'reg_branches.{i}.0.bias': (256, ),
                         f'reg_branches.{i}.2.weight': (256, 256),
                         f'reg_branches.{i}.2.bias': (256, ),
                         f'reg_branches.{i}.4.weight': (4, 256),
                         f'reg_branches.{i}.4.bias': (4, )})
    assert shapes == expected


def test_split_outputs():
    cls_scores = torch.randn(3, 2, 7, 2)
    bbox_preds = torch.rand(3, 2, 7, 4)
    match_cls, match_box, dn_cls, dn_box = DINOHead.split_outputs(
        cls_scores, bbox_preds, dict(num_denoising_queries=4, num_denoising_groups=2))
    assert torch.equal(dn_cls, cls_scores[:, :, :4]) and torch.equal(dn_box, bbox_preds[:, :, :4])
    assert torch.equal(match_cls, cls_scores[:, :, 4:])
    assert torch.equal(match_box, bbox_preds[:, :, 4:])
    match_cls, match_box, dn_cls, dn_box = DINOHead.split_outputs(cls_scores, bbox_preds, None)
    assert match_cls is cls_scores and match_box is bbox_preds
    assert dn_cls is None and dn_box is None


def test_dn_targets_by_hand():
    head = build_head()
    # Image 0 has 2 ground truths, image 1 has 1; M = 2, K = 2 groups -> D = 8:
    # group k is slots 4k..4k+3: positives 4k + i, negatives 4k + 2 + i.
    gts = [gt([[10, 5, 50, 25], [60, 10, 90, 40]], [1, 0]), gt([[0, 0, 20, 20]], [1])]
    gts[0].bboxes = HorizontalBoxes(gts[0].bboxes)
    metas = [dict(img_shape=(50, 100)), dict(img_shape=(40, 40))]
    dn_meta = dict(num_denoising_queries=8, num_denoising_groups=2)
    (labels, label_weights, bbox_targets, bbox_weights, num_pos,
     num_neg) = head.get_dn_targets(gts, metas, dn_meta)
    assert labels[0].tolist() == [1, 0, 2, 2, 1, 0, 2, 2]
    assert labels[1].tolist() == [1, 2, 2, 2, 1, 2, 2, 2]  # slots 1, 3, 5, 7: padding
    assert (num_pos, num_neg) == (6, 6)  # padding slots are neither
    assert all(torch.equal(w, torch.ones(8)) for w in label_weights)
    box_a = [30 / 100, 15 / 50, 40 / 100, 20 / 50]
    box_b = [75 / 100, 25 / 50, 30 / 100, 30 / 50]
    expected = torch.zeros(8, 4)
    expected[[0, 4]] = torch.tensor(box_a)
    expected[[1, 5]] = torch.tensor(box_b)
    torch.testing.assert_close(bbox_targets[0], expected)
    assert bbox_weights[0][:, 0].tolist() == [1, 1, 0, 0, 1, 1, 0, 0]
    assert bbox_weights[1][:, 0].tolist() == [1, 0, 0, 0, 1, 0, 0, 0]
    torch.testing.assert_close(bbox_targets[1][[0, 4]], torch.tensor([[.25, .25, .5, .5]] * 2))

    _, _, _, _, pos_inds, neg_inds = head._get_dn_targets_single(gts[0], metas[0], dn_meta)
    assert pos_inds.tolist() == [0, 1, 4, 5] and neg_inds.tolist() == [2, 3, 6, 7]


def test_loss_dn_single_focal_by_hand():
    torch.manual_seed(0)
    head = build_head()
    gts = [gt([[10, 5, 50, 25], [60, 10, 90, 40]], [1, 0])]
    metas = [dict(img_shape=(50, 100))]
    dn_meta = dict(num_denoising_queries=8, num_denoising_groups=2)
    cls_scores = torch.randn(1, 8, 2)
    bbox_preds = torch.rand(1, 8, 4) * 0.5 + 0.25
    loss_cls, loss_bbox, loss_iou = head._loss_dn_single(cls_scores, bbox_preds, gts, metas,
                                                         dn_meta)
    target_labels = torch.tensor([1, 0, 2, 2, 1, 0, 2, 2])
    box_a, box_b = [.3, .3, .4, .4], [.75, .5, .3, .6]
    target_boxes = torch.tensor([box_a, box_b, [0] * 4, [0] * 4] * 2)
    expected = reference_dn_losses(cls_scores[0], bbox_preds[0], target_labels, target_boxes,
                                   (100, 50))
    for actual, ref in zip((loss_cls, loss_bbox, loss_iou), expected):
        torch.testing.assert_close(actual, ref, rtol=1e-5, atol=1e-6)


def test_loss_dn_softmax_counts_negatives_at_bg_weight():
    # Softmax CE: the normalizer is num_pos + 0.1 * num_neg; padding slots (image 1) are
    # background queries with weight 1 in the sum but not counted in the normalizer.
    head = build_head(loss_cls=dict(type='CrossEntropyLoss', bg_cls_weight=0.1,
                                    use_sigmoid=False, loss_weight=1.0, class_weight=1.0),
                      sync_cls_avg_factor=False, train_cfg=None)
    gts = [gt([[10, 5, 50, 25], [60, 10, 90, 40]], [1, 0]), gt([[0, 0, 20, 20]], [1])]
    metas = [dict(img_shape=(50, 100)), dict(img_shape=(40, 40))]
    dn_meta = dict(num_denoising_queries=4, num_denoising_groups=1)
    torch.manual_seed(1)
    cls_scores = torch.randn(2, 4, 3)
    loss_cls, _, _ = head._loss_dn_single(cls_scores, torch.rand(2, 4, 4), gts, metas, dn_meta)
    labels = torch.tensor([1, 0, 2, 2, 1, 2, 2, 2])
    per_query = F.cross_entropy(cls_scores.view(-1, 3), labels,
                                weight=torch.tensor([1., 1., .1]), reduction='none')
    torch.testing.assert_close(loss_cls, per_query.sum() / (3 + 0.1 * 3))


def test_loss_with_fixed_weights_and_denoising_queries():
    """The full head.loss: fixed branch weights make the predictions known by hand."""
    head = build_head(num_pred_layer=3)  # 2 decoder layers + the encoder branch
    with torch.no_grad():
        for layer, (fc_cls, reg) in enumerate(zip(head.cls_branches, head.reg_branches)):
            fc_cls.weight.zero_()
            fc_cls.weight[0, 0], fc_cls.weight[1, 1] = 1.0, -1.0 - layer
            fc_cls.bias.fill_(0.5)
            for module in reg:
                if isinstance(module, torch.nn.Linear):
                    module.weight.zero_()
                    module.bias.zero_()  # boxes = the references
    dn_meta = dict(num_denoising_queries=4, num_denoising_groups=2)  # M = 1
    num_matching = 3
    torch.manual_seed(2)
    hidden_states = torch.randn(2, 1, 4 + num_matching, 8)  # [L, B, D + Q, C]
    references = [torch.rand(1, 4 + num_matching, 4) * 0.4 + 0.3 for _ in range(3)]
    sample = make_det_sample([[20, 10, 60, 30]], [1], img_shape=(50, 100))
    enc_class = torch.randn(1, num_matching, 2)
    enc_coord = torch.rand(1, num_matching, 4) * 0.4 + 0.3
    losses = head.loss(hidden_states, references, enc_class, enc_coord, [sample], dn_meta)

    names = ('loss_cls', 'loss_bbox', 'loss_iou')
    assert list(losses) == (list(names) + [f'd0.{n}' for n in names] +
                            [f'enc_{n}' for n in names] + [f'dn_{n}' for n in names] +
                            [f'd0.dn_{n}' for n in names])
    target_labels = torch.tensor([1, 2, 1, 2])  # group k: positive 2k, negative 2k + 1
    target_boxes = torch.tensor([[.4, .4, .4, .4], [0] * 4] * 2)
    for layer, prefix in ((1, 'dn_'), (0, 'd0.dn_')):
        hidden = hidden_states[layer, 0, :4]
        cls_scores = torch.stack([hidden[:, 0], -(1.0 + layer) * hidden[:, 1]], -1) + 0.5
        bbox_preds = references[layer][0, :4]
        expected = reference_dn_losses(cls_scores, bbox_preds, target_labels, target_boxes,
                                       (100, 50))
        for name, ref in zip(names, expected):
            torch.testing.assert_close(losses[prefix + name], ref, rtol=1e-4, atol=1e-5)
    # The matching part is DETR's loss on the last Q queries only.
    all_cls, all_box = head(hidden_states, references)
    detr_losses = head.loss_by_feat_single(all_cls[-1, :, 4:], all_box[-1, :, 4:],
                                           [sample.gt_instances], [sample.metainfo])
    for name, ref in zip(names, detr_losses):
        torch.testing.assert_close(losses[name], ref)
    # Encoder losses use the real classes (Deformable DETR relabels everything 0).
    enc_ref = head.loss_by_feat_single(enc_class, enc_coord, [sample.gt_instances],
                                       [sample.metainfo])
    for name, ref in zip(names, enc_ref):
        torch.testing.assert_close(losses[f'enc_{name}'], ref)


def test_loss_dn_gives_every_layer_and_gradients():
    head = build_head()
    gts = [gt([[10, 5, 50, 25]], [1])]
    metas = [dict(img_shape=(50, 100))]
    dn_meta = dict(num_denoising_queries=2, num_denoising_groups=1)
    cls_scores = torch.randn(3, 1, 2, 2, requires_grad=True)
    bbox_preds = torch.rand(3, 1, 2, 4).requires_grad_()
    losses_cls, losses_bbox, losses_iou = head.loss_dn(cls_scores, bbox_preds, gts, metas,
                                                       dn_meta)
    assert len(losses_cls) == len(losses_bbox) == len(losses_iou) == 3
    sum(losses_cls + losses_bbox + losses_iou).backward()
    assert cls_scores.grad.abs().sum() > 0
    assert bbox_preds.grad[:, :, 0].abs().sum() > 0  # positive query
    assert bbox_preds.grad[:, :, 1].abs().sum() == 0  # negative query: no box loss


def test_loss_without_ground_truth():
    head = build_head()
    dn_meta = dict(num_denoising_queries=0, num_denoising_groups=1)
    losses = head.loss_by_feat(torch.randn(2, 1, 3, 2), torch.rand(2, 1, 3, 4),
                               torch.randn(1, 3, 2), torch.rand(1, 3, 4),
                               [gt([], [])], [dict(img_shape=(32, 32))], dn_meta)
    assert losses['dn_loss_cls'].item() == 0 and losses['dn_loss_bbox'].item() == 0
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_ignored_instances_rejected():
    head = build_head()
    with pytest.raises(ValueError, match='ignored'):
        head.loss_by_feat(torch.randn(2, 1, 3, 2), torch.rand(2, 1, 3, 4), None, None,
                          [gt([[0, 0, 4, 4]], [0])], [dict(img_shape=(32, 32))], None,
                          batch_gt_instances_ignore=[gt([[0, 0, 2, 2]], [0])])
