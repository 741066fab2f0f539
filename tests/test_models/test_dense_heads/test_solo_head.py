"""SOLO heads (SOLOHead, DecoupledSOLOHead, DecoupledSOLOLightHead): CoordConv inputs, target
assignment, losses and predictions against hand-computed values.

Setup: a 64 x 64 input, P2-P6 maps of 16, 8, 4, 2, 1 pixels, ``strides`` [8, 8, 16, 32, 32]
and grids [8, 6, 4, 3, 2]. The head halves P2 and brings P6 to P5's size, and its mask
predictions are twice the level size: 16, 16, 8, 4, 4 pixels. The grid divides 4 x the first
level's mask size, i.e. the 64-pixel input.

Hand-computed targets (``pos_scale`` 0.2; a cell is trunc(coordinate / 64 * S)):

- gt 1, label 2: mask rows 16-31 x cols 8-39, box (8, 16, 40, 32), sqrt(area) 22.6: levels 0
  and 1 (ranges (1, 24) and (16, 48)). Centroid (23.5, 23.5), centre region +-1.6 rows,
  +-3.2 cols. Level 0 (S 8): rows trunc(21.9 / 8)..trunc(25.1 / 8) = 2..3, cols
  trunc(20.3 / 8)..trunc(26.7 / 8) = 2..3 -> cells 18, 19, 26, 27. Level 1 (S 6): rows
  2..2, cols 1..2 -> cells 13, 14. Mask target at stride 4: each target pixel blends input
  pixels 4r+1, 4r+2 -> rows 4-7, cols 2-9 of 16 x 16.
- gt 2, label 1: an L (cols 0-15 of every row, plus rows 48-63), box (0, 0, 64, 64), sqrt
  64: levels 2 and 3 (both bounds inclusive). Centroid: rows (31.5 * 1024 + 55.5 * 768) /
  1792 = 41.786, cols (7.5 * 1024 + 39.5 * 768) / 1792 = 21.214; region +-6.4. Level 2 (S 4,
  16-px cells): centre cell (2, 1), rows 2..3, cols 0..1 -> cells 8, 9, 12, 13. Level 3 (S 3):
  centre (1, 0), rows 1..2, cols 0..1 -> cells 3, 4, 6, 7. Targets: at stride 8 (pixels 8r+3,
  8r+4) cols 0-1 and rows 6-7 of 8 x 8; at stride 16 (pixels 16r+7, 16r+8) col 0 and row 3 of
  4 x 4.
"""
import inspect

import mmcv
import numpy as np
import pytest
import torch
from helpers import init_weights_quietly
from helpers_solo_keys import decoupled_solo_head, decoupled_solo_light_head, solo_head
from helpers_state_dict import shapes_of
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torchvision.ops import sigmoid_focal_loss

from mmdet_lite.models.dense_heads import (BaseMaskHead, DecoupledSOLOHead,
                                           DecoupledSOLOLightHead, SOLOHead)
from mmdet_lite.models.dense_heads import solo_head as solo_module
from mmdet_lite.models.layers.solo_grid import (center_of_mass, center_region_cells,
                                                generate_coordinate, keep_local_maxima,
                                                rescale_masks)
from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.mask import BitmapMasks
from mmdet_lite.utils import register_all_modules

register_all_modules()

GRIDS = [8, 6, 4, 3, 2]
GN4 = dict(type='GN', num_groups=4, requires_grad=True)
TEST_CFG = dict(nms_pre=500, score_thr=0.1, mask_thr=0.5, filter_thr=0.05, kernel='gaussian',
                sigma=2.0, max_per_img=100)
SMALL = dict(num_classes=3, in_channels=8, feat_channels=16, stacked_convs=2,
             strides=[8, 8, 16, 32, 32],
             scale_ranges=((1, 24), (16, 48), (32, 96), (64, 192), (128, 512)),
             num_grids=GRIDS, norm_cfg=GN4)
PROB_DICE = dict(type='DiceLoss', use_sigmoid=True, activate=False, loss_weight=3.0)


def make_head(head_type: str = 'SOLOHead', **kwargs):
    cfg = dict(type=head_type, **SMALL, test_cfg=ConfigDict(TEST_CFG))
    if head_type.startswith('Decoupled'):
        cfg['loss_mask'] = PROB_DICE  # the decoupled configs' loss on probabilities
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    init_weights_quietly(head)
    return head


def make_feats(batch: int = 1):
    return tuple(torch.randn(batch, 8, 16 // 2**i, 16 // 2**i) for i in range(5))


def two_gts() -> InstanceData:
    masks = np.zeros((2, 64, 64), dtype=np.uint8)
    masks[0, 16:32, 8:40] = 1
    masks[1, :, 0:16] = 1
    masks[1, 48:64, :] = 1
    return InstanceData(bboxes=torch.tensor([[8., 16., 40., 32.], [0., 0., 64., 64.]]),
                        labels=torch.tensor([2, 1]), masks=BitmapMasks(masks, 64, 64))


def meta(img_shape=(64, 64), ori_shape=(64, 64)) -> dict:
    return dict(img_shape=img_shape, ori_shape=ori_shape, pad_shape=(64, 64),
                batch_input_shape=(64, 64), scale_factor=(1., 1.))


TRAIN_SIZES = [torch.Size([16, 16]), torch.Size([16, 16]), torch.Size([8, 8]),
               torch.Size([4, 4]), torch.Size([4, 4])]
RECT_TARGET = torch.zeros(16, 16, dtype=torch.uint8)
RECT_TARGET[4:8, 2:10] = 1
L8_TARGET = torch.zeros(8, 8, dtype=torch.uint8)
L8_TARGET[:, 0:2] = 1
L8_TARGET[6:8, :] = 1
L4_TARGET = torch.zeros(4, 4, dtype=torch.uint8)
L4_TARGET[:, 0] = 1
L4_TARGET[3, :] = 1
# level -> (positive cells, label, mask target)
EXPECTED = {0: ([18, 19, 26, 27], 2, RECT_TARGET), 1: ([13, 14], 2, RECT_TARGET),
            2: ([8, 9, 12, 13], 1, L8_TARGET), 3: ([3, 4, 6, 7], 1, L4_TARGET),
            4: ([], None, None)}


# ----------------------------------------------------------------------------- helpers
def test_generate_coordinate_gives_x_then_y_in_minus_one_to_one():
    coord = generate_coordinate((2, 7, 3, 5), 'cpu')
    assert coord.shape == (2, 2, 3, 5)
    assert torch.allclose(coord[1, 0], torch.linspace(-1, 1, 5).expand(3, 5))
    assert torch.allclose(coord[1, 1], torch.linspace(-1, 1, 3)[:, None].expand(3, 5))


def test_center_of_mass_of_an_l_shape():
    mask = torch.from_numpy(two_gts().masks.masks[1]).bool()
    center_h, center_w = center_of_mass(mask)
    assert center_h.item() == pytest.approx(74880 / 1792)
    assert center_w.item() == pytest.approx(38016 / 1792)
    assert [v.item() for v in center_of_mass(torch.zeros(4, 4, dtype=torch.bool))] == [0, 0]


def test_center_region_is_capped_to_the_3x3_cells_around_the_centre():
    # A region spanning the whole 8-cell grid is cut to the centre cell (4, 4) +- 1.
    assert center_region_cells(torch.tensor(32.), torch.tensor(32.), torch.tensor(30.),
                               torch.tensor(30.), (64, 64), 8) == (3, 5, 3, 5)
    # A tiny region is one cell; near the border it is clamped to the grid.
    assert center_region_cells(torch.tensor(1.), torch.tensor(63.), torch.tensor(0.5),
                               torch.tensor(0.5), (64, 64), 8) == (0, 0, 7, 7)


@pytest.mark.parametrize('scale', [1 / 2, 1 / 4, 1 / 8, 1 / 16])
def test_rescale_masks_equals_mmcv_imrescale_on_padded_masks(scale):
    # cv2's bilinear filter is an independent implementation; padded masks are multiples
    # of 32 (here 64 x 96).
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(4, 64, 96, generator=generator) > 0.5
    masks[0] = False
    masks[1, 10:40, 5:70] = True
    ours = rescale_masks(masks, scale)
    expected = np.stack([mmcv.imrescale(m.numpy().astype(np.uint8), scale) for m in masks])
    assert ours.dtype == torch.uint8 and ours.shape == expected.shape
    assert np.array_equal(ours.numpy(), expected)


def test_keep_local_maxima_compares_with_the_cells_above_and_left():
    scores = torch.tensor([[[[0.1, 0.5], [0.4, 0.3]]]])
    assert torch.equal(keep_local_maxima(scores),
                       torch.tensor([[[[0.1, 0.5], [0.4, 0.0]]]]))


# ----------------------------------------------------------------------------- structure
def test_solo_head_signature_defaults_are_mmdetections():
    assert issubclass(SOLOHead, BaseMaskHead) and MODELS.get('SOLOHead') is SOLOHead
    params = inspect.signature(SOLOHead.__init__).parameters
    defaults = {k: p.default for k, p in params.items() if k not in ('self', 'num_classes',
                                                                      'in_channels')}
    assert defaults == dict(
        feat_channels=256, stacked_convs=4, strides=(4, 8, 16, 32, 64),
        scale_ranges=((8, 32), (16, 64), (32, 128), (64, 256), (128, 512)), pos_scale=0.2,
        num_grids=[40, 36, 24, 16, 12], cls_down_index=0,
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                      loss_weight=1.0),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True), train_cfg=None,
        test_cfg=None,
        init_cfg=[dict(type='Normal', layer='Conv2d', std=0.01),
                  dict(type='Normal', std=0.01, bias_prob=0.01,
                       override=dict(name='conv_mask_list')),
                  dict(type='Normal', std=0.01, bias_prob=0.01,
                       override=dict(name='conv_cls'))])
    # mmdetection defines the decoupled heads in solo_head.py.
    assert solo_module.DecoupledSOLOHead is DecoupledSOLOHead
    assert solo_module.DecoupledSOLOLightHead is DecoupledSOLOLightHead
    assert issubclass(DecoupledSOLOLightHead, DecoupledSOLOHead)


@pytest.mark.parametrize('head_type, builder', [
    ('SOLOHead', solo_head), ('DecoupledSOLOHead', decoupled_solo_head),
    ('DecoupledSOLOLightHead', decoupled_solo_light_head)])
def test_state_dict_keys_and_shapes(head_type, builder):
    head = make_head(head_type)
    assert shapes_of(head) == builder('', num_classes=3, in_channels=8, feat_channels=16,
                                      stacked_convs=2, num_grids=GRIDS)


def test_mismatched_level_arguments_raise():
    with pytest.raises(AssertionError, match='one entry per level'):
        make_head(num_grids=[8, 6, 4])
    with pytest.raises(AssertionError, match='expects 5 feature levels'):
        make_head()(make_feats()[:4])


@pytest.mark.parametrize('head_type, first_convs, extra', [
    ('SOLOHead', ['mask_convs'], [0, 1]),
    ('DecoupledSOLOHead', ['mask_convs_x', 'mask_convs_y'], None),
    ('DecoupledSOLOLightHead', ['mask_convs'], [0, 1])])
def test_mask_towers_read_coordinate_channels(head_type, first_convs, extra):
    head = make_head(head_type)
    assert head.cls_convs[0].conv.in_channels == 8
    seen = {}

    def remember(name):
        def hook(module, inputs):
            seen.setdefault(name, inputs[0])  # level 0 comes first
        return hook

    for name in first_convs:
        getattr(head, name)[0].register_forward_pre_hook(remember(name))
    head(make_feats(2))
    coord = generate_coordinate((2, 8, 8, 8), 'cpu')  # level 0: 8 x 8
    for name in first_convs:
        conv = getattr(head, name)[0]
        if extra is None:  # decoupled: x reads the x channel, y the y channel
            axis = 0 if name.endswith('x') else 1
            assert conv.conv.in_channels == 9
            assert torch.equal(seen[name][:, 8:], coord[:, axis:axis + 1])
        else:
            assert conv.conv.in_channels == 10
            assert torch.equal(seen[name][:, 8:], coord)


# ----------------------------------------------------------------------------- forward
def test_forward_shapes_in_train_and_eval_mode():
    head = make_head()
    feats = make_feats(2)
    mask_preds, cls_preds = head(feats)
    assert [tuple(m.shape) for m in mask_preds] == [
        (2, g**2, s, s) for g, s in zip(GRIDS, [16, 16, 8, 4, 4])]
    assert [tuple(c.shape) for c in cls_preds] == [(2, 3, g, g) for g in GRIDS]
    head.eval()
    with torch.no_grad():
        mask_probs, cls_scores = head(feats)
    # All levels at the first level's mask size, as probabilities; classes as local maxima.
    assert [tuple(m.shape) for m in mask_probs] == [(2, g**2, 16, 16) for g in GRIDS]
    assert all(0 <= m.min() and m.max() <= 1 for m in mask_probs)
    for scores in cls_scores:
        assert torch.equal(scores, keep_local_maxima(scores))


# ----------------------------------------------------------------------------- targets
def test_targets_match_the_hand_computed_cells_labels_and_masks():
    head = make_head()
    mask_targets, labels, pos_masks = head._get_targets_single(two_gts(),
                                                               featmap_sizes=TRAIN_SIZES)
    for lvl, (cells, label, target) in EXPECTED.items():
        grid = GRIDS[lvl]
        assert pos_masks[lvl].nonzero().flatten().tolist() == cells
        expected_labels = torch.full((grid**2, ), 3)
        expected_labels[cells] = label if cells else 3
        assert torch.equal(labels[lvl].flatten(), expected_labels)
        assert mask_targets[lvl].dtype == torch.uint8
        assert mask_targets[lvl].shape == (len(cells), *TRAIN_SIZES[lvl])
        for t in mask_targets[lvl]:
            assert torch.equal(t, target)


def test_scale_ranges_are_inclusive_and_empty_masks_are_skipped():
    gts = two_gts()
    # sqrt(32 * 16) = 22.6 lies only in (22, 23); 64 only in (64, 64).
    head = make_head(scale_ranges=((1, 22), (22, 23), (32, 63), (64, 64), (65, 512)))
    _, _, pos_masks = head._get_targets_single(gts, featmap_sizes=TRAIN_SIZES)
    assert [int(p.sum()) for p in pos_masks] == [0, 2, 0, 4, 0]
    gts.masks = BitmapMasks(np.zeros((2, 64, 64), dtype=np.uint8), 64, 64)
    _, labels, pos_masks = make_head()._get_targets_single(gts, featmap_sizes=TRAIN_SIZES)
    assert not any(p.any() for p in pos_masks) and all((lb == 3).all() for lb in labels)


def test_a_later_gt_takes_over_a_shared_cell():
    masks = np.zeros((2, 64, 64), dtype=np.uint8)
    masks[:, 16:32, 8:40] = 1
    masks[1, 16:32, 8:12] = 0  # same box and centre cell, a different mask
    gts = InstanceData(bboxes=torch.tensor([[8., 16., 40., 32.]] * 2),
                       labels=torch.tensor([0, 1]), masks=BitmapMasks(masks, 64, 64))
    mask_targets, labels, pos_masks = make_head()._get_targets_single(
        gts, featmap_sizes=TRAIN_SIZES)
    assert pos_masks[0].nonzero().flatten().tolist() == [18, 19, 26, 27]
    assert labels[0].flatten()[18].item() == 1
    later = rescale_masks(torch.from_numpy(masks[1:]), 1 / 4)[0]
    assert all(torch.equal(t, later) for t in mask_targets[0])


# ----------------------------------------------------------------------------- loss
def dice(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    pred, target = pred.flatten(1), target.flatten(1).float()
    return 1 - 2 * (pred * target).sum(1) / ((pred * pred).sum(1) + eps +
                                             (target * target).sum(1) + eps)


def expected_cls_loss(cls_preds, num_pos: int) -> torch.Tensor:
    logits, onehot = [], []
    for lvl, preds in enumerate(cls_preds):
        logits.append(preds[0].permute(1, 2, 0).reshape(-1, 3))
        labels = torch.zeros(GRIDS[lvl]**2, 3)
        cells, label, _ = EXPECTED[lvl]
        if cells:
            labels[cells, label] = 1
        onehot.append(labels)
    return sigmoid_focal_loss(torch.cat(logits), torch.cat(onehot), alpha=0.25, gamma=2.0,
                              reduction='sum') / (num_pos + 1)


def test_solo_loss_is_dice_over_positives_plus_focal_over_cells():
    head = make_head()
    mask_preds, cls_preds = head(make_feats())
    losses = head.loss_by_feat(mask_preds, cls_preds, [two_gts()], [meta()])
    assert set(losses) == {'loss_mask', 'loss_cls'}
    num_pos = 14
    expected_mask = sum(
        dice(mask_preds[lvl][0, cells].sigmoid(), target[None].expand(len(cells), -1, -1)).sum()
        for lvl, (cells, _, target) in EXPECTED.items() if cells)
    assert torch.allclose(losses['loss_mask'], 3.0 * expected_mask / num_pos)
    assert torch.allclose(losses['loss_cls'], expected_cls_loss(cls_preds, num_pos))


def test_decoupled_loss_multiplies_the_row_and_column_masks():
    head = make_head('DecoupledSOLOHead')
    preds_x, preds_y, cls_preds = head(make_feats())
    losses = head.loss_by_feat(preds_x, preds_y, cls_preds, [two_gts()], [meta()])
    expected = 0
    for lvl, (cells, _, target) in EXPECTED.items():
        if cells:
            rows = torch.tensor(cells) // GRIDS[lvl]
            cols = torch.tensor(cells) % GRIDS[lvl]
            probs = preds_y[lvl][0, rows].sigmoid() * preds_x[lvl][0, cols].sigmoid()
            expected = expected + dice(probs, target[None].expand(len(cells), -1, -1)).sum()
    assert torch.allclose(losses['loss_mask'], 3.0 * expected / 14)
    assert torch.allclose(losses['loss_cls'], expected_cls_loss(cls_preds, 14))


@pytest.mark.parametrize('head_type', ['SOLOHead', 'DecoupledSOLOHead',
                                       'DecoupledSOLOLightHead'])
def test_loss_pads_gt_masks_and_handles_an_image_without_objects(head_type):
    head = make_head(head_type)
    sample = DetDataSample(metainfo=meta(img_shape=(48, 64)))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[8., 8., 40., 40.]]),
                                       labels=torch.tensor([0]),
                                       masks=BitmapMasks(np.ones((1, 48, 64), np.uint8), 48,
                                                         64))
    empty = DetDataSample(metainfo=meta())
    empty.gt_instances = InstanceData(bboxes=torch.zeros(0, 4),
                                      labels=torch.zeros(0, dtype=torch.long),
                                      masks=BitmapMasks(np.zeros((0, 64, 64), np.uint8), 64,
                                                        64))
    losses = head.loss(make_feats(2), [sample, empty])
    # as mmdetection, the data sample's masks are replaced by the padded ones
    assert sample.gt_instances.masks.height == 64
    assert all(torch.isfinite(v) for v in losses.values())
    losses = head.loss(make_feats(1), [empty])
    assert losses['loss_mask'].item() == 0 and losses['loss_mask'].requires_grad
    sum(losses.values()).backward()


# ----------------------------------------------------------------------------- predict
def eval_outputs():
    """Eval-mode SOLO outputs with one clear instance: level 2, cell (1, 1) = 5, class 1 at
    0.9 with mask probability 0.9 on rows 2-9 (every column) of the 16 x 16 grid."""
    mask_preds = [torch.zeros(1, g**2, 16, 16) for g in GRIDS]
    cls_scores = [torch.zeros(1, 3, g, g) for g in GRIDS]
    cls_scores[2][0, 1, 1, 1] = 0.9
    mask_preds[2][0, 5, 2:10, :] = 0.9
    # Dropped: a mask of 8 pixels (not more than its stride 8), and a mask under mask_thr.
    cls_scores[0][0, 0, 0, 0] = 0.5
    mask_preds[0][0, 0, 0:2, 0:4] = 0.9
    cls_scores[1][0, 2, 3, 3] = 0.3
    mask_preds[1][0, 21] = 0.4
    return mask_preds, cls_scores


def test_predict_keeps_the_clear_instance_with_maskness_score_at_input_resolution():
    head = make_head()
    results = head.predict_by_feat(*eval_outputs(), batch_img_metas=[meta()])
    result = results[0]
    assert result.labels.tolist() == [1] and result.labels.dtype == torch.int64
    # score = class score x mean probability inside the mask
    assert torch.allclose(result.scores, torch.tensor([0.9 * 0.9]))
    # x4 bilinear: rows 4 * 2 .. 4 * 10 - 1 pass 0.5 (edge pixels blend 0.625 of 0.9).
    expected = torch.zeros(1, 64, 64, dtype=torch.bool)
    expected[0, 8:40] = True
    assert result.masks.dtype == torch.bool and torch.equal(result.masks, expected)
    assert torch.equal(result.bboxes, torch.zeros(1, 4))  # as mmdetection: no boxes
    # Cropped to img_shape, then resized to ori_shape.
    result = head.predict_by_feat(*eval_outputs(),
                                  batch_img_metas=[meta((48, 64), (24, 32))])[0]
    assert result.masks.shape == (1, 24, 32)


def test_decoupled_predict_combines_row_and_column_masks():
    head = make_head('DecoupledSOLOHead')
    preds_x = [torch.zeros(1, g, 16, 16) for g in GRIDS]
    preds_y = [torch.zeros(1, g, 16, 16) for g in GRIDS]
    cls_scores = [torch.zeros(1, 3, g, g) for g in GRIDS]
    cls_scores[1][0, 0, 2, 3] = 0.9  # level 1, row 2, col 3
    preds_x[1][0, 3] = 0.9
    preds_y[1][0, 2, 2:10] = 0.9
    preds_y[1][0, 3] = 0.9  # another row: not this cell's
    result = head.predict_by_feat(preds_x, preds_y, cls_scores, batch_img_metas=[meta()])[0]
    assert result.labels.tolist() == [0]
    assert torch.allclose(result.scores, torch.tensor([0.9 * 0.81]))
    expected = torch.zeros(1, 64, 64, dtype=torch.bool)
    expected[0, 8:40] = True
    assert torch.equal(result.masks, expected)


@pytest.mark.parametrize('head_type', ['SOLOHead', 'DecoupledSOLOHead',
                                       'DecoupledSOLOLightHead'])
def test_predict_without_detections_returns_mmdetections_empty_results(head_type):
    head = make_head(head_type).eval()
    head.test_cfg['score_thr'] = 1.0
    sample = DetDataSample(metainfo=meta(ori_shape=(30, 40)))
    with torch.no_grad():
        result = head.predict(make_feats(), [sample])[0]
    assert result.masks.shape == (0, 30, 40) and result.bboxes.shape == (0, 4)
    assert result.scores.shape == (0, ) and result.labels.shape == (0, )
    # mmdetection's empty results are all float tensors, labels and masks included
    assert result.labels.dtype == result.masks.dtype == torch.float32


def test_predict_through_forward_gives_masks_at_the_original_size():
    head = make_head().eval()
    head.test_cfg['score_thr'] = 0.0
    head.test_cfg['filter_thr'] = 0.0
    with torch.no_grad():
        mask_preds, cls_scores = head(make_feats())
    # a strong instance on top of the random outputs
    cls_scores[2][0, 1, 1, 1] = 1.0
    mask_preds[2][0, 5] = 0.0
    mask_preds[2][0, 5, 2:10, :] = 0.99
    result = head.predict_by_feat(mask_preds, cls_scores,
                                  batch_img_metas=[meta(ori_shape=(50, 60))])[0]
    assert result.masks.shape[1:] == (50, 60) and len(result) <= 100
    assert result.labels[0].item() == 1 and result.scores[0].item() == pytest.approx(0.99)
    assert torch.all(result.scores[:-1] >= result.scores[1:])
