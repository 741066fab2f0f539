"""BBoxHead as mmdetection 3.3: its own layers, predictor configs, loss hooks, refinement.

Refined boxes are hand-computed with the DeltaXYWH formula (stds 0.1, 0.1, 0.2, 0.2):
``cx' = cx + w * 0.1 * dx``, ``w' = w * exp(0.2 * dw)``.
"""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdet_lite.models.layers import NormedLinear
from mmdet_lite.models.roi_heads import BBoxHead, Shared2FCBBoxHead
from mmdet_lite.registry import MODELS


def head(num_classes=2, **kwargs) -> BBoxHead:
    kwargs.setdefault('in_channels', 1)
    kwargs.setdefault('roi_feat_size', 1)
    return BBoxHead(num_classes=num_classes, **kwargs)


# ----------------------------------------------------------------------------- layers


def test_c4_head_layers_state_dict_and_init_cfg():
    bbox_head = BBoxHead(with_avg_pool=True, roi_feat_size=7, in_channels=2048,
                         num_classes=80)
    shapes = {k: tuple(v.shape) for k, v in bbox_head.state_dict().items()}
    assert shapes == {'fc_cls.weight': (81, 2048), 'fc_cls.bias': (81, ),
                      'fc_reg.weight': (320, 2048), 'fc_reg.bias': (320, )}
    assert isinstance(bbox_head.fc_cls, nn.Linear)
    assert bbox_head.init_cfg == [
        dict(type='Normal', std=0.01, override=dict(name='fc_cls')),
        dict(type='Normal', std=0.001, override=dict(name='fc_reg'))]
    feats = torch.rand(3, 2048, 7, 7)
    cls_score, bbox_pred = bbox_head(feats)
    # Average pooling then the fcs.
    pooled = feats.mean(dim=(2, 3))
    assert torch.allclose(cls_score, F.linear(pooled, bbox_head.fc_cls.weight,
                                              bbox_head.fc_cls.bias), atol=1e-5)
    assert bbox_pred.shape == (3, 320)
    empty_cls, empty_reg = bbox_head(torch.zeros(0, 2048, 7, 7))
    assert empty_cls.shape == (0, 81) and empty_reg.shape == (0, 320)


def test_flattened_features_and_missing_branches():
    bbox_head = BBoxHead(in_channels=2, roi_feat_size=3, num_classes=4,
                         reg_class_agnostic=True)
    assert bbox_head.fc_cls.in_features == 2 * 9 and bbox_head.fc_reg.out_features == 4
    no_reg = BBoxHead(in_channels=2, roi_feat_size=3, num_classes=4, with_reg=False)
    assert not hasattr(no_reg, 'fc_reg')
    cls_score, bbox_pred = no_reg(torch.rand(5, 2, 3, 3))
    assert cls_score.shape == (5, 5) and bbox_pred is None
    assert no_reg.init_cfg == [dict(type='Normal', std=0.01, override=dict(name='fc_cls'))]


def test_normed_linear_classifier_from_cls_predictor_cfg():
    cfg = dict(type='NormedLinear', tempearture=20)
    bbox_head = Shared2FCBBoxHead(in_channels=4, roi_feat_size=2, fc_out_channels=8,
                                  num_classes=3, cls_predictor_cfg=cfg)
    assert isinstance(bbox_head.fc_cls, NormedLinear)
    assert (bbox_head.fc_cls.in_features, bbox_head.fc_cls.out_features) == (8, 4)
    assert bbox_head.fc_cls.tempearture == 20
    assert type(bbox_head.fc_reg) is nn.Linear and bbox_head.fc_reg.in_features == 8
    assert cfg == dict(type='NormedLinear', tempearture=20)  # the config is not mutated
    assert set(bbox_head.state_dict()) == {
        'shared_fcs.0.weight', 'shared_fcs.0.bias', 'shared_fcs.1.weight',
        'shared_fcs.1.bias', 'fc_cls.weight', 'fc_cls.bias', 'fc_reg.weight', 'fc_reg.bias'}
    cls_score, _ = bbox_head(torch.rand(2, 4, 2, 2))
    assert cls_score.abs().max() <= 20 + 1e-4  # scaled cosines (zero bias)


@MODELS.register_module(name='_TestCustomChannelsLoss', force=True)
class _TestCustomChannelsLoss(nn.Module):
    """A seesaw-like loss: two extra classifier channels, its own activation/accuracy."""
    custom_cls_channels = True
    custom_activation = True

    def __init__(self, num_classes=2, **kwargs):
        super().__init__()
        self.num_classes = num_classes

    def get_cls_channels(self, num_classes):
        return num_classes + 2

    def get_activation(self, cls_score):
        # The first num_classes + 1 channels, normalized: [K, num_classes + 1].
        return F.softmax(cls_score[:, :self.num_classes + 1], dim=-1)

    def get_accuracy(self, cls_score, labels):
        return dict(acc_custom=(cls_score.argmax(1) == labels).float().mean() * 100)

    def forward(self, cls_score, labels, label_weights=None, avg_factor=None,
                reduction_override=None):
        return dict(loss_cls_objectness=cls_score.sum() * 0 + 1.0,
                    loss_cls_classes=cls_score.sum() * 0 + 2.0)


def test_loss_with_custom_cls_channels():
    bbox_head = head(num_classes=2, loss_cls=dict(type='_TestCustomChannelsLoss',
                                                  num_classes=2))
    assert bbox_head.custom_cls_channels and bbox_head.custom_activation
    assert bbox_head.fc_cls.out_features == 4  # get_cls_channels(2)
    cls_score = torch.tensor([[5., 0., 0., 9.], [0., 5., 0., 9.]])
    bbox_pred = torch.zeros(2, 8)
    losses = bbox_head.loss(cls_score, bbox_pred, torch.zeros(2, 5),
                            labels=torch.tensor([0, 2]), label_weights=torch.ones(2),
                            bbox_targets=torch.zeros(2, 4), bbox_weights=torch.ones(2, 4))
    assert set(losses) == {'loss_cls_objectness', 'loss_cls_classes', 'acc_custom',
                           'loss_bbox'}
    assert losses['acc_custom'].item() == 0.0  # argmax is the extra channel 3 for both
    # Predictions use the loss's activation, so the 4th channel is ignored.
    rois = torch.tensor([[0., 0., 0., 10., 10.], [0., 5., 5., 20., 20.]])
    res = bbox_head.predict_by_feat((rois, ), (cls_score, ), (bbox_pred, ),
                                    [dict(img_shape=(32, 32))], rcnn_test_cfg=None)[0]
    assert torch.allclose(res.scores, F.softmax(cls_score[:, :3], dim=-1))


def test_no_branch_and_assertion_style_errors():
    with pytest.raises(AssertionError, match='with_cls or with_reg'):
        head(with_cls=False, with_reg=False)


# ----------------------------------------------------------------------------- regress


def test_regress_by_class_picks_each_prior_class_deltas():
    bbox_head = head(num_classes=2)
    priors = torch.tensor([[0., 0., 10., 10.], [10., 10., 30., 20.]])
    labels = torch.tensor([1, 0])
    ln2 = math.log(2) / 0.2  # dw = 0.2 * ln2 / 0.2: the width doubles
    bbox_pred = torch.tensor([
        [0., 5., 0., 0., 1., 0., 0., 0.],  # class 1: dx = 0.1 -> shift x by 1 px
        [0., 0., ln2, 0., 9., 9., 9., 9.],  # class 0: width 20 -> 40 around cx 20
    ])
    out = bbox_head.regress_by_class(priors, labels, bbox_pred, dict(img_shape=(25, 35)))
    # Second box [0, 10, 40, 20] clipped to the 35-pixel width.
    assert torch.allclose(out, torch.tensor([[1., 0., 11., 10.], [0., 10., 35., 20.]]))


def test_regress_by_class_agnostic():
    bbox_head = head(num_classes=2, reg_class_agnostic=True)
    priors = torch.tensor([[0., 0., 10., 10.]])
    out = bbox_head.regress_by_class(priors, torch.tensor([1]),
                                     torch.tensor([[0., -2., 0., 0.]]),
                                     dict(img_shape=(100, 100)))
    # dy = -2 * 0.1 moves the box up 2 px to [0, -2, 10, 8]; y1 is clipped to 0.
    assert torch.allclose(out, torch.tensor([[0., 0., 10., 8.]]))
    with pytest.raises(AssertionError, match='4 columns'):
        bbox_head.regress_by_class(priors, torch.tensor([1]), torch.zeros(1, 8),
                                   dict(img_shape=(100, 100)))


# ----------------------------------------------------------------------------- refine


def refine_case():
    """Image 0: a GT added as proposal (dropped), a positive of class 0, a negative.
    Image 1: one positive of class 1."""
    rois = torch.tensor([[0., 0., 0., 10., 10.],
                         [0., 10., 10., 20., 20.],
                         [0., 20., 0., 30., 10.],
                         [1., 0., 0., 20., 10.]])
    labels = torch.tensor([1, 0, 2, 1])  # 2 = background
    # Background column (last) is the largest for the negative: the argmax must skip it.
    cls_score = torch.tensor([[0., 0., 0.], [0., 0., 0.], [0.1, 0.5, 5.0], [0., 0., 0.]])
    bbox_pred = torch.zeros(4, 8)
    bbox_pred[1, 0:4] = torch.tensor([1., 0., 0., 0.])  # class 0: +1 px in x
    bbox_pred[2, 0:4] = torch.tensor([-1., 0., 0., 0.])  # class 0 (not chosen)
    bbox_pred[2, 4:8] = torch.tensor([0., 1., 0., 0.])  # class 1: +1 px in y
    bbox_pred[3, 4:8] = torch.tensor([1., 0., 0., 0.])  # class 1: +2 px in x (w = 20)
    sampling_results = [SimpleNamespace(pos_is_gt=torch.tensor([1, 0], dtype=torch.uint8)),
                        SimpleNamespace(pos_is_gt=torch.tensor([0], dtype=torch.uint8))]
    bbox_results = dict(rois=rois, cls_score=cls_score, bbox_pred=bbox_pred,
                        bbox_targets=(labels, None, None, None))
    return sampling_results, bbox_results


def test_refine_bboxes_hand_computed():
    sampling_results, bbox_results = refine_case()
    metas = [dict(img_shape=(64, 64)), dict(img_shape=(64, 64))]
    refined = head(num_classes=2).refine_bboxes(sampling_results, bbox_results, metas)
    assert len(refined) == 2
    assert torch.allclose(refined[0].bboxes,
                          torch.tensor([[11., 10., 21., 20.], [20., 1., 30., 11.]]))
    assert torch.allclose(refined[1].bboxes, torch.tensor([[2., 0., 22., 10.]]))


def test_refine_bboxes_accepts_scores_without_background_and_rejects_other_widths():
    sampling_results, bbox_results = refine_case()
    metas = [dict(img_shape=(64, 64))] * 2
    bbox_results['cls_score'] = bbox_results['cls_score'][:, :2]
    refined = head(num_classes=2).refine_bboxes(sampling_results, bbox_results, metas)
    assert torch.allclose(refined[0].bboxes[1], torch.tensor([20., 1., 30., 11.]))
    bbox_results['cls_score'] = torch.zeros(4, 5)
    with pytest.raises(ValueError, match='num_classes'):
        head(num_classes=2).refine_bboxes(sampling_results, bbox_results, metas)
    with pytest.raises(AssertionError, match='image ids'):
        sampling_results, bbox_results = refine_case()
        head(num_classes=2).refine_bboxes(sampling_results, bbox_results, metas[:1])


def test_refine_bboxes_without_rois_is_none():
    bbox_results = dict(rois=torch.zeros(0, 5), cls_score=torch.zeros(0, 3),
                        bbox_pred=torch.zeros(0, 8),
                        bbox_targets=(torch.zeros(0, dtype=torch.long), ))
    assert head(num_classes=2).refine_bboxes([], bbox_results, [dict(img_shape=(8, 8))]) \
        is None


def test_get_targets_without_concat_keeps_images_apart():
    from test_bbox_head import TRAIN_CFG, sampling_results
    bbox_head = head(num_classes=3)
    labels, label_weights, targets, weights = bbox_head.get_targets(
        sampling_results(), TRAIN_CFG, concat=False)
    assert [len(t) for t in labels] == [3, 1]
    assert labels[0].tolist() == [2, 1, 3] and labels[1].tolist() == [3]
    assert torch.equal(torch.cat(targets), bbox_head.get_targets(sampling_results(),
                                                                 TRAIN_CFG)[2])
