"""CenterNetHead (the original CenterNet): defaults and keys, init, the Gaussian helpers,
targets and losses on hand-computed cases, and the heatmap decoding at test time.

The hand cases use a 16x16 map of a 64x64 input (ratio 1/4), 3 classes.
"""
import inspect
import math

import pytest
import torch
from helpers_centernet_autoassign_keys import centernet_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmdet_lite.models.dense_heads import CenterNetHead
from mmdet_lite.models.dense_heads.centernet_head import (gaussian2D, gaussian_radius,
                                                          gen_gaussian_target,
                                                          get_local_maximum)
from mmdet_lite.registry import MODELS

TEST_CFG = ConfigDict(topk=2, local_maximum_kernel=3, max_per_img=100,
                      nms=dict(type='nms', iou_threshold=0.5))
E2, E4 = math.exp(-2), math.exp(-4)  # radius-1 Gaussian (sigma 1/2) at distance 1, sqrt 2


def make_head(**kwargs) -> CenterNetHead:
    cfg = dict(type='CenterNetHead', in_channels=8, feat_channels=8, num_classes=3,
               test_cfg=TEST_CFG)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_registered_with_mmdetection_defaults():
    assert MODELS.get('CenterNetHead') is CenterNetHead
    params = inspect.signature(CenterNetHead.__init__).parameters
    assert list(params) == ['self', 'in_channels', 'feat_channels', 'num_classes',
                            'loss_center_heatmap', 'loss_wh', 'loss_offset', 'train_cfg',
                            'test_cfg', 'init_cfg']
    defaults = {name: p.default for name, p in params.items()}
    assert defaults['loss_center_heatmap'] == dict(type='GaussianFocalLoss', loss_weight=1.0)
    assert defaults['loss_wh'] == dict(type='L1Loss', loss_weight=0.1)
    assert defaults['loss_offset'] == dict(type='L1Loss', loss_weight=1.0)
    assert defaults['train_cfg'] is None and defaults['test_cfg'] is None
    assert defaults['init_cfg'] is None


def test_state_dict_keys_and_shapes_match_mmdetection():
    head = CenterNetHead(in_channels=64, feat_channels=64, num_classes=80)
    assert shapes_of(head) == centernet_head('', num_classes=80)


def test_init_weights_sets_the_heatmap_prior_and_ignores_init_cfg():
    head = make_head(init_cfg=dict(type='Constant', layer='Conv2d', val=5.))
    head.init_weights()
    assert torch.allclose(head.heatmap_head[2].bias, torch.full((3, ), math.log(0.1 / 0.9)))
    assert not torch.any(head.heatmap_head[0].weight == 5.)  # init_cfg not applied
    for branch in (head.wh_head, head.offset_head):
        assert torch.all(branch[0].bias == 0) and torch.all(branch[2].bias == 0)
        assert branch[0].weight.std().item() < 0.01


def test_forward_gives_probabilities_sizes_and_offsets():
    heatmaps, whs, offsets = make_head()((torch.rand(2, 8, 16, 16), ))
    assert len(heatmaps) == len(whs) == len(offsets) == 1
    assert heatmaps[0].shape == (2, 3, 16, 16) and whs[0].shape == offsets[0].shape == (
        2, 2, 16, 16)
    assert torch.all((heatmaps[0] > 0) & (heatmaps[0] < 1))


# ----------------------------------------------------------------------------- Gaussian helpers


def test_gaussian_radius_keeps_the_iou_of_both_corners_moved_inside():
    # For a 10x10 box and IoU 0.3 the tightest case moves both corners inward by r:
    # (10 - 2r)**2 / 100 = 0.3.
    assert gaussian_radius((10., 10.), 0.3) == pytest.approx((10 - math.sqrt(30)) / 2)


def test_gaussian_kernels():
    kernel = gaussian2D(1, sigma=1)
    torch.testing.assert_close(kernel, torch.tensor([
        [math.exp(-1), math.exp(-0.5), math.exp(-1)],
        [math.exp(-0.5), 1., math.exp(-0.5)],
        [math.exp(-1), math.exp(-0.5), math.exp(-1)]]))
    heatmap = torch.zeros(4, 4)
    heatmap[1, 1] = 0.5
    gen_gaussian_target(heatmap, [0, 0], 1)  # sigma = 3 / 6, clipped at the map's corner
    expected = torch.zeros(4, 4)
    expected[:2, :2] = torch.tensor([[1., E2], [E2, 0.5]])  # max(0.5, exp(-4))
    torch.testing.assert_close(heatmap, expected)


def test_local_maximum_keeps_only_peaks():
    heat = torch.zeros(1, 1, 3, 5)
    heat[0, 0, 1, 1], heat[0, 0, 1, 2], heat[0, 0, 0, 4] = 0.9, 0.8, 0.3
    kept = get_local_maximum(heat)
    # (1, 2) has the larger (1, 1) next to it; (0, 4) is two cells away from both.
    assert kept[0, 0].nonzero().tolist() == [[0, 4], [1, 1]]
    assert kept[0, 0, 0, 4] == 0.3


# ----------------------------------------------------------------------------- targets, losses

# Box (9, 8, 42, 24) of class 1: on the map centre (6.375, 4), size (8.25, 4); the Gaussian
# radius int(1.16) = 1 (both corners inside: (8.25 - 2r)(4 - 2r) = 0.3 * 33).
BOX = dict(bboxes=torch.tensor([[9., 8., 42., 24.]]), labels=torch.tensor([1]))


def test_targets_by_hand():
    head = make_head()
    targets, avg_factor = head.get_targets([BOX['bboxes']], [BOX['labels']], (1, 3, 16, 16),
                                           (64, 64))
    heatmap = targets['center_heatmap_target'][0]
    expected = torch.zeros(3, 16, 16)
    expected[1, 3:6, 5:8] = torch.tensor([[E4, E2, E4], [E2, 1., E2], [E4, E2, E4]])
    torch.testing.assert_close(heatmap, expected)
    assert avg_factor == 1
    assert targets['wh_target'][0, :, 4, 6].tolist() == [8.25, 4.0]
    assert targets['offset_target'][0, :, 4, 6].tolist() == [0.375, 0.0]
    weight = targets['wh_offset_target_weight'][0]
    assert weight.sum() == 2 and torch.all(weight[:, 4, 6] == 1)


def test_losses_by_hand():
    head = make_head()
    heat = torch.full((1, 3, 16, 16), 0.5)
    losses = head.loss_by_feat([heat], [torch.zeros(1, 2, 16, 16)],
                               [torch.zeros(1, 2, 16, 16)], [InstanceData(**BOX)],
                               [dict(batch_input_shape=(64, 64))])
    # focal: -log(0.5) * 0.5**2 at the peak; -log(0.5) * 0.5**2 * (1 - t)**4 elsewhere.
    neg = 2 * 256 + (256 - 9) + 4 * (1 - E2)**4 + 4 * (1 - E4)**4
    assert losses['loss_center_heatmap'].item() == pytest.approx(
        math.log(2) * 0.25 * (1 + neg), rel=1e-5)
    # L1 at the peak cell over 2 * peaks, times 0.1 for the size.
    assert losses['loss_wh'].item() == pytest.approx(0.1 * (8.25 + 4) / 2)
    assert losses['loss_offset'].item() == pytest.approx(0.375 / 2)


def test_losses_need_exactly_one_map():
    head = make_head()
    maps = [torch.zeros(1, 3, 16, 16)] * 2
    with pytest.raises(AssertionError, match='one map'):
        head.loss_by_feat(maps, maps, maps, [InstanceData(**BOX)],
                          [dict(batch_input_shape=(64, 64))])


# ----------------------------------------------------------------------------- predict


def predict(head, **kwargs):
    heat = torch.zeros(1, 3, 16, 16)
    heat[0, 2, 4, 6], heat[0, 2, 4, 7], heat[0, 0, 10, 3] = 0.9, 0.8, 0.7
    wh, offset = torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16)
    wh[0, :, 4, 6] = torch.tensor([8., 4.])
    offset[0, :, 4, 6] = torch.tensor([0.5, 0.25])
    wh[0, :, 10, 3] = torch.tensor([2., 2.])
    # A weaker class-2 peak whose box (14, 8, 46, 24) overlaps the first (IoU 0.70).
    heat[0, 2, 4, 9] = 0.6
    wh[0, :, 4, 9] = torch.tensor([8., 4.])
    offset[0, :, 4, 9] = torch.tensor([-1.5, 0.])
    meta = dict(batch_input_shape=(64, 64), border=(2, 62, 6, 58), scale_factor=(2., 0.5))
    return head.predict_by_feat([heat], [wh], [offset], batch_img_metas=[meta], **kwargs)[0]


def test_predictions_decode_the_topk_local_maxima_by_hand():
    result = predict(make_head())
    # (4, 7) is suppressed by its neighbour; topk = 2.
    assert result.scores.tolist() == pytest.approx([0.9, 0.7])
    assert result.labels.tolist() == [2, 0]
    # ((6.5 -+ 4) * 4, (4.25 -+ 2) * 4) = (10, 9, 42, 25); minus the border (6, 2);
    # divided by the scale factor (2, 0.5).
    torch.testing.assert_close(result.bboxes[0], torch.tensor([2., 14., 18., 46.]))
    # (3 -+ 1) * 4, (10 -+ 1) * 4 -> (8, 36, 16, 44) - (6, 2) -> (2, 34, 10, 42), rescaled
    torch.testing.assert_close(result.bboxes[1], torch.tensor([1., 68., 5., 84.]))
    unscaled = predict(make_head(), rescale=False)
    torch.testing.assert_close(unscaled.bboxes[0], torch.tensor([4., 7., 36., 23.]))


def test_predictions_with_nms_drop_overlapping_boxes_of_a_class():
    head = make_head(test_cfg=ConfigDict(TEST_CFG, topk=3))
    assert predict(head).scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    result = predict(head, with_nms=True)
    assert result.scores.tolist() == pytest.approx([0.9, 0.7])
    assert result.labels.tolist() == [2, 0]
    head.test_cfg.max_per_img = 1
    result = predict(head, with_nms=True)
    assert result.scores.tolist() == pytest.approx([0.9]) and result.labels.tolist() == [2]
