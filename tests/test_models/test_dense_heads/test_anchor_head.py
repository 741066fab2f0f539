"""AnchorHead: layers, hand-computed targets and losses, generic box post-processing.

Also covers the helpers of ``mmdet_lite.models.utils`` that the anchor heads are built on.
"""
import math

import pytest
import torch
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import AnchorHead
from mmdet_lite.models.utils import (batched_nms, empty_instances, filter_scores_and_topk,
                                     images_to_levels, select_single_mlvl, unpack_gt_instances)
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

# One level, one 16x16 anchor per position, stride 16: on a 2x2 map the anchors are
#   0: [-8, -8, 8, 8]   1: [8, -8, 24, 8]   2: [-8, 8, 8, 24]   3: [8, 8, 24, 24]
ONE_ANCHOR = dict(type='AnchorGenerator', scales=[1], ratios=[1.0], strides=[16])
ASSIGNER = dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0)
META = dict(img_shape=(32, 32), pad_shape=(32, 32), scale_factor=(1.0, 1.0))


def make_head(num_classes=3, train_cfg=None, test_cfg=None, **kwargs) -> AnchorHead:
    train_cfg = dict(assigner=ASSIGNER, allowed_border=-1, pos_weight=-1) \
        if train_cfg is None else train_cfg
    return MODELS.build(dict(type='AnchorHead', num_classes=num_classes, in_channels=4,
                             anchor_generator=ONE_ANCHOR, train_cfg=train_cfg,
                             test_cfg=test_cfg, **kwargs))


def gt(bboxes, labels) -> InstanceData:
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).view(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


def targets_of(head, gt_instances, meta=META, ignore=None):
    anchors, flags = head.get_anchors([(2, 2)], [meta])
    return head.get_targets(anchors, flags, [gt_instances], [meta], [ignore])


# ----------------------------------------------------------------------------- layers


def test_forward_shapes_and_state_dict_keys():
    head = AnchorHead(num_classes=3, in_channels=4)  # default: 3 anchors per position
    feats = tuple(torch.rand(2, 4, 16 // 2**i, 16 // 2**i) for i in range(5))
    cls_scores, bbox_preds = head(feats)
    assert [tuple(c.shape) for c in cls_scores] == [(2, 9 * 3, 16 // 2**i, 16 // 2**i)
                                                    for i in range(5)]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 9 * 4, 16 // 2**i, 16 // 2**i)
                                                    for i in range(5)]
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {
        'conv_cls.weight': (27, 4, 1, 1), 'conv_cls.bias': (27, ),
        'conv_reg.weight': (36, 4, 1, 1), 'conv_reg.bias': (36, )
    }


def test_softmax_loss_adds_a_background_channel():
    head = make_head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False))
    assert head.cls_out_channels == 4 and head.conv_cls.out_channels == 4


def test_default_sampler_is_pseudo():
    assert type(make_head().sampler).__name__ == 'PseudoSampler'


def test_config_errors_are_explicit():
    with pytest.raises(KeyError, match='assigner'):
        make_head(train_cfg=dict(allowed_border=-1))
    sampler = dict(type='RandomSampler', num=8, pos_fraction=0.5, add_gt_as_proposals=True)
    with pytest.raises(ValueError, match='add_gt_as_proposals'):
        make_head(train_cfg=dict(assigner=ASSIGNER, sampler=sampler))
    with pytest.raises(ValueError, match='num_classes'):
        make_head(num_classes=0)


# ----------------------------------------------------------------------------- targets


def test_targets_hand_computed():
    # The gt is anchor 3 shifted right by 2 px: IoU 224 / 288 with it, 0 with the others.
    labels, label_weights, bbox_targets, bbox_weights, avg_factor = targets_of(
        make_head(), gt([[10, 8, 26, 24]], [2]))
    assert labels[0].tolist() == [[3, 3, 3, 2]]  # 3 = background
    assert label_weights[0].tolist() == [[1, 1, 1, 1]]
    assert torch.allclose(bbox_targets[0][0, 3], torch.tensor([2 / 16, 0., 0., 0.]))
    assert bbox_targets[0][0, :3].abs().sum() == 0
    assert bbox_weights[0].tolist() == [[[0] * 4] * 3 + [[1] * 4]]
    assert avg_factor == 1  # PseudoSampler: number of positives


def test_allowed_border_drops_anchors_outside_the_image():
    head = make_head(train_cfg=dict(assigner=ASSIGNER, allowed_border=0, pos_weight=2.0))
    labels, label_weights, _, _, _ = targets_of(head, gt([[8, 8, 24, 24]], [1]))
    assert labels[0].tolist() == [[3, 3, 3, 1]]
    # Anchors 0-2 stick out of the image: no loss; the positive gets pos_weight.
    assert label_weights[0].tolist() == [[0, 0, 0, 2]]


def test_no_anchor_inside_the_image_is_an_error():
    head = make_head(train_cfg=dict(assigner=ASSIGNER, allowed_border=0))
    with pytest.raises(ValueError, match='No anchor lies inside'):
        targets_of(head, gt([[0, 0, 4, 4]], [0]), meta=dict(META, img_shape=(8, 8)))


def test_anchors_over_padding_are_invalid():
    # The image is 16x16 inside a 32x32 batch: only anchor 0 is centred on the image.
    labels, label_weights, _, _, _ = targets_of(
        make_head(), gt([[0, 0, 4, 4]], [0]), meta=dict(META, pad_shape=(16, 16)))
    assert label_weights[0].tolist() == [[1, 0, 0, 0]]


def test_loss_hand_computed():
    head = make_head()
    torch.nn.init.zeros_(head.conv_cls.weight)
    torch.nn.init.zeros_(head.conv_cls.bias)
    torch.nn.init.zeros_(head.conv_reg.weight)
    torch.nn.init.zeros_(head.conv_reg.bias)
    cls_scores, bbox_preds = head((torch.rand(1, 4, 2, 2), ))
    losses = head.loss_by_feat(cls_scores, bbox_preds, [gt([[10, 8, 26, 24]], [2])], [META])
    # Zero logits: BCE log(2) for 4 anchors x 3 classes, divided by avg_factor 1.
    assert losses['loss_cls'][0].item() == pytest.approx(12 * math.log(2), rel=1e-5)
    # Smooth L1 (beta 1/9) of the dx target 0.125 against a zero prediction.
    assert losses['loss_bbox'][0].item() == pytest.approx(0.125 - 0.5 / 9, rel=1e-5)


def test_loss_from_data_samples_with_softmax():
    head = make_head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False))
    for conv in (head.conv_cls, head.conv_reg):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    sample = DetDataSample(metainfo=META)
    sample.gt_instances = gt([[8, 8, 24, 24]], [1])
    losses = head.loss((torch.rand(1, 4, 2, 2), ), [sample])
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    # Zero logits over 3 classes + background: CE log(4) for each of the 4 anchors, divided
    # by the one positive (anchor 3, which equals the GT box, so its box loss is 0).
    assert losses['loss_cls'][0].item() == pytest.approx(4 * math.log(4), rel=1e-5)
    assert losses['loss_bbox'][0].item() == 0


# ----------------------------------------------------------------------------- predict

TEST_CFG = dict(nms_pre=100, score_thr=0.05, min_bbox_size=0, max_per_img=100,
                nms=dict(type='nms', iou_threshold=0.5))


def hand_outputs():
    """Logits -10 except anchor 3: class 0 -> 3, class 1 -> 2; anchor 0: class 2 -> 1."""
    cls_score = torch.full((1, 3, 2, 2), -10.0)  # [B, A * C, H, W] with A = 1
    cls_score[0, 0, 1, 1], cls_score[0, 1, 1, 1], cls_score[0, 2, 0, 0] = 3.0, 2.0, 1.0
    return [cls_score], [torch.zeros(1, 4, 2, 2)]


def test_predict_by_feat_hand_computed():
    results = make_head(test_cfg=TEST_CFG).predict_by_feat(*hand_outputs(),
                                                           batch_img_metas=[META])[0]
    # Class-wise NMS keeps the same box for two classes; anchor 0 is clipped to the image.
    assert results.labels.tolist() == [0, 1, 2]
    assert torch.allclose(results.scores, torch.tensor([3.0, 2.0, 1.0]).sigmoid())
    assert results.bboxes.tolist() == [[8, 8, 24, 24], [8, 8, 24, 24], [0, 0, 8, 8]]


def test_predict_by_feat_nms_pre_rescale_and_no_nms():
    head = make_head(test_cfg=dict(TEST_CFG, nms_pre=2))
    meta = dict(META, scale_factor=(2.0, 4.0))
    results = head.predict_by_feat(*hand_outputs(), batch_img_metas=[meta], rescale=True,
                                   with_nms=False)[0]
    assert results.labels.tolist() == [0, 1]  # the 2 best (prior, class) pairs
    assert results.bboxes.tolist() == [[4, 2, 12, 6]] * 2


def test_predict_without_config_is_an_error():
    with pytest.raises(ValueError, match='post-processing config'):
        make_head().predict_by_feat(*hand_outputs(), batch_img_metas=[META])


# ----------------------------------------------------------------------------- helpers


def test_images_to_levels_and_select_single_mlvl():
    per_image = [torch.arange(5), torch.arange(5) + 10]
    levels = images_to_levels(per_image, [3, 2])
    assert [lvl.tolist() for lvl in levels] == [[[0, 1, 2], [10, 11, 12]], [[3, 4], [13, 14]]]
    mlvl = [torch.rand(2, 3, 4, 4, requires_grad=True), torch.rand(2, 3, 2, 2)]
    single = select_single_mlvl(mlvl, 1)
    assert [tuple(t.shape) for t in single] == [(3, 4, 4), (3, 2, 2)]
    assert not single[0].requires_grad
    with pytest.raises(TypeError, match='list or tuple'):
        select_single_mlvl(mlvl[0], 0)


def test_filter_scores_and_topk():
    scores = torch.tensor([[0.1, 0.9], [0.6, 0.01], [0.3, 0.7]])
    kept, labels, idxs, results = filter_scores_and_topk(scores, 0.2, 3,
                                                         dict(row=torch.arange(3) * 10))
    assert kept.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert labels.tolist() == [1, 1, 0] and idxs.tolist() == [0, 2, 1]
    assert results['row'].tolist() == [0, 20, 10]
    kept, _, _, _ = filter_scores_and_topk(scores, 0.2, -1)  # no top-k limit
    assert len(kept) == 4


@pytest.mark.parametrize('score_thr, topk', [(0.0, 50), (0.5, 50), (0.95, 50), (0.5, -1),
                                             (0.0, 10000)])
def test_filter_scores_and_topk_matches_filter_then_sort(score_thr, topk):
    # Reference: keep every (prior, class) pair above score_thr, sort, keep the topk.
    scores = torch.rand(300, 7, generator=torch.Generator().manual_seed(0))
    pairs = sorted(((scores[i, c].item(), i, c) for i in range(300) for c in range(7)
                    if scores[i, c] > score_thr), reverse=True)
    if topk > 0:
        pairs = pairs[:topk]
    kept, labels, idxs, _ = filter_scores_and_topk(scores, score_thr, topk)
    assert kept.tolist() == pytest.approx([p[0] for p in pairs])
    assert idxs.tolist() == [p[1] for p in pairs] and labels.tolist() == [p[2] for p in pairs]
    assert kept.dtype == scores.dtype and idxs.dtype == labels.dtype == torch.int64


def test_batched_nms_config():
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    idxs = torch.tensor([0, 1, 0])
    dets, keep = batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=0.5))
    assert keep.tolist() == [0, 1, 2] and dets.shape == (3, 5)
    _, keep = batched_nms(boxes, scores, idxs, dict(iou_threshold=0.5, class_agnostic=True))
    assert keep.tolist() == [0, 2]
    _, keep = batched_nms(boxes, scores, idxs, dict(iou_threshold=0.5, max_num=1))
    assert keep.tolist() == [0]
    with pytest.raises(ValueError, match='soft_nms'):
        batched_nms(boxes, scores, idxs, dict(type='soft_nms', iou_threshold=0.5))


def test_unpack_gt_instances_and_empty_instances():
    with_ignore, without = DetDataSample(metainfo=META), DetDataSample(metainfo=META)
    with_ignore.gt_instances = without.gt_instances = gt([[0, 0, 4, 4]], [1])
    with_ignore.ignored_instances = InstanceData(bboxes=torch.zeros(1, 4))
    gts, ignores, metas = unpack_gt_instances([with_ignore, without])
    assert len(gts) == 2 and ignores[1] is None and len(ignores[0]) == 1
    assert metas[0]['img_shape'] == (32, 32)
    with pytest.raises(KeyError, match='gt_instances'):
        unpack_gt_instances([DetDataSample(metainfo=META)])

    boxes = empty_instances([META], 'cpu', 'bbox')[0]
    assert boxes.bboxes.shape == (0, 4) and boxes.labels.dtype == torch.long
    masks = empty_instances([dict(ori_shape=(5, 7))], 'cpu', 'mask')[0]
    assert masks.masks.shape == (0, 5, 7) and masks.masks.dtype == torch.bool
    with pytest.raises(ValueError, match='task_type'):
        empty_instances([META], 'cpu', 'keypoints')
