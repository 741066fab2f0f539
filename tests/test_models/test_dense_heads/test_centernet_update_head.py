"""CenterNetUpdateHead: defaults and keys, forward, heatmap / box targets against hand-computed
cases (Gaussian with a minimum radius, level assignment, nearest box), the extra heatmap
positives of the 3x3 centre cells, the losses on hand-computed cases and predictions.

The hand cases use two levels (strides 8 and 16) of a 32x32 image: level 0 has points
x, y in {4, 12, 20, 28}, level 1 x, y in {8, 24}.
"""
import inspect
import math

import pytest
import torch
from helpers_centernet_autoassign_keys import centernet_update_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import AnchorFreeHead, CenterNetUpdateHead
from mmdet_lite.registry import MODELS

INF = 1000000000
TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                nms=dict(type='nms', iou_threshold=0.6), max_per_img=100)
SIZES = [(4, 4), (2, 2)]  # (h, w) of the two levels of a 32x32 image


def make_head(**kwargs) -> CenterNetUpdateHead:
    """Two classes, 8 channels, one conv per tower, GN of 4 groups, strides 8 and 16."""
    cfg = dict(type='CenterNetUpdateHead', num_classes=2, in_channels=8, feat_channels=8,
               stacked_convs=1, strides=[8, 16], regress_ranges=((0, 80), (64, INF)),
               norm_cfg=dict(type='GN', num_groups=4), test_cfg=ConfigDict(TEST_CFG))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def gts(bboxes, labels) -> InstanceData:
    return InstanceData(bboxes=torch.tensor(bboxes, dtype=torch.float32).reshape(-1, 4),
                        labels=torch.tensor(labels, dtype=torch.long))


def targets(head, *batch):
    points = head.prior_generator.grid_priors(SIZES)
    return head.get_targets(points, list(batch))


# Box A = (4, 4, 20, 28), class 1: centre (12, 16), area 384, so 2 * delta**2 * area
# = 2 * 384 / 81 = 9.5 < hm_min_radius**2 = 16 and the Gaussian divides d2 by 16. Its
# centre falls in level-0 cell (1, 2) (point (12, 20)) and level-1 cell (0, 1) (point (8, 24)),
# the heatmap peaks (1). Level-0 values exp(-d2 / 16), d2 to (12, 16); None: below 1e-4 -> 0.
BOX_A = ([[4, 4, 20, 28]], [1])
A_LEVEL0 = [  # rows y = 4, 12, 20, 28; columns x = 4, 12, 20, 28
    [None, 144, None, None],   # d2 = 208, 144, 208, 400
    [80, 16, 80, None],        # 272 -> 17 -> 4e-8
    [80, 'peak', 80, None],
    [None, 144, None, None],
]
A_LEVEL1 = [[80, None], ['peak', None]]  # (8, 8) d2 = 80; (24, *) d2 >= 208


def expected_heat(table):
    return torch.tensor([0. if d is None else 1. if d == 'peak' else math.exp(-d / 16)
                         for row in table for d in row])


# ----------------------------------------------------------------------------- layers


def test_registered_with_mmdetection_defaults():
    assert MODELS.get('CenterNetUpdateHead') is CenterNetUpdateHead
    assert issubclass(CenterNetUpdateHead, AnchorFreeHead)
    params = inspect.signature(CenterNetUpdateHead.__init__).parameters
    assert list(params) == [
        'self', 'num_classes', 'in_channels', 'regress_ranges', 'hm_min_radius',
        'hm_min_overlap', 'more_pos_thresh', 'more_pos_topk', 'soft_weight_on_reg',
        'loss_cls', 'loss_bbox', 'norm_cfg', 'train_cfg', 'test_cfg', 'kwargs']
    defaults = {name: p.default for name, p in params.items()}
    assert defaults['regress_ranges'] == ((0, 80), (64, 160), (128, 320), (256, 640),
                                          (512, 1000000000))
    assert defaults['hm_min_radius'] == 4 and defaults['hm_min_overlap'] == 0.8
    assert defaults['more_pos_thresh'] == 0.2 and defaults['more_pos_topk'] == 9
    assert defaults['soft_weight_on_reg'] is False
    assert defaults['loss_cls'] == dict(type='GaussianFocalLoss', pos_weight=0.25,
                                        neg_weight=0.75, loss_weight=1.0)
    assert defaults['loss_bbox'] == dict(type='GIoULoss', loss_weight=2.0)
    assert defaults['norm_cfg'] == dict(type='GN', num_groups=32, requires_grad=True)
    assert defaults['train_cfg'] is None and defaults['test_cfg'] is None


def test_state_dict_keys_and_shapes_match_mmdetection():
    head = CenterNetUpdateHead(num_classes=80, in_channels=256)
    assert shapes_of(head) == centernet_update_head('', num_classes=80)
    # Sigmoid scores without a background column, although the loss has no use_sigmoid.
    assert head.use_sigmoid_cls and head.cls_out_channels == 80
    assert head.delta == pytest.approx(0.2 / 1.8) and head.sigmoid_clamp == 1e-4
    assert head.strides == (4, 8, 16, 32, 64) and len(head.scales) == 5  # AnchorFreeHead's


def test_forward_distances_in_strides_for_training_and_pixels_for_testing():
    head = make_head()
    with torch.no_grad():
        head.conv_reg.weight.zero_()
        head.conv_reg.bias.copy_(torch.tensor([-1., 0.5, 2., 3.]))
        head.scales[1].scale.fill_(2.)
    feats = (torch.rand(2, 8, 4, 4), torch.rand(2, 8, 2, 2))
    cls_scores, bbox_preds = head(feats)
    assert [tuple(c.shape) for c in cls_scores] == [(2, 2, 4, 4), (2, 2, 2, 2)]
    # clamp(scale * x, 0): the negative distance becomes 0
    assert torch.equal(bbox_preds[0][0, :, 1, 1], torch.tensor([0., 0.5, 2., 3.]))
    assert torch.equal(bbox_preds[1][1, :, 0, 1], torch.tensor([0., 1., 4., 6.]))
    head.eval()
    _, bbox_preds = head(feats)
    assert torch.equal(bbox_preds[0][0, :, 1, 1], torch.tensor([0., 4., 16., 24.]))
    assert torch.equal(bbox_preds[1][1, :, 0, 1], torch.tensor([0., 16., 64., 96.]))


# ----------------------------------------------------------------------------- targets


def test_heatmap_is_a_gaussian_with_the_minimum_radius_peaking_at_the_centre_cells():
    heat, _ = targets(make_head(), gts(*BOX_A))
    assert heat.shape == (16 + 4, 2)
    assert torch.all(heat[:, 0] == 0)  # no box of class 0
    torch.testing.assert_close(heat[:16, 1], expected_heat(A_LEVEL0))
    torch.testing.assert_close(heat[16:, 1], expected_heat(A_LEVEL1))


def test_a_larger_minimum_radius_widens_the_gaussian():
    heat, _ = targets(make_head(hm_min_radius=8), gts(*BOX_A))
    assert heat[5, 1].item() == pytest.approx(math.exp(-16 / 64))  # point (12, 12)


def test_box_points_are_inside_near_the_centre_cell_and_on_a_fitting_level():
    _, bbox_targets = targets(make_head(), gts(*BOX_A))
    # Half the diagonal, sqrt(16**2 + 24**2) / 2 = 14.4, is only in level 0's (0, 80).
    # Level 0: within 8 px of the centre cell's point (12, 20) and strictly inside the box:
    # (12, 12) and (12, 20); (4, *), (20, *) and (*, 28) lie on the box border.
    positive = bbox_targets.max(dim=1)[0] >= 0
    assert positive.nonzero().flatten().tolist() == [5, 9]
    # (left, top, right, bottom) in strides
    assert torch.equal(bbox_targets[5], torch.tensor([8., 8., 8., 16.]) / 8)
    assert torch.equal(bbox_targets[9], torch.tensor([8., 16., 8., 8.]) / 8)
    assert torch.all(bbox_targets[~positive][:16 - 2] == -INF / 8)
    assert torch.all(bbox_targets[16:] == -INF / 16)


def test_a_point_takes_the_nearest_box_in_gaussian_units_and_the_heatmap_the_highest():
    # Both class 0 with centre (16, 16). Big: 2 * 1024 / 81 = 25.3 > 16; small: 16.
    big, small = [0, 0, 32, 32], [8, 8, 24, 24]
    heat, bbox_targets = targets(make_head(), gts([small, big], [0, 0]))
    # (12, 12): d2 = 32, 32 / 25.3 for the big box < 32 / 16 for the small one, so the point
    # regresses the big box although the small one has the smaller area (unlike FCOS).
    assert torch.equal(bbox_targets[5], torch.tensor([12., 12., 20., 20.]) / 8)
    assert heat[5, 0].item() == pytest.approx(math.exp(-32 * 81 / 2048))
    # (28, 12): d2 = 160; the big box's value is the larger one.
    assert heat[7, 0].item() == pytest.approx(math.exp(-160 * 81 / 2048))


def test_targets_are_level_major_then_image_and_an_empty_image_keeps_mmdetections_quirk():
    heat, bbox_targets = targets(make_head(), gts(*BOX_A), gts([], []))
    assert heat.shape == (2 * 16 + 2 * 4, 2) and heat.dtype == torch.float32
    torch.testing.assert_close(heat[:16, 1], expected_heat(A_LEVEL0))
    torch.testing.assert_close(heat[32:36, 1], expected_heat(A_LEVEL1))
    # mmdetection fills an empty image's heatmap with num_classes (not 0) and its boxes -1.
    assert torch.all(heat[16:32] == 2) and torch.all(heat[36:] == 2)
    assert torch.all(bbox_targets[16:32] == -1) and torch.all(bbox_targets[36:] == -1)


def test_regress_ranges_must_match_the_levels():
    head = make_head(regress_ranges=((0, 80), (64, 160), (128, INF)))
    with pytest.raises(AssertionError, match='regress_ranges'):
        targets(head, gts(*BOX_A))


# ----------------------------------------------------------------------------- extra positives


def box_a_preds(good_cells=()):
    """Flat stride-unit predictions of the one-image batch, zero except at the level-0 cells
    listed (ix, iy), which predict box A exactly."""
    points = torch.cat(make_head().prior_generator.grid_priors(SIZES))
    preds = torch.zeros(20, 4)
    for ix, iy in good_cells:
        x, y = points[iy * 4 + ix]
        preds[iy * 4 + ix] = torch.tensor([x - 4, y - 4, 20 - x, 28 - y]) / 8
    return points, preds


def cls_positives(head, good_cells=()):
    points, preds = box_a_preds(good_cells)
    return head.add_cls_pos_inds(points, preds, points.new_tensor(SIZES), [gts(*BOX_A)])


def test_the_centre_cell_of_a_fitting_level_is_always_a_heatmap_positive():
    # Zero distances give a point box: GIoU loss 1 > 0.2 everywhere but the forced centre.
    pos_inds, pos_labels = cls_positives(make_head())
    assert pos_inds.tolist() == [9] and pos_labels.tolist() == [1]


def test_cells_predicting_the_box_well_become_positives_up_to_the_kth_loss():
    good = [(0, 1), (2, 1), (1, 3)]  # points (4, 12), (20, 12), (12, 28): loss 0
    pos_inds, pos_labels = cls_positives(make_head(), good)
    # Candidates: 9 level-0 cells (losses 0 x 4 with the centre, 1 x 5) and the 2 valid
    # level-1 cells (1 each); the 9th smallest is 1, so the threshold is 0.2.
    assert sorted(pos_inds.tolist()) == [4, 6, 9, 13] and pos_labels.tolist() == [1] * 4
    # With k = 3 the 3rd smallest is 0 and nothing is strictly below it.
    pos_inds, _ = cls_positives(make_head(more_pos_topk=3), good)
    assert pos_inds.tolist() == []


def test_no_heatmap_positives_without_objects():
    head = make_head()
    points, preds = box_a_preds()
    assert head.add_cls_pos_inds(points, preds, points.new_tensor(SIZES),
                                 [gts([], [])]) == (None, None)


# ----------------------------------------------------------------------------- losses


def level_maps(flat: torch.Tensor):
    """Flat one-image rows [20, C] -> per level [1, C, h, w]."""
    return [flat[:16].T.reshape(1, -1, 4, 4), flat[16:].T.reshape(1, -1, 2, 2)]


@pytest.mark.parametrize('soft, expected_bbox', [(False, 2.0 * 1 / 2),
                                                 (True, 2.0 * math.exp(-1) / (1 + math.exp(-1)))])
def test_losses_on_a_hand_computed_case(soft, expected_bbox):
    head = make_head(soft_weight_on_reg=soft)
    _, preds = box_a_preds(good_cells=[(1, 2)])  # the centre cell exact, the rest zero
    cls_scores = level_maps(torch.zeros(20, 2))  # every probability 0.5
    losses = head.loss_by_feat(cls_scores, level_maps(preds), [gts(*BOX_A)],
                               [dict(img_shape=(32, 32))])
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    # Box positives (12, 20) (loss 0, heatmap 1) and (12, 12) (point box: loss 1, heatmap
    # exp(-1)); mean, or heatmap-weighted mean, times loss_weight 2.
    assert losses['loss_bbox'].item() == pytest.approx(expected_bbox, rel=1e-5)
    # One heatmap positive (the centre cell); every location and class a negative weighted
    # by (1 - heat)**4; -log(0.5) * 0.5**2 each; pos_weight 0.25, neg_weight 0.75.
    heat = torch.cat([expected_heat(A_LEVEL0), expected_heat(A_LEVEL1)])
    neg_sum = 20 + ((1 - heat)**4).sum().item()  # class 0 has no box: weight 1
    expected_cls = math.log(2) * 0.25 * (0.25 + 0.75 * neg_sum)
    assert losses['loss_cls'].item() == pytest.approx(expected_cls, rel=1e-5)


def test_without_objects_the_box_loss_is_zero_and_grads_flow():
    head = make_head()
    cls_scores = [s.requires_grad_() for s in level_maps(torch.zeros(20, 2))]
    bbox_preds = [p.requires_grad_() for p in level_maps(torch.rand(20, 4))]
    losses = head.loss_by_feat(cls_scores, bbox_preds, [gts([], [])],
                               [dict(img_shape=(32, 32))])
    assert losses['loss_bbox'].item() == 0
    # mmdetection's integer heatmap of num_classes = 2: (1 - 2)**4 = 1 on every negative.
    assert losses['loss_cls'].item() == pytest.approx(0.75 * 0.25 * math.log(2) * 40, rel=1e-5)
    sum(losses.values()).backward()
    assert all(t.grad is not None for t in cls_scores + bbox_preds)


def test_non_finite_box_predictions_are_rejected():
    head = make_head()
    preds = torch.zeros(20, 4)
    preds[3, 0] = float('inf')
    with pytest.raises(AssertionError, match='finite'):
        head.loss_by_feat(level_maps(torch.zeros(20, 2)), level_maps(preds),
                          [gts(*BOX_A)], [dict(img_shape=(32, 32))])


def test_loss_through_the_head_decreases_on_a_tiny_overfit():
    torch.manual_seed(0)
    head = make_head()
    head.init_weights()
    feats = (torch.rand(1, 8, 4, 4), torch.rand(1, 8, 2, 2))
    batch = [gts(*BOX_A)]
    optim = torch.optim.SGD(head.parameters(), lr=0.02, momentum=0.9)
    history = []
    for _ in range(30):
        losses = head.loss_by_feat(*head(feats), batch, [dict(img_shape=(32, 32))])
        loss = sum(losses.values())
        history.append(loss.item())
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert history[-1] < 0.5 * history[0]


# ----------------------------------------------------------------------------- predict


def test_predictions_are_sigmoid_scores_with_boxes_decoded_around_the_points():
    head = make_head().eval()
    cls = torch.full((20, 2), -10.)
    cls[9, 1] = 10.  # point (12, 20), class 1
    dists = torch.zeros(20, 4)
    dists[9] = torch.tensor([8., 16., 8., 8.])  # pixels (eval mode)
    meta = dict(img_shape=(32, 32), scale_factor=(1., 1.))
    result, = head.predict_by_feat(level_maps(cls), level_maps(dists), batch_img_metas=[meta],
                                   cfg=ConfigDict(TEST_CFG), rescale=False)
    assert len(result) == 1 and result.labels.tolist() == [1]
    assert result.scores.item() == pytest.approx(torch.sigmoid(torch.tensor(10.)).item())
    assert torch.equal(result.bboxes, torch.tensor([[4., 4., 20., 28.]]))
