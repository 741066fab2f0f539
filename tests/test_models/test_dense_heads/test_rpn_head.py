"""RPNHead: layers and keys, training losses, and proposals."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import RPNHead
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

IMG = 64  # tiny square images
STRIDES = [4, 8, 16, 32, 64]
FEAT = 8  # channels of the tiny feature maps

TRAIN_CFG = dict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                  match_low_quality=True, ignore_iof_thr=-1),
    sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                 add_gt_as_proposals=False),
    allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7),
                min_bbox_size=0)


def make_head(train_cfg=TRAIN_CFG, test_cfg=TEST_CFG, **kwargs) -> RPNHead:
    cfg = dict(type='RPNHead', in_channels=FEAT, feat_channels=FEAT,
               anchor_generator=dict(type='AnchorGenerator', scales=[8],
                                     ratios=[0.5, 1.0, 2.0], strides=STRIDES),
               train_cfg=ConfigDict(train_cfg) if train_cfg else None,
               test_cfg=ConfigDict(test_cfg) if test_cfg else None)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def make_feats(batch: int = 2):
    return tuple(torch.rand(batch, FEAT, IMG // s, IMG // s) for s in STRIDES)


def make_sample(bboxes, labels=None, img_shape=(IMG, IMG), scale_factor=(1.0, 1.0),
                ignored=None) -> DetDataSample:
    bboxes = torch.as_tensor(bboxes, dtype=torch.float32).reshape(-1, 4)
    labels = torch.zeros(len(bboxes), dtype=torch.long) if labels is None else \
        torch.tensor(labels, dtype=torch.long)
    sample = DetDataSample(metainfo=dict(img_shape=img_shape, pad_shape=(IMG, IMG),
                                         ori_shape=img_shape, scale_factor=scale_factor))
    sample.gt_instances = InstanceData(bboxes=bboxes, labels=labels)
    if ignored is not None:
        sample.ignored_instances = InstanceData(
            bboxes=torch.tensor(ignored, dtype=torch.float32).reshape(-1, 4))
    return sample


def make_batch():
    return [make_sample([[8, 8, 40, 40], [30, 20, 60, 50]]), make_sample([[0, 0, 63, 31]])]


def total(losses: dict) -> torch.Tensor:
    return sum(sum(level_losses) for level_losses in losses.values())


# ----------------------------------------------------------------------------- layers


def test_state_dict_keys_and_shapes_match_mmdet():
    head = RPNHead(in_channels=256, anchor_generator=dict(
        type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0], strides=STRIDES))
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes == {
        'rpn_conv.weight': (256, 256, 3, 3), 'rpn_conv.bias': (256, ),
        'rpn_cls.weight': (3, 256, 1, 1), 'rpn_cls.bias': (3, ),
        'rpn_reg.weight': (12, 256, 1, 1), 'rpn_reg.bias': (12, )
    }


def test_num_convs_stacks_conv_modules_with_mmdet_keys():
    head = make_head(num_convs=2)
    assert list(head.state_dict()) == [
        'rpn_conv.0.conv.weight', 'rpn_conv.0.conv.bias', 'rpn_conv.1.conv.weight',
        'rpn_conv.1.conv.bias', 'rpn_cls.weight', 'rpn_cls.bias', 'rpn_reg.weight',
        'rpn_reg.bias'
    ]
    cls_scores, _ = head(make_feats())
    assert cls_scores[0].shape == (2, 3, 16, 16)


def test_forward_shapes_per_level():
    cls_scores, bbox_preds = make_head()(make_feats())
    assert [tuple(c.shape) for c in cls_scores] == [(2, 3, 64 // s, 64 // s) for s in STRIDES]
    assert [tuple(b.shape) for b in bbox_preds] == [(2, 12, 64 // s, 64 // s) for s in STRIDES]


def test_init_cfg_is_normal_std_0_01():
    head = RPNHead(in_channels=64, feat_channels=64)
    head.init_weights()
    assert head.rpn_conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert torch.all(head.rpn_cls.bias == 0)


def test_rejects_more_than_one_class():
    with pytest.raises(ValueError, match='num_classes must be 1'):
        RPNHead(in_channels=8, num_classes=3)


# ----------------------------------------------------------------------------- loss


def test_loss_keys_are_per_level_and_finite():
    losses = make_head().loss(make_feats(), make_batch())
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox'}
    for level_losses in losses.values():
        assert len(level_losses) == len(STRIDES)
        assert all(torch.isfinite(loss) and loss.dim() == 0 for loss in level_losses)
    assert sum(losses['loss_rpn_bbox']) > 0  # the gt boxes have positive anchors


def test_image_without_gt_gives_only_classification_loss():
    losses = make_head().loss(make_feats(1), [make_sample(torch.zeros(0, 4))])
    assert sum(losses['loss_rpn_bbox']).item() == 0
    loss_cls = sum(losses['loss_rpn_cls'])
    assert torch.isfinite(loss_cls) and loss_cls > 0


def test_class_labels_are_ignored():
    head, feats = make_head(), make_feats(1)
    torch.manual_seed(1)
    agnostic = head.loss(feats, [make_sample([[8, 8, 40, 40]], labels=[0])])
    torch.manual_seed(1)  # same random sampling
    labelled = head.loss(feats, [make_sample([[8, 8, 40, 40]], labels=[7])])
    assert torch.allclose(total(agnostic), total(labelled))


def test_degenerate_gt_boxes_do_not_produce_nan():
    batch = [make_sample([[10, 10, 10, 30], [20, 20, 20, 20], [8, 8, 40, 40]])]
    losses = make_head().loss(make_feats(1), batch)
    assert all(torch.isfinite(loss) for level in losses.values() for loss in level)


def test_everything_ignored_gives_finite_zero_bbox_loss():
    train_cfg = dict(TRAIN_CFG)
    train_cfg['assigner'] = dict(TRAIN_CFG['assigner'], ignore_iof_thr=0.5)
    # The ignored region covers every anchor, the gt box included.
    batch = [make_sample([[8, 8, 40, 40]], ignored=[[-1000, -1000, 1000, 1000]])]
    losses = make_head(train_cfg=train_cfg).loss(make_feats(1), batch)
    assert sum(losses['loss_rpn_bbox']).item() == 0
    # No anchor is positive or negative, so nothing is learnt from the image.
    assert sum(losses['loss_rpn_cls']).item() == 0


def test_sgd_steps_on_a_fixed_batch_reduce_the_loss():
    head, feats, batch = make_head(), make_feats(), make_batch()
    optimizer = torch.optim.SGD(head.parameters(), lr=0.5, momentum=0.9)
    first = None
    for _ in range(8):
        torch.manual_seed(0)  # the same sampled anchors every step
        loss = total(head.loss(feats, batch))
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.6 * first


def test_loss_without_train_cfg_is_a_clear_error():
    with pytest.raises(ValueError, match='without train_cfg'):
        make_head(train_cfg=None).loss(make_feats(1), [make_sample([[8, 8, 40, 40]])])


# ----------------------------------------------------------------------------- proposals


def test_proposals_sorted_capped_and_labelled_zero():
    head = make_head(test_cfg=dict(TEST_CFG, max_per_img=20))
    results = head.predict(make_feats(), make_batch())
    assert len(results) == 2
    for res in results:
        assert 0 < len(res) <= 20
        assert res.bboxes.shape == (len(res), 4)
        assert torch.all(res.scores[:-1] >= res.scores[1:])
        assert res.labels.dtype == torch.long and torch.all(res.labels == 0)
        assert torch.all((res.scores > 0) & (res.scores < 1))


def test_nms_pre_is_applied_per_level():
    # No suppression (IoU is never > 1) and no size filter: every pre-selected box survives.
    cfg = dict(nms_pre=5, max_per_img=1000, nms=dict(type='nms', iou_threshold=1.0),
               min_bbox_size=-1)
    results = make_head(test_cfg=cfg).predict(make_feats(1), [make_sample([])])
    # 16x16, 8x8, 4x4 and 2x2 maps keep 5 each; the 1x1 map has only 3 anchors.
    assert len(results[0]) == 5 + 5 + 5 + 5 + 3


def test_nms_runs_within_each_level_only():
    # Hand-made outputs with zero deltas, so proposals equal the priors. Level 0 has two
    # near-duplicate boxes (IoU 0.9); level 1 repeats the first box exactly.
    head = make_head()
    priors = [torch.tensor([[10., 10., 30., 30.], [11., 10., 31., 30.]]),
              torch.tensor([[10., 10., 30., 30.]])]
    cls_scores = [torch.tensor([2.0, 1.0]).view(1, 1, 2), torch.tensor([0.0]).view(1, 1, 1)]
    bbox_preds = [torch.zeros(4, 1, 2), torch.zeros(4, 1, 1)]
    cfg = dict(nms_pre=1000, max_per_img=1000, min_bbox_size=0,
               nms=dict(type='nms', iou_threshold=0.5))
    res = head._predict_by_feat_single(cls_scores, bbox_preds, [None, None], priors,
                                       dict(img_shape=(64, 64)), cfg)
    # The level-0 duplicate is suppressed; the identical box of level 1 is not.
    assert torch.allclose(res.scores, torch.tensor([2.0, 0.0]).sigmoid())
    assert torch.allclose(res.bboxes, torch.tensor([[10., 10., 30., 30.]] * 2))


def test_rescale_divides_by_scale_factor():
    head, feats = make_head(), make_feats(1)
    sample = make_sample([], scale_factor=(2.0, 0.5))
    plain = head.predict(feats, [sample], rescale=False)[0]
    rescaled = head.predict(feats, [sample], rescale=True)[0]
    assert len(plain) == len(rescaled)
    assert torch.allclose(rescaled.bboxes * torch.tensor([2.0, 0.5, 2.0, 0.5]), plain.bboxes,
                          atol=1e-4)


def test_proposals_are_clipped_to_the_image():
    head = make_head()
    torch.nn.init.constant_(head.rpn_reg.bias, 3.0)  # huge boxes shifted right/down
    results = head.predict(make_feats(1), [make_sample([], img_shape=(40, 50))])[0]
    assert len(results) > 0
    boxes = results.bboxes
    assert boxes[:, 0].min() >= 0 and boxes[:, 1].min() >= 0
    assert boxes[:, 2].max() <= 50 and boxes[:, 3].max() <= 40


def test_no_proposal_left_gives_empty_results():
    head = make_head(test_cfg=dict(TEST_CFG, min_bbox_size=1000))
    res = head.predict(make_feats(1), [make_sample([])])[0]
    assert res.bboxes.shape == (0, 4) and res.scores.shape == (0, )
    assert res.labels.shape == (0, ) and res.labels.dtype == torch.long


def test_loss_and_predict_uses_the_proposal_cfg():
    proposal_cfg = dict(nms_pre=2000, max_per_img=7, nms=dict(type='nms', iou_threshold=0.7),
                        min_bbox_size=0)
    losses, proposals = make_head().loss_and_predict(make_feats(), make_batch(),
                                                     proposal_cfg=proposal_cfg)
    assert set(losses) == {'loss_rpn_cls', 'loss_rpn_bbox'}
    assert [len(p) for p in proposals] == [7, 7]
    assert not proposals[0].bboxes.requires_grad  # proposals do not back-propagate


def test_softmax_objectness_gives_two_channels_per_anchor():
    head = make_head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0))
    cls_scores, _ = head(make_feats())
    assert cls_scores[0].shape == (2, 3 * 2, 16, 16)
    losses = head.loss(make_feats(), make_batch())
    assert all(torch.isfinite(loss) for loss in losses['loss_rpn_cls'])
    res = head.predict(make_feats(1), [make_sample([])])[0]
    assert torch.all(res.scores[:-1] >= res.scores[1:])


def test_predict_needs_a_config():
    with pytest.raises(ValueError, match='post-processing config'):
        make_head(test_cfg=None).predict(make_feats(1), [make_sample([])])
