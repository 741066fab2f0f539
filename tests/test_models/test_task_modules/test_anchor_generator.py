"""AnchorGenerator: base anchors, layout of grid anchors, octave scales and valid flags."""
import math

import pytest
import torch

from mmdet_lite.models.task_modules import AnchorGenerator
from mmdet_lite.registry import TASK_UTILS


def test_build_from_registry():
    gen = TASK_UTILS.build(dict(type='AnchorGenerator', strides=[8, 16], ratios=[1.], scales=[2]))
    assert isinstance(gen, AnchorGenerator)
    assert gen.num_levels == 2
    assert gen.base_sizes == [8, 16]  # defaults to the stride


def test_base_anchors_three_ratios_match_hand_values():
    gen = AnchorGenerator(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[8])
    # Area (16 * 8)**2 kept; ratio r = h / w gives w = 128 / sqrt(r), h = 128 * sqrt(r).
    half_long, half_short = 64 * math.sqrt(2), 64 / math.sqrt(2)
    expected = torch.tensor([
        [-half_long, -half_short, half_long, half_short],  # ratio 0.5: wide
        [-64., -64., 64., 64.],  # ratio 1
        [-half_short, -half_long, half_short, half_long],  # ratio 2: tall
    ])
    assert gen.num_base_priors == [3]
    torch.testing.assert_close(gen.base_anchors[0], expected)


def test_grid_priors_order_is_locations_row_major_then_base_anchors():
    gen = AnchorGenerator(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[8])
    anchors = gen.grid_priors([(2, 2)])
    assert len(anchors) == 1 and anchors[0].shape == (2 * 2 * 3, 4)
    base = gen.base_anchors[0]
    # Locations (x, y): (0, 0), (16, 0), (0, 16), (16, 16); three anchors each.
    for loc, (sx, sy) in enumerate([(0, 0), (16, 0), (0, 16), (16, 16)]):
        shift = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
        torch.testing.assert_close(anchors[0][loc * 3:loc * 3 + 3], base + shift)


def test_grid_priors_simple_values_with_center_offset_and_rect_stride():
    gen = AnchorGenerator(strides=[(8, 4)], ratios=[1.], scales=[1.], base_sizes=[4],
                          center_offset=0.5)
    anchors = gen.grid_priors([(2, 2)], dtype=torch.float64)[0]
    expected = torch.tensor([[0., 0., 4., 4.], [8., 0., 12., 4.], [0., 4., 4., 8.],
                             [8., 4., 12., 8.]], dtype=torch.float64)
    torch.testing.assert_close(anchors, expected)


def test_octave_scales_retinanet_nine_anchors_per_location():
    gen = AnchorGenerator(strides=[8, 16], ratios=[0.5, 1.0, 2.0], octave_base_scale=4,
                          scales_per_octave=3)
    torch.testing.assert_close(gen.scales, torch.tensor([4., 4 * 2**(1 / 3), 4 * 2**(2 / 3)]))
    assert gen.num_base_priors == [9, 9]
    # scale_major layout: index = ratio_idx * 3 + scale_idx; ratio 1, scale 4 on stride 8.
    torch.testing.assert_close(gen.base_anchors[0][3], torch.tensor([-16., -16., 16., 16.]))
    half = 8 * 4 * 2**(1 / 3) / 2
    torch.testing.assert_close(gen.base_anchors[0][4], torch.tensor([-half, -half, half, half]))
    anchors = gen.grid_priors([(3, 4), (2, 2)])
    assert [a.shape[0] for a in anchors] == [3 * 4 * 9, 2 * 2 * 9]


def test_scale_major_false_orders_scales_first():
    gen = AnchorGenerator(strides=[1], ratios=[1., 4.], scales=[1., 2.], base_sizes=[2],
                          scale_major=False)
    widths = gen.base_anchors[0][:, 2] - gen.base_anchors[0][:, 0]
    # (scale 1, r 1), (scale 1, r 4), (scale 2, r 1), (scale 2, r 4): w = 2 * s / sqrt(r).
    torch.testing.assert_close(widths, torch.tensor([2., 1., 4., 2.]))


def test_sparse_priors_equal_indexed_grid_priors():
    gen = AnchorGenerator(strides=[8, 16], ratios=[0.5, 1., 2.], scales=[2, 4])
    grid = gen.grid_priors([(4, 5), (3, 3)])[0]
    idxs = torch.tensor([0, 7, 33, 119])
    torch.testing.assert_close(gen.sparse_priors(idxs, (4, 5), 0), grid[idxs])


def test_valid_flags_mask_locations_outside_pad_shape():
    gen = AnchorGenerator(strides=[16], ratios=[1.], scales=[1.])
    # ceil(20 / 16) = 2 valid rows, ceil(40 / 16) = 3 valid columns of the 3 x 4 map.
    flags = gen.valid_flags([(3, 4)], pad_shape=(20, 40, 3))[0]
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert flags.dtype == torch.bool
    assert torch.equal(flags, expected.view(-1))


def test_valid_flags_repeat_per_base_anchor():
    gen = AnchorGenerator(strides=[16], ratios=[0.5, 1.], scales=[1.])
    flags = gen.valid_flags([(1, 2)], pad_shape=(16, 16))[0]
    assert torch.equal(flags, torch.tensor([True, True, False, False]))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match='either scales'):
        AnchorGenerator(strides=[8], ratios=[1.])
    with pytest.raises(ValueError, match='either scales'):
        AnchorGenerator(strides=[8], ratios=[1.], scales=[1.], octave_base_scale=4,
                        scales_per_octave=3)
    with pytest.raises(ValueError, match='base_sizes'):
        AnchorGenerator(strides=[8, 16], ratios=[1.], scales=[1.], base_sizes=[8])
    with pytest.raises(ValueError, match='center_offset'):
        AnchorGenerator(strides=[8], ratios=[1.], scales=[1.], center_offset=2.)
    gen = AnchorGenerator(strides=[8, 16], ratios=[1.], scales=[1.])
    with pytest.raises(ValueError, match='featmap_sizes'):
        gen.grid_priors([(2, 2)])
