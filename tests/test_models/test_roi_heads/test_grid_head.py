"""Grid R-CNN's GridHead: layers and defaults as mmdetection's, the forward (convs, first- and
second-order fusion, deconvs) against a functional reference, the grid-point heatmap targets
and the box refinement from heatmaps on hand-computed cases, and the loss.

Geometry used throughout (roi_feat_size 14): the whole heatmap is 56 pixels over the RoI
expanded to twice its size; each point's window is 28 pixels, starting at 0 / 14 / 28 for
grid column (or row) 0 / 1 / 2. Point k is column k // 3, row k % 3.
"""
import inspect
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import init_weights_quietly
from helpers_grid_rcnn_keys import grid_head as grid_head_keys
from helpers_state_dict import shapes_of
from mmengine.structures import InstanceData

from mmdet_lite.models.losses import CrossEntropyLoss
from mmdet_lite.models.roi_heads import GridHead

# 4-neighbours of each point of the 3x3 grid (left, up, down, right), by hand
NEIGHBOURS_3x3 = [(1, 3), (0, 2, 4), (1, 5), (0, 4, 6), (1, 3, 5, 7), (2, 4, 8), (3, 7),
                  (4, 6, 8), (5, 7)]
WINDOW_START = {0: 0, 1: 14, 2: 28}  # per grid column / row, in the 56-pixel map


def small_head(**kwargs) -> GridHead:
    args = dict(num_convs=2, in_channels=4, point_feat_channels=2,
                norm_cfg=dict(type='GN', num_groups=9))
    args.update(kwargs)
    return GridHead(**args)


def sampling(priors, gts) -> SimpleNamespace:
    return SimpleNamespace(pos_priors=torch.tensor(priors, dtype=torch.float32).view(-1, 4),
                           pos_gt_bboxes=torch.tensor(gts, dtype=torch.float32).view(-1, 4))


def positives(target: torch.Tensor) -> set:
    """{(x, y)} of the 1-pixels of one [28, 28] target map."""
    ys, xs = torch.nonzero(target, as_tuple=True)
    return set(zip(xs.tolist(), ys.tolist()))


def plus(x: int, y: int, size: int = 28) -> set:
    """The radius-1 disc around (x, y) inside the window."""
    pts = {(x, y), (x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1)}
    return {(a, b) for a, b in pts if 0 <= a < size and 0 <= b < size}


# ----------------------------------------------------------------------- construction
def test_defaults_are_mmdetections():
    params = inspect.signature(GridHead.__init__).parameters
    defaults = {n: p.default for n, p in params.items() if n != 'self'}
    assert defaults == dict(
        grid_points=9, num_convs=8, roi_feat_size=14, in_channels=256, conv_kernel_size=3,
        point_feat_channels=64, deconv_kernel_size=4, class_agnostic=False,
        loss_grid=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=15),
        conv_cfg=None, norm_cfg=dict(type='GN', num_groups=36),
        init_cfg=[dict(type='Kaiming', layer=['Conv2d', 'Linear']),
                  dict(type='Normal', layer='ConvTranspose2d', std=0.001,
                       override=dict(type='Normal', name='deconv2', std=0.001,
                                     bias=-np.log(0.99 / 0.01)))])
    head = GridHead()
    assert head.grid_size == 3 and head.whole_map_size == 56
    assert head.conv_out_channels == 576
    assert isinstance(head.loss_grid, CrossEntropyLoss) and head.loss_grid.use_sigmoid
    assert head.loss_grid.loss_weight == 15


def test_coco_layers_match_mmdetections_definition():
    head = GridHead()
    expected = grid_head_keys('h')
    # 8 convs x 4 + deconv1/norm1/deconv2 x 2 + 24 edges x 2 orders x 4
    assert len(expected) == 230
    assert {f'h.{k}': v for k, v in shapes_of(head).items()} == expected
    assert [m.conv.stride for m in head.convs] == [(2, 2)] + [(1, 1)] * 7
    assert head.deconv1.groups == 9 and head.deconv2.groups == 9
    assert head.deconv1.stride == (2, 2) and head.deconv1.padding == (1, 1)


def test_init_puts_the_heatmap_prior_at_one_percent():
    head = small_head()
    init_weights_quietly(head)
    assert torch.allclose(head.deconv2.bias, torch.full((9, ), -np.log(99.0)))
    assert head.deconv1.weight.std() < 0.01 and head.deconv2.weight.std() < 0.01


def test_neighbours_and_windows_by_hand():
    head = GridHead()
    assert head.neighbor_points == NEIGHBOURS_3x3
    assert head.num_edges == 24
    assert head.sub_regions == [(WINDOW_START[k // 3], WINDOW_START[k % 3],
                                 WINDOW_START[k // 3] + 28, WINDOW_START[k % 3] + 28)
                                for k in range(9)]
    # 4x4 grid (whole map 32, windows of 16): inner columns start at
    # int((1/3 - 1/4) * 32) = 2 and int((2/3 - 1/4) * 32) = 13
    head4 = GridHead(grid_points=16, roi_feat_size=8, in_channels=4, point_feat_channels=1,
                     num_convs=1, norm_cfg=dict(type='GN', num_groups=4))
    assert [r[0] for r in head4.sub_regions[::4]] == [0, 2, 13, 16]
    assert head4.neighbor_points[5] == (1, 4, 6, 9)


def test_bad_arguments_raise_assertion_errors():
    with pytest.raises(AssertionError, match='num_groups'):
        small_head(norm_cfg=dict(type='GN', num_groups=7))
    with pytest.raises(AssertionError, match='grid_points'):
        small_head(grid_points=1, norm_cfg=dict(type='GN', num_groups=1))
    with pytest.raises(ValueError, match='square'):
        small_head(grid_points=8, norm_cfg=dict(type='GN', num_groups=8))
    with pytest.raises(ValueError, match='square RoIs'):
        small_head(roi_feat_size=(14, 14))
    with pytest.raises(AssertionError, match='14x14'):
        small_head()(torch.zeros(1, 4, 7, 7))


# ----------------------------------------------------------------------- forward
def reference_forward(head: GridHead, x: torch.Tensor, training: bool) -> dict:
    """The head written out with functional ops and the hand-made neighbour table."""
    p = head.state_dict()
    for i in range(head.num_convs):
        x = F.conv2d(x, p[f'convs.{i}.conv.weight'], p[f'convs.{i}.conv.bias'],
                     stride=2 if i == 0 else 1, padding=1)
        x = F.relu(F.group_norm(x, 9, p[f'convs.{i}.gn.weight'], p[f'convs.{i}.gn.bias']))
    c = head.point_feat_channels
    pts = [x[:, k * c:(k + 1) * c] for k in range(9)]

    def trans(name, k, j, feat):
        y = F.conv2d(feat, p[f'{name}.{k}.{j}.0.weight'], p[f'{name}.{k}.{j}.0.bias'],
                     padding=2, groups=c)
        return F.conv2d(y, p[f'{name}.{k}.{j}.1.weight'], p[f'{name}.{k}.{j}.1.bias'])

    first = []
    for k, around in enumerate(NEIGHBOURS_3x3):
        f = pts[k]
        for j, n in enumerate(around):
            f = f + trans('forder_trans', k, j, pts[n])
        first.append(f)
    second = []
    for k, around in enumerate(NEIGHBOURS_3x3):
        s = pts[k]
        for j, n in enumerate(around):
            s = s + trans('sorder_trans', k, j, first[n])
        second.append(s)

    def deconvs(feat):
        y = F.conv_transpose2d(feat, p['deconv1.weight'], p['deconv1.bias'], stride=2,
                               padding=1, groups=9)
        y = F.relu(F.group_norm(y, 9, p['norm1.weight'], p['norm1.bias']))
        return F.conv_transpose2d(y, p['deconv2.weight'], p['deconv2.bias'], stride=2,
                                  padding=1, groups=9)

    fused = deconvs(torch.cat(second, 1))
    return dict(fused=fused, unfused=deconvs(x) if training else fused)


@pytest.mark.parametrize('training', [True, False])
def test_forward_matches_a_functional_reference(training):
    torch.manual_seed(0)
    head = small_head()
    for param in head.parameters():
        param.data.normal_(0, 0.3)
    head.train(training)
    x = torch.randn(3, 4, 14, 14)
    out = head(x)
    expected = reference_forward(head, x, training)
    assert out['fused'].shape == (3, 9, 28, 28)
    torch.testing.assert_close(out['fused'], expected['fused'], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out['unfused'], expected['unfused'], rtol=1e-4, atol=1e-5)
    if training:
        assert not torch.allclose(out['unfused'], out['fused'])
    else:
        assert out['unfused'] is out['fused']


# ----------------------------------------------------------------------- targets
def test_targets_of_a_box_inside_its_roi_by_hand():
    """RoI (10, 10, 30, 30) -> heatmap over (0, 0, 40, 40): 1.4 map pixels per image pixel.

    GT (14, 12, 26, 30): grid columns at x = 14, 20, 26 -> int(19.6) = 19, 28, int(36.4) = 36;
    rows at y = 12, 21, 30 -> int(16.8) = 16, int(29.4) = 29, 42. Minus each window's start
    (0, 14, 28): columns 19, 14, 8 and rows 16, 15, 14.
    """
    head = GridHead()
    targets = head.get_targets([sampling([10, 10, 30, 30], [14, 12, 26, 30])],
                               dict(pos_radius=1))
    assert targets.shape == (1, 9, 28, 28) and targets.dtype == torch.float32
    cols, rows = (19, 14, 8), (16, 15, 14)
    for k in range(9):
        assert positives(targets[0, k]) == plus(cols[k // 3], rows[k % 3]), k
    assert targets.sum() == 9 * 5


def test_targets_clip_to_the_window_and_round_towards_zero():
    """GT (-0.5, 12, 20, 30) in the same RoI: column x = -0.5 -> int(-0.7) = 0 (not -1),
    x = 9.75 -> int(13.65) = 13 (window 1 starts at 14: only the disc's right pixel is
    inside), x = 20 -> 28 (window 2 starts at 28: the disc loses its left pixel)."""
    head = GridHead()
    targets = head.get_targets([sampling([10, 10, 30, 30], [-0.5, 12, 20, 30])],
                               dict(pos_radius=1))
    rows = (16, 15, 14)
    for row in range(3):
        y = rows[row]
        assert positives(targets[0, row]) == {(0, y), (1, y), (0, y - 1), (0, y + 1)}
        assert positives(targets[0, 3 + row]) == {(0, y)}
        assert positives(targets[0, 6 + row]) == {(0, y), (1, y), (0, y - 1), (0, y + 1)}


def test_roi_equal_to_its_gt_puts_every_point_at_its_window_centre():
    head = GridHead()
    targets = head.get_targets([sampling([0, 0, 40, 40], [0, 0, 40, 40])],
                               dict(pos_radius=0))
    for k in range(9):
        assert positives(targets[0, k]) == {(14, 14)}


def test_radius_two_marks_a_13_pixel_disc():
    head = GridHead()
    targets = head.get_targets([sampling([0, 0, 40, 40], [0, 0, 40, 40])],
                               dict(pos_radius=2))
    assert positives(targets[0, 4]) == {(14 + dx, 14 + dy) for dx in range(-2, 3)
                                        for dy in range(-2, 3) if dx * dx + dy * dy <= 4}
    assert len(positives(targets[0, 4])) == 13


def test_tiny_rois_get_no_positive_pixels():
    """Expanded width 2 * 1.5 = 3 <= grid_size: skipped; 2 * 1.6 = 3.2: kept."""
    head = GridHead()
    targets = head.get_targets([sampling([[10, 10, 11.5, 30], [10, 10, 11.6, 30]],
                                         [[10, 10, 11.5, 30], [10, 10, 11.6, 30]])],
                               dict(pos_radius=1))
    assert targets[0].sum() == 0
    assert targets[1].sum() > 0


def reference_targets(head: GridHead, priors, gts, radius: int) -> torch.Tensor:
    """mmdetection's recipe written as plain loops over RoIs, points and pixels."""
    out = torch.zeros(len(priors), 9, 28, 28)
    for i, ((px1, py1, px2, py2), (gx1, gy1, gx2, gy2)) in enumerate(zip(priors, gts)):
        w, h = px2 - px1, py2 - py1
        ex1, ey1, ew, eh = px1 - w / 2, py1 - h / 2, 2 * w, 2 * h
        if ew <= 3 or eh <= 3:
            continue
        for k in range(9):
            col, row = k // 3, k % 3
            x = gx1 + (gx2 - gx1) * col / 2
            y = gy1 + (gy2 - gy1) * row / 2
            cx, cy = int((x - ex1) / ew * 56), int((y - ey1) / eh * 56)
            for yy in range(28):
                for xx in range(28):
                    gx, gy = xx + WINDOW_START[col], yy + WINDOW_START[row]
                    if (gx - cx)**2 + (gy - cy)**2 <= radius**2:
                        out[i, k, yy, xx] = 1
    return out


def test_targets_of_a_batch_match_a_loop_reference():
    # RoI sides of powers of two keep every map position exact in float32 and float64;
    # the second RoI's bottom points land on map row 56, just outside the map: only their
    # disc's top pixel (row 55) is marked
    img1 = ([[8, 8, 40, 40], [20, 4, 36, 36]], [[10, 6, 38, 44], [18, 10, 40, 52]])
    img2 = ([[0, 0, 16, 16]], [[2, 1, 20, 15]])
    head = GridHead()
    targets = head.get_targets([sampling(*img1), sampling(*img2)], dict(pos_radius=1))
    expected = reference_targets(head, img1[0] + img2[0], img1[1] + img2[1], 1)
    assert targets.shape == (3, 9, 28, 28)
    torch.testing.assert_close(targets, expected)
    # point 2 of the second RoI: column x = 18 -> int((18 - 12) / 32 * 56) = 10
    assert positives(targets[1, 2]) == {(10, 27)}


# ----------------------------------------------------------------------- loss
def test_loss_is_the_weighted_bce_of_both_heatmaps_on_the_selected_rois():
    head = GridHead()
    results = [sampling([[10, 10, 30, 30], [0, 0, 40, 40]], [[14, 12, 26, 30], [0, 0, 40, 40]])]
    cfg = dict(pos_radius=1)
    targets = head.get_targets(results, cfg)
    sample_idx = torch.tensor([1])
    pred = dict(fused=torch.randn(1, 9, 28, 28), unfused=torch.randn(1, 9, 28, 28))
    loss = head.loss(pred, sample_idx, results, cfg)
    assert set(loss) == {'loss_grid'}
    t = targets[1:2]
    expected = 15 * (F.binary_cross_entropy_with_logits(pred['fused'], t) +
                     F.binary_cross_entropy_with_logits(pred['unfused'], t))
    torch.testing.assert_close(loss['loss_grid'], expected)


# ----------------------------------------------------------------------- box refinement
def heatmaps_with_peaks(peaks: dict, logits: dict = None) -> torch.Tensor:
    """[1, 9, 28, 28] logits of -10 with one peak per point at window pixel (x, y)."""
    maps = torch.full((1, 9, 28, 28), -10.0)
    for k, (x, y) in peaks.items():
        maps[0, k, y, x] = (logits or {}).get(k, 30.0)  # sigmoid(30) == 1 in float32
    return maps


def refine(head, maps, boxes, img_meta=None, rescale=False):
    boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    results = InstanceData(bboxes=boxes, scores=torch.ones(len(boxes)),
                           labels=torch.zeros(len(boxes), dtype=torch.long))
    img_meta = img_meta or dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))
    return head.predict_by_feat(dict(fused=maps, unfused=maps), [results], [img_meta],
                                rescale=rescale)[0]


def test_peaks_vote_for_the_box_sides_by_hand():
    """Box (10, 10, 30, 30): the 56-pixel map spans (0, 0, 40, 40), so whole-map pixel p has
    its centre at (p + 0.5) * 40 / 56 = (p + 0.5) * 20 / 28.

    Left points 0, 1, 2 peak at x = 12, 13, 14 with probabilities 0.5, 1, 1 (logits 0, 30,
    30; the other peaks are 30 too): x1 is their
    probability-weighted mean. Right points 6, 7, 8 peak at window x 13 -> map x 41; top points
    0, 3, 6 at y = 13; bottom points 2, 5, 8 at window y 13 -> map y 41. Point 4 votes for
    nothing, wherever it peaks.
    """
    peaks = {0: (12, 13), 1: (13, 5), 2: (14, 5), 3: (3, 13), 4: (0, 27), 5: (3, 13),
             6: (13, 13), 7: (13, 5), 8: (13, 13)}
    maps = heatmaps_with_peaks(peaks, logits={0: 0.0})
    head = GridHead()
    bboxes = refine(head, maps, [10, 10, 30, 30]).bboxes
    scale = 20 / 28
    # top: points 0 (p = 0.5), 3 and 6 at y = 13
    x1 = (0.5 * 12.5 + 13.5 + 14.5) / 2.5 * scale
    y1 = 13.5 * scale
    x2 = 41.5 * scale
    # bottom: points 2 (window y 5 -> map 33, p = 1), 5 and 8 (window y 13 -> map 41)
    y2 = (33.5 + 41.5 + 41.5) / 3 * scale
    torch.testing.assert_close(bboxes, torch.tensor([[x1, y1, x2, y2]]), rtol=0, atol=1e-4)


def test_refined_boxes_are_rescaled_and_not_clipped():
    """mmdetection intends to clip to the image but clamps a copy, so a box reaching
    outside the image stays outside; rescale divides by (w_scale, h_scale)."""
    head = GridHead()
    # every point at window pixel (0, 0): left/top sides at map pixel 0, right/bottom at 28
    maps = heatmaps_with_peaks({k: (0, 0) for k in range(9)})
    meta = dict(img_shape=(20, 20), scale_factor=(2.0, 4.0))
    # box (0, 0, 20, 20): map spans (-10, -10, 30, 30), pixel p -> (p + 0.5) * 40 / 56 - 10
    side = [0.5 * 40 / 56 - 10, 28.5 * 40 / 56 - 10]
    raw = refine(head, maps, [0, 0, 20, 20], meta).bboxes
    torch.testing.assert_close(raw, torch.tensor([[side[0], side[0], side[1], side[1]]]))
    assert raw[0, 0] < 0  # left of the image, kept
    scaled = refine(head, maps, [0, 0, 20, 20], meta, rescale=True).bboxes
    torch.testing.assert_close(scaled, raw / torch.tensor([2.0, 4.0, 2.0, 4.0]))


def test_refinement_per_image_and_empty_images():
    head = GridHead()
    maps = torch.cat([heatmaps_with_peaks({k: (14, 14) for k in range(9)})] * 2)
    empty = InstanceData(bboxes=torch.zeros(0, 4), scores=torch.zeros(0),
                         labels=torch.zeros(0, dtype=torch.long))
    two = InstanceData(bboxes=torch.tensor([[0., 0., 40., 40.], [8., 8., 16., 24.]]),
                       scores=torch.ones(2), labels=torch.zeros(2, dtype=torch.long))
    metas = [dict(img_shape=(64, 64), scale_factor=(1., 1.))] * 2
    out = head.predict_by_feat(dict(fused=maps, unfused=maps), [empty, two], metas)
    assert out[0] is empty and len(out[0]) == 0
    # window centre 14 -> map pixel 14 / 28 / 42 -> (p + 0.5) / 28 * w + x1 - w / 2
    expected = []
    for x1, y1, x2, y2 in ([0, 0, 40, 40], [8, 8, 16, 24]):
        w, h = x2 - x1, y2 - y1
        expected.append([14.5 / 28 * w + x1 - w / 2, 14.5 / 28 * h + y1 - h / 2,
                         42.5 / 28 * w + x1 - w / 2, 42.5 / 28 * h + y1 - h / 2])
    torch.testing.assert_close(out[1].bboxes, torch.tensor(expected))


def test_targets_then_refinement_recover_the_gt():
    """Single-pixel targets used as heatmaps place each side within one map pixel
    (40 / 56 image pixels for a 20-pixel RoI) of the GT."""
    head = GridHead()
    prior, gt = [10., 10., 30., 30.], [13., 11., 27., 31.]
    targets = head.get_targets([sampling(prior, gt)], dict(pos_radius=0))
    refined = refine(head, targets * 20 - 10, prior).bboxes
    assert (refined - torch.tensor([gt])).abs().max() <= 40 / 56


@pytest.mark.slow
def test_head_overfits_fixed_rois_and_then_locates_their_gt():
    """Adam on fixed RoI features: the grid loss falls, and the refined boxes land within
    about one whole-map pixel (2 * side / 56, plus the radius-1 disc) of the GT."""
    torch.manual_seed(0)
    head = small_head(in_channels=8, point_feat_channels=4,
                      norm_cfg=dict(type='GN', num_groups=36))
    init_weights_quietly(head)
    feats = torch.randn(4, 8, 14, 14)
    priors = [[10, 10, 30, 30], [0, 0, 40, 40], [20, 8, 44, 60], [5, 5, 25, 45]]
    gts = [[14, 12, 26, 30], [2, 3, 38, 36], [22, 10, 40, 50], [6, 9, 24, 40]]
    results, cfg, idx = [sampling(priors, gts)], dict(pos_radius=1), torch.arange(4)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.01)
    head.train()
    first = None
    for _ in range(40):
        loss = head.loss(head(feats), idx, results, cfg)['loss_grid']
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.25 * first
    with torch.no_grad():
        refined = refine(head.eval(), head(feats)['fused'], priors).bboxes
    gt = torch.tensor(gts, dtype=torch.float32)
    prior = torch.tensor(priors, dtype=torch.float32)
    pixel = 2 * (prior[:, 2:] - prior[:, :2]) / 56  # [4, (w, h)] of one map pixel
    assert ((refined - gt).abs() <= 1.5 * pixel.repeat(1, 2)).all()
