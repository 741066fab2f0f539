"""PAAHead and its Gaussian mixture fit.

- GaussianMixture1D: one EM step against hand-written formulas, the stopping rule, the
  covariance types, argument errors, and (when scikit-learn is importable) agreement with
  ``sklearn.mixture.GaussianMixture`` configured as mmdetection configures it.
- PAAHead: mmdetection's arguments and keys; the reassignment on hand-made bimodal losses
  (which candidates stay positive, under the default separation scheme and a custom one),
  top-k per level, gts with a single candidate; the candidates' losses and the three losses
  against torchvision's focal / GIoU / IoU and torch's BCE; score voting and predict against
  hand-computed boxes and scores.
"""
import inspect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_atss_gfl_keys import atss_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from mmdet_lite.models.dense_heads import ATSSHead, PAAHead
from mmdet_lite.models.utils.gaussian_mixture import GaussianMixture1D
from mmdet_lite.registry import MODELS

NUM_CLASSES = 3
TRAIN_CFG = dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.1, neg_iou_thr=0.1,
                               min_pos_iou=0, ignore_iof_thr=-1),
                 allowed_border=-1, pos_weight=-1, debug=False)
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)
STDS = (0.1, 0.1, 0.2, 0.2)


def head_cfg(**kwargs) -> dict:
    """The COCO config's head with 3 classes, 32 channels, 2 convs per tower and one stride-8
    level of 16x16 anchors: a 32x32 image has a 4x4 grid, anchor i centred at
    (8 (i % 4), 8 (i // 4)), e.g. anchor 5 is (0, 0, 16, 16)."""
    cfg = dict(type='PAAHead', reg_decoded_bbox=True, score_voting=True, topk=9,
               num_classes=NUM_CLASSES, in_channels=32, stacked_convs=2, feat_channels=32,
               anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=2,
                                     scales_per_octave=1, strides=[8]),
               bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4,
                               target_stds=list(STDS)),
               loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                             loss_weight=1.0),
               loss_bbox=dict(type='GIoULoss', loss_weight=1.3),
               loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.5),
               train_cfg=ConfigDict(TRAIN_CFG), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return cfg


def one_level_head(**kwargs) -> PAAHead:
    return MODELS.build(head_cfg(**kwargs))


def meta(img_shape=(32, 32), scale_factor=(1.0, 1.0)) -> dict:
    return dict(img_shape=img_shape, pad_shape=img_shape, batch_input_shape=img_shape,
                ori_shape=img_shape, scale_factor=scale_factor)


def gts(box, label=1) -> InstanceData:
    return InstanceData(bboxes=torch.tensor([box], dtype=torch.float32),
                        labels=torch.tensor([label]))


def normal_pdf(x, mean, var):
    return math.exp(-(x - mean)**2 / (2 * var)) / math.sqrt(2 * math.pi * var)


# ----------------------------------------------------------------------------- mixture fit


def test_one_em_step_by_hand():
    x = [0.0, 1.0, 2.0]
    gmm = GaussianMixture1D([0.5, 0.5], [0.0, 2.0], [1.0, 1.0], covariance_type='diag',
                            max_iter=1).fit(x)
    # E-step at the start (unit variances, equal weights): sample 0 belongs to component 0
    # with 1 / (1 + e^-2), sample 1 half and half, sample 2 mirrored.
    a = 1 / (1 + math.exp(-2))
    resp0 = [a, 0.5, 1 - a]
    resp1 = [1 - r for r in resp0]
    expected_means, expected_vars = [], []
    for resp in (resp0, resp1):
        mass = sum(resp)
        mean = sum(r * xi for r, xi in zip(resp, x)) / mass
        expected_means.append(mean)
        expected_vars.append(sum(r * (xi - mean)**2 for r, xi in zip(resp, x)) / mass + 1e-6)
    assert gmm.n_iter_ == 1 and not gmm.converged_
    np.testing.assert_allclose(gmm.weights_, [0.5, 0.5], rtol=1e-12)
    np.testing.assert_allclose(gmm.means_, expected_means, rtol=1e-12)
    np.testing.assert_allclose(gmm.variances_, expected_vars, rtol=1e-12)
    assert expected_means[0] == pytest.approx((2.5 - 2 * a) / 1.5)  # the formula, spelled out

    # the fitted mixture's log density and most probable component
    points = [0.0, 0.9, 1.1, 2.0]
    expected_scores = [
        math.log(0.5 * normal_pdf(p, expected_means[0], expected_vars[0]) +
                 0.5 * normal_pdf(p, expected_means[1], expected_vars[1])) for p in points
    ]
    np.testing.assert_allclose(gmm.score_samples(points), expected_scores, rtol=1e-12)
    assert gmm.predict(points).tolist() == [0, 0, 1, 1]


def test_em_runs_until_the_mean_log_likelihood_settles():
    x = [0.1, 0.2, 0.25, 3.0, 3.2]
    # the first iteration never stops (the previous value is -inf), the second does
    loose = GaussianMixture1D([0.5, 0.5], [0.1, 3.2], [1.0, 1.0], tol=1e9).fit(x)
    assert loose.n_iter_ == 2 and loose.converged_
    strict = GaussianMixture1D([0.5, 0.5], [0.1, 3.2], [1.0, 1.0], tol=0.0, max_iter=7).fit(x)
    assert strict.n_iter_ == 7 and not strict.converged_
    # converged: the two clusters, weights 3/5 and 2/5
    fitted = GaussianMixture1D([0.5, 0.5], [0.1, 3.2], [1.0, 1.0]).fit(x)
    np.testing.assert_allclose(fitted.means_, [0.55 / 3, 3.1], rtol=1e-6)
    np.testing.assert_allclose(fitted.weights_, [0.6, 0.4], rtol=1e-6)


def test_covariance_types_on_one_feature():
    x = np.array([0.1, 0.2, 0.22, 0.4, 2.0, 2.5, 2.6])
    precisions = dict(full=np.ones((2, 1, 1)), diag=np.ones((2, 1)), spherical=np.ones(2),
                      tied=np.ones((1, 1)))
    fits = {t: GaussianMixture1D([0.5, 0.5], [x.min(), x.max()], p, covariance_type=t).fit(x)
            for t, p in precisions.items()}
    # full, diag and spherical are one variance per component
    for t in ('diag', 'spherical'):
        np.testing.assert_array_equal(fits[t].variances_, fits['full'].variances_)
        np.testing.assert_array_equal(fits[t].score_samples(x), fits['full'].score_samples(x))
    assert fits['full'].variances_[0] != pytest.approx(fits['full'].variances_[1])
    # tied: one variance shared by both components
    assert fits['tied'].variances_[0] == fits['tied'].variances_[1]


def test_mixture_argument_errors():
    with pytest.raises(ValueError, match='covariance_type'):
        GaussianMixture1D([0.5, 0.5], [0, 1], [1, 1], covariance_type='round').fit([0, 1, 2])
    with pytest.raises(ValueError, match='samples'):
        GaussianMixture1D([0.5, 0.5], [0, 1], [1, 1]).fit([0.0])
    with pytest.raises(ValueError, match='precisions_init'):
        GaussianMixture1D([0.5, 0.5], [0, 1], [1, 1], covariance_type='tied').fit([0, 1, 2])


def test_mixture_matches_scikit_learn():
    skm = pytest.importorskip('sklearn.mixture')
    rng = np.random.default_rng(0)
    for trial in range(60):
        low = rng.normal(0.3, 0.1, rng.integers(2, 20))
        high = rng.normal(2.0, 0.5, rng.integers(0, 15))
        x = np.sort(np.concatenate([low, high])).reshape(-1, 1)
        covariance_type = ('full', 'diag', 'spherical', 'tied')[trial % 4]
        # exactly what mmdetection's PAAHead passes
        precisions = np.array([1.0, 1.0]).reshape(2, 1, 1)
        if covariance_type == 'spherical':
            precisions = precisions.reshape(2)
        elif covariance_type == 'diag':
            precisions = precisions.reshape(2, 1)
        elif covariance_type == 'tied':
            precisions = np.array([[1.0]])
        means = np.array([x.min(), x.max()]).reshape(2, 1)
        reference = skm.GaussianMixture(2, weights_init=np.array([0.5, 0.5]),
                                        means_init=means, precisions_init=precisions,
                                        covariance_type=covariance_type).fit(x)
        ours = GaussianMixture1D([0.5, 0.5], means, precisions,
                                 covariance_type=covariance_type).fit(x)
        assert ours.n_iter_ == reference.n_iter_
        np.testing.assert_array_equal(ours.predict(x), reference.predict(x))
        np.testing.assert_allclose(ours.score_samples(x), reference.score_samples(x),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ours.means_, reference.means_.ravel(), rtol=1e-9)


# ----------------------------------------------------------------------------- definition


def test_arguments_defaults_and_registry():
    params = inspect.signature(PAAHead.__init__).parameters
    assert list(params) == ['self', 'args', 'topk', 'score_voting', 'covariance_type',
                            'kwargs']
    assert params['topk'].default == 9
    assert params['score_voting'].default is True
    assert params['covariance_type'].default == 'diag'
    assert issubclass(PAAHead, ATSSHead) and MODELS.get('PAAHead') is PAAHead
    head = one_level_head(topk=4, score_voting=False, covariance_type='tied')
    assert (head.topk, head.with_score_voting, head.covariance_type) == (4, False, 'tied')
    assert type(head.assigner).__name__ == 'MaxIoUAssigner'


def test_keys_of_the_coco_head_are_atss_keys():
    cfg = head_cfg(num_classes=80, in_channels=256, feat_channels=256, stacked_convs=4,
                   anchor_generator=dict(type='AnchorGenerator', ratios=[1.0],
                                         octave_base_scale=8, scales_per_octave=1,
                                         strides=[8, 16, 32, 64, 128]))
    head = MODELS.build(cfg)
    assert shapes_of(head) == atss_head(prefix='', in_channels=256, feat_channels=256,
                                        num_classes=80)


# ----------------------------------------------------------------------------- reassignment

# One gt, one level of 20 anchors, eight candidates whose losses form two clusters:
# low 0.10, 0.20, 0.22, 0.24, 0.34 (mean 0.22) and high 3.0, 3.1, 3.3.
BIMODAL = {2: 3.1, 3: 0.20, 5: 0.34, 7: 0.10, 8: 3.0, 11: 0.24, 13: 3.3, 17: 0.22}


def reassign_inputs(candidates, gt_inds, gt_labels, num_anchors):
    pos_inds = torch.tensor(sorted(candidates))
    label = torch.full((num_anchors, ), NUM_CLASSES)
    label[pos_inds] = torch.tensor([gt_labels[gt_inds[i]] for i in sorted(candidates)])
    bbox_weight = torch.zeros(num_anchors, 4)
    bbox_weight[pos_inds] = 1
    return dict(pos_losses=torch.tensor([candidates[i] for i in sorted(candidates)]),
                label=label, label_weight=torch.ones(num_anchors), bbox_weight=bbox_weight,
                pos_inds=pos_inds,
                pos_gt_inds=torch.tensor([gt_inds[i] for i in sorted(candidates)]))


def positives(label):
    return (label < NUM_CLASSES).nonzero().flatten().tolist()


@pytest.mark.parametrize('covariance_type', ['diag', 'full', 'spherical', 'tied'])
def test_bimodal_losses_keep_the_low_cluster_up_to_its_density_peak(covariance_type):
    head = one_level_head(covariance_type=covariance_type)
    inputs = reassign_inputs(BIMODAL, {i: 0 for i in BIMODAL}, [1], 20)
    before = {k: v.clone() for k, v in inputs.items()}
    label, label_weight, bbox_weight, num_pos = head.paa_reassign(**inputs,
                                                                  anchors=[torch.zeros(20, 4)])
    # The low component takes the five low losses; the mixture density peaks at their mean,
    # 0.22 (anchor 17): the candidates up to it, 0.10, 0.20, 0.22, stay positive.
    assert positives(label) == [3, 7, 17] and num_pos == 3
    assert torch.equal(label[[3, 7, 17]], torch.ones(3, dtype=torch.long))
    assert torch.equal(bbox_weight.sum(1).nonzero().flatten(), torch.tensor([3, 7, 17]))
    assert torch.equal(label_weight, torch.ones(20))  # demoted ones count as negatives
    for k, v in before.items():  # the inputs are not modified
        assert torch.equal(inputs[k], v)


class LowComponentHead(PAAHead):
    """Another separation scheme: the whole low-loss component is positive, the high-loss
    candidates are ignored."""

    def gmm_separation_scheme(self, gmm_assignment, scores, pos_inds_gmm):
        return pos_inds_gmm[gmm_assignment == 0], pos_inds_gmm[gmm_assignment == 1]


def test_a_custom_separation_scheme_decides_the_positives():
    cfg = head_cfg()
    cfg.pop('type')
    head = LowComponentHead(**cfg)
    inputs = reassign_inputs(BIMODAL, {i: 0 for i in BIMODAL}, [1], 20)
    label, label_weight, bbox_weight, num_pos = head.paa_reassign(**inputs,
                                                                  anchors=[torch.zeros(20, 4)])
    assert positives(label) == [3, 5, 7, 11, 17] and num_pos == 5
    # the high-loss candidates are ignored: background with no class loss
    assert (label_weight == 0).nonzero().flatten().tolist() == [2, 8, 13]
    assert torch.equal(label[[2, 8, 13]], torch.full((3, ), NUM_CLASSES))


def test_topk_per_level_and_gts_with_a_single_candidate():
    head = one_level_head(topk=2)
    # two levels: anchors 0-9 and 10-15. gt 0 has candidates 1, 2, 3 (level 0) and 11, 12
    # (level 1); gt 1 only anchor 5.
    losses = {1: 0.5, 2: 0.1, 3: 0.2, 5: 0.3, 11: 0.15, 12: 5.0}
    gt_inds = {1: 0, 2: 0, 3: 0, 5: 1, 11: 0, 12: 0}
    inputs = reassign_inputs(losses, gt_inds, [0, 2], 16)
    label, _, bbox_weight, num_pos = head.paa_reassign(
        **inputs, anchors=[torch.zeros(10, 4), torch.zeros(6, 4)])
    # gt 0: level 0 gives its 2 lowest (anchors 2, 3; anchor 1 is out), level 1 both. The
    # fit on 0.1, 0.15, 0.2 | 5.0 peaks at 0.15: anchors 2 and 11 stay. (Were anchor 1's 0.5
    # in the fit, the low mean would be 0.2375 and anchor 3 would stay as well.)
    # gt 1: a single candidate, no fit: anchor 5 becomes background.
    assert positives(label) == [2, 11] and num_pos == 2
    assert label[2] == 0 and label[11] == 0
    assert bbox_weight.sum(1).nonzero().flatten().tolist() == [2, 11]


def test_no_candidates_leave_the_targets_alone():
    head = one_level_head()
    label = torch.full((6, ), NUM_CLASSES)
    outputs = head.paa_reassign(torch.zeros(0), label, torch.ones(6), torch.zeros(6, 4),
                                torch.zeros(0, dtype=torch.long),
                                torch.zeros(0, dtype=torch.long), [torch.zeros(6, 4)])
    assert outputs[0] is label and outputs[3] == 0


# ----------------------------------------------------------------------------- losses

GT_BOX = (2., 2., 14., 14.)
# IoU of gt (2, 2, 14, 14) with the 16x16 anchors of the 4x4 grid: anchor 5 (0, 0, 16, 16)
# 144/256; anchors 1, 4, 6, 9 (one step away) 72/328 = 0.22; anchors 0, 2, 8, 10 (diagonal)
# 36/364 = 0.099 < 0.1. So the IoU-0.1 assigner proposes 1, 4, 5, 6, 9.
CANDIDATES = [1, 4, 5, 6, 9]


def random_outputs(num_imgs, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return ([(torch.randn(num_imgs, 3, 4, 4, generator=generator) * 0.5).requires_grad_()],
            [(torch.randn(num_imgs, 4, 4, 4, generator=generator) * 0.5).requires_grad_()],
            [torch.randn(num_imgs, 1, 4, 4, generator=generator).requires_grad_()])


def rows(level_map):
    """[B, K, 4, 4] -> [B * 16, K], anchor order."""
    return level_map.detach().permute(0, 2, 3, 1).reshape(-1, level_map.size(1))


def test_first_assignment_and_candidate_losses():
    head = one_level_head()
    anchor_list, valid_list = head.get_anchors([(4, 4)], [meta()])
    labels, label_weights, bbox_targets, bbox_weights, pos_inds, gt_inds = head.get_targets(
        anchor_list, valid_list, [gts(GT_BOX)], [meta()])
    assert pos_inds[0].tolist() == CANDIDATES and gt_inds[0].tolist() == [0] * 5
    assert positives(labels[0]) == CANDIDATES and torch.equal(label_weights[0], torch.ones(16))
    assert torch.equal(bbox_targets[0][CANDIDATES], torch.tensor([GT_BOX] * 5))

    cls_scores, bbox_preds, _ = random_outputs(1)
    cls_rows, deltas = rows(cls_scores[0]), rows(bbox_preds[0])
    (pos_losses, ) = head.get_pos_loss(anchor_list[0], cls_rows, deltas, labels[0],
                                       label_weights[0], bbox_targets[0], bbox_weights[0],
                                       pos_inds[0])
    onehot = F.one_hot(torch.tensor([1] * 5), NUM_CLASSES).float()
    focal = sigmoid_focal_loss(cls_rows[CANDIDATES], onehot, alpha=0.25, gamma=2.0).sum(1)
    decoded = head.bbox_coder.decode(anchor_list[0][0][CANDIDATES], deltas[CANDIDATES])
    giou = generalized_box_iou_loss(decoded, torch.tensor([GT_BOX] * 5))
    assert torch.allclose(pos_losses, focal + 1.3 * giou, atol=1e-6)
    assert head.get_pos_loss(anchor_list[0], cls_rows, deltas, labels[0], label_weights[0],
                             bbox_targets[0], bbox_weights[0],
                             torch.zeros(0, dtype=torch.long))[0].shape == (0, )


def test_losses_match_independent_formulas():
    head = one_level_head()
    boxes = [GT_BOX, (6., 10., 30., 28.)]
    outputs = random_outputs(2)
    kept = []
    reassign = head.paa_reassign

    def spy(*args):
        result = reassign(*args)
        kept.append(result[0])
        return result

    head.paa_reassign = spy
    losses = head.loss_by_feat(*outputs, [gts(b) for b in boxes], [meta(), meta()])
    assert set(losses) == {'loss_cls', 'loss_bbox', 'loss_iou'}
    assert all(v.dim() == 0 for v in losses.values())

    labels = torch.cat(kept)  # [2 * 16] after the reassignment
    pos = (labels < NUM_CLASSES).nonzero().flatten()
    num_pos = len(pos)
    assert num_pos >= 2  # each gt keeps at least its lowest-loss candidate
    cls_rows, deltas, iou_logits = (rows(o[0]) for o in outputs)
    onehot = F.one_hot(labels, NUM_CLASSES + 1)[:, :NUM_CLASSES].float()
    focal = sigmoid_focal_loss(cls_rows, onehot, alpha=0.25, gamma=2.0, reduction='sum')
    assert torch.allclose(losses['loss_cls'], focal / max(num_pos, 2), rtol=1e-5)

    anchors = head.get_anchors([(4, 4)], [meta()])[0][0][0].repeat(2, 1)
    decoded = head.bbox_coder.decode(anchors[pos], deltas[pos])
    targets = torch.tensor([boxes[int(i) // 16] for i in pos])
    ious = box_iou(decoded, targets).diag()
    bce = F.binary_cross_entropy_with_logits(iou_logits[pos, 0], ious, reduction='sum')
    assert torch.allclose(losses['loss_iou'], 0.5 * bce / num_pos, rtol=1e-5)
    giou = generalized_box_iou_loss(decoded, targets)
    assert torch.allclose(losses['loss_bbox'], 1.3 * (ious * giou).sum() / ious.sum(),
                          rtol=1e-5)

    sum(losses.values()).backward()
    assert all(o[0].grad is not None and o[0].grad.abs().sum() > 0 for o in outputs)


def test_an_image_without_gts_has_zero_box_and_iou_losses():
    head = one_level_head()
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    outputs = random_outputs(1)
    losses = head.loss_by_feat(*outputs, [empty], [meta()])
    assert losses['loss_bbox'] == 0 and losses['loss_iou'] == 0
    # every anchor a negative; the focal loss is divided by the number of images
    focal = sigmoid_focal_loss(rows(outputs[0][0]), torch.zeros(16, 3), reduction='sum')
    assert torch.allclose(losses['loss_cls'], focal, rtol=1e-5)


def test_argument_errors():
    head = one_level_head()
    anchor_list, valid_list = head.get_anchors([(4, 4)], [meta()])
    with pytest.raises(AssertionError, match='unmap_outputs'):
        head.get_targets(anchor_list, valid_list, [gts(GT_BOX)], [meta()], unmap_outputs=False)
    cls_scores, bbox_preds, iou_preds = random_outputs(1)
    with pytest.raises(AssertionError, match='levels'):
        head.loss_by_feat(cls_scores * 2, bbox_preds * 2, iou_preds * 2, [gts(GT_BOX)],
                          [meta()])
    with pytest.raises(AssertionError, match='with_nms'):
        head.predict_by_feat(cls_scores, bbox_preds, iou_preds, batch_img_metas=[meta()],
                             with_nms=False)
    # like scikit-learn, the covariance type is checked when a mixture is fitted
    with pytest.raises(ValueError, match='covariance_type'):
        one_level_head(covariance_type='round').loss_by_feat(
            cls_scores, bbox_preds, iou_preds, [gts(GT_BOX)], [meta()])


def test_loss_overfits_one_image():
    torch.manual_seed(0)
    head = one_level_head()
    head.init_weights()
    feats = (torch.rand(1, 32, 4, 4), )
    optimizer = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    history = []
    for _ in range(20):
        losses = head.loss_by_feat(*head(feats), [gts((2., 2., 14., 18.))], [meta()])
        total = sum(losses.values())
        history.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert history[-1] < 0.7 * history[0]


# ----------------------------------------------------------------------------- predict


def vote(det_box, candidates):
    """Score voting by hand: candidates are (box, score) pairs."""
    num, den = [0.0] * 4, 0.0
    det = torch.tensor([det_box])
    for box, score in candidates:
        iou = box_iou(det, torch.tensor([box])).item()
        if iou <= 0.01:
            continue
        weight = math.exp(-(1 - iou)**2 / 0.025) * score
        num = [n + weight * b for n, b in zip(num, box)]
        den += weight
    return [n / den for n in num]


def test_score_voting_is_a_weighted_average_of_the_candidates():
    head = one_level_head()
    mlvl_bboxes = torch.tensor([[0., 0., 10., 10.], [1., 0., 11., 10.], [0., 0., 10., 12.],
                                [50., 50., 60., 60.], [0., 1., 10., 11.], [20., 20., 30., 30.]])
    # columns: classes 0, 1, 2, background (ignored)
    mlvl_scores = torch.tensor([[0.9, 0.0, 0.0, 0.0], [0.6, 0.0, 0.0, 0.0],
                                [0.3, 0.0, 0.0, 0.0], [0.8, 0.0, 0.0, 0.0],
                                [0.04, 0.0, 0.0, 0.0],  # below score_thr: no vote
                                [0.0, 0.0, 0.7, 0.0]])
    det_bboxes = torch.tensor([[20., 20., 30., 30., 0.7], [0., 0., 10., 10., 0.9],
                               [50., 50., 60., 60., 0.8]])
    det_labels = torch.tensor([2, 0, 0])
    voted, labels = head.score_voting(det_bboxes, det_labels, mlvl_bboxes, mlvl_scores, 0.05)

    candidates0 = [(b, s) for b, s in zip(mlvl_bboxes[:4].tolist(), [0.9, 0.6, 0.3, 0.8])]
    expected = torch.tensor([
        vote([0., 0., 10., 10.], candidates0) + [0.9],
        [50., 50., 60., 60., 0.8],  # its only candidate is itself
        [20., 20., 30., 30., 0.7],
    ])
    # grouped by class, each detection keeps its score
    assert labels.tolist() == [0, 0, 2]
    assert torch.allclose(voted, expected, atol=1e-5)
    assert not torch.allclose(voted[0, :4], det_bboxes[1, :4], atol=1e-2)  # it did move


def predict_outputs():
    """Logits -10 everywhere but: anchor 5 (0, 0, 16, 16) class 0 logit 2, IoU logit 1;
    anchor 6 (8, 0, 24, 16) class 0 logit 0, IoU logit 0, shifted left by 7.2 px to
    (0.8, 0, 16.8, 16); anchor 10 (8, 8, 24, 24) class 1 logit 3, IoU logit 3."""
    cls_scores = torch.full((1, 3, 4, 4), -10.0)
    bbox_preds = torch.zeros(1, 4, 4, 4)
    iou_preds = torch.zeros(1, 1, 4, 4)
    cls_scores[0, 0, 1, 1], iou_preds[0, 0, 1, 1] = 2.0, 1.0
    cls_scores[0, 0, 1, 2], bbox_preds[0, 0, 1, 2] = 0.0, -4.5  # dx * 0.1 * 16 = -7.2
    cls_scores[0, 1, 2, 2], iou_preds[0, 0, 2, 2] = 3.0, 3.0
    return [cls_scores], [bbox_preds], [iou_preds]


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_predict_ranks_by_sqrt_of_class_times_iou_then_votes():
    head = one_level_head().eval()
    score5 = math.sqrt(sig(2.0) * sig(1.0))
    score6 = math.sqrt(sig(0.0) * sig(0.0))
    score10 = math.sqrt(sig(3.0) * sig(3.0))
    # the other anchors score sqrt(sigmoid(-10) * 0.5) < 0.05: not candidates

    # without voting: NMS output, best first; anchor 6 (IoU 0.905 with anchor 5) suppressed
    plain = one_level_head(score_voting=False).eval()
    result = plain.predict_by_feat(*predict_outputs(), batch_img_metas=[meta()])[0]
    assert result.labels.tolist() == [1, 0]
    assert torch.allclose(result.scores, torch.tensor([score10, score5]))
    assert torch.allclose(result.bboxes, torch.tensor([[8., 8., 24., 24.], [0., 0., 16., 16.]]),
                          atol=1e-5)

    # with voting: class by class, anchor 5's box pulled towards anchor 6's
    result = head.predict_by_feat(*predict_outputs(), batch_img_metas=[meta()])[0]
    assert result.labels.tolist() == [0, 1]
    assert torch.allclose(result.scores, torch.tensor([score5, score10]))
    voted = vote([0., 0., 16., 16.], [([0., 0., 16., 16.], score5),
                                      ([0.8, 0., 16.8, 16.], score6)])
    assert torch.allclose(result.bboxes, torch.tensor([voted, [8., 8., 24., 24.]]), atol=1e-4)
    assert result.bboxes[0, 0] > 0.1

    # rescale maps back to the original image
    rescaled = head.predict_by_feat(*predict_outputs(), batch_img_metas=[meta(
        scale_factor=(2.0, 2.0))], rescale=True)[0]
    assert torch.allclose(rescaled.bboxes, result.bboxes / 2, atol=1e-5)


def test_nms_pre_keeps_the_best_sqrt_class_times_iou():
    # anchor 5: class prob sigmoid(2) = 0.88, IoU sigmoid(1) = 0.73, product 0.64;
    # anchor 10: class prob sigmoid(1.5) = 0.82, IoU sigmoid(3) = 0.95, product 0.78.
    # Ranked by the product, nms_pre=1 keeps anchor 10 only.
    head = one_level_head(test_cfg=ConfigDict(TEST_CFG, nms_pre=1)).eval()
    cls_scores, bbox_preds, iou_preds = predict_outputs()
    cls_scores[0][0, 1, 2, 2] = 1.5
    result = head.predict_by_feat(cls_scores, bbox_preds, iou_preds,
                                  batch_img_metas=[meta()])[0]
    assert result.labels.tolist() == [1]
    assert torch.allclose(result.scores, torch.tensor([math.sqrt(sig(1.5) * sig(3.0))]))


def test_predict_without_detections():
    head = one_level_head().eval()
    cls_scores = [torch.full((1, 3, 4, 4), -10.0)]
    result = head.predict_by_feat(cls_scores, [torch.zeros(1, 4, 4, 4)],
                                  [torch.zeros(1, 1, 4, 4)], batch_img_metas=[meta()])[0]
    assert result.bboxes.shape == (0, 4) and result.scores.shape == (0, )
    assert result.labels.shape == (0, ) and result.labels.dtype == torch.long
