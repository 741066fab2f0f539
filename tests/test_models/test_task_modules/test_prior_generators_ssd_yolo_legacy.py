"""AnchorGenerator API as mmdetection 3.3, SSD / YOLO / Legacy anchor generators, utils."""
import math

import numpy as np
import pytest
import torch

from mmdet_lite.models.task_modules.prior_generators import (AnchorGenerator,
                                                             LegacyAnchorGenerator,
                                                             LegacySSDAnchorGenerator,
                                                             SSDAnchorGenerator,
                                                             YOLOAnchorGenerator,
                                                             anchor_inside_flags, calc_region)
from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import HorizontalBoxes

SSD300 = dict(type='SSDAnchorGenerator', scale_major=False, input_size=300,
              basesize_ratio_range=(0.15, 0.9), strides=[8, 16, 32, 64, 100, 300],
              ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]])


def test_anchor_generator_repr_is_mmdetections():
    gen = AnchorGenerator(strides=[8, 16], ratios=[0.5, 1.0], scales=[8], base_sizes=[4, 8])
    assert repr(gen) == ('AnchorGenerator(\n'
                         '    strides=[(8, 8), (16, 16)],\n'
                         '    ratios=tensor([0.5000, 1.0000]),\n'
                         '    scales=tensor([8.]),\n'
                         '    base_sizes=[4, 8],\n'
                         '    scale_major=True,\n'
                         '    octave_base_scale=None,\n'
                         '    scales_per_octave=None,\n'
                         '    num_levels=2\n'
                         '    centers=None,\n'
                         '    center_offset=0.0)')


def test_grid_anchors_deprecated_forms_equal_grid_priors():
    gen = AnchorGenerator(strides=[8, (16, 8)], ratios=[0.5, 1.0, 2.0], scales=[2, 4])
    sizes = [(3, 5), (2, 4)]
    with pytest.warns(UserWarning, match='grid_anchors'):
        old = gen.grid_anchors(sizes, device='cpu')
    for level, (a, b) in enumerate(zip(old, gen.grid_priors(sizes))):
        torch.testing.assert_close(a, b)
    with pytest.warns(UserWarning, match='single_level_grid_anchors'):
        one = gen.single_level_grid_anchors(gen.base_anchors[1], (2, 4), stride=(16, 8))
    torch.testing.assert_close(one, gen.single_level_grid_priors((2, 4), 1))


def test_anchor_generator_use_box_type_and_meshgrid_method():
    gen = AnchorGenerator(strides=[16], ratios=[1.], scales=[1.], base_sizes=[9],
                          use_box_type=True)
    anchors = gen.grid_priors([(2, 2)])[0]
    assert isinstance(anchors, HorizontalBoxes)
    torch.testing.assert_close(anchors.tensor[1], torch.tensor([11.5, -4.5, 20.5, 4.5]))
    xx, yy = gen._meshgrid(torch.tensor([0, 1]), torch.tensor([5, 6]), row_major=False)
    assert xx.tolist() == [5, 5, 6, 6] and yy.tolist() == [0, 1, 0, 1]
    assert gen.num_base_anchors == gen.num_base_priors == [1]


def test_valid_flags_on_padded_image_hand_values():
    gen = AnchorGenerator(strides=[8], ratios=[1.0, 2.0], scales=[1])
    # pad 20 x 12 on a 4 x 4 map of stride 8: ceil(20/8) = 3 rows, ceil(12/8) = 2 columns valid
    flags = gen.valid_flags([(4, 4)], (20, 12, 3))[0]
    cells = [[y < 3 and x < 2 for x in range(4)] for y in range(4)]
    expected = [v for row in cells for v in row for _ in range(2)]
    assert flags.dtype == torch.bool and flags.tolist() == expected


def test_anchor_generator_asserts_are_assertion_errors():
    with pytest.raises(AssertionError):
        AnchorGenerator(strides=[8], ratios=[1.])  # neither scales nor octave scales
    with pytest.raises(AssertionError):
        AnchorGenerator(strides=[8], ratios=[1.], scales=[1.], base_sizes=[4, 8])
    with pytest.raises(AssertionError):
        AnchorGenerator(strides=[8], ratios=[1.], scales=[1.], centers=[(0, 0)],
                        center_offset=0.5)
    with pytest.raises(ValueError):
        AnchorGenerator(strides=[8], ratios=[1.], scales=[1.], center_offset=2)


def test_ssd300_min_max_sizes_and_base_anchor_count():
    gen = TASK_UTILS.build(SSD300)
    # ratios 15..87 % in steps of 18 %, plus 7 % / 15 % for the first level
    assert gen.base_sizes == [21, 45, 99, 153, 207, 261]
    maxes = [45, 99, 153, 207, 261, 315]
    for level, (lo, hi) in enumerate(zip(gen.base_sizes, maxes)):
        torch.testing.assert_close(gen.scales[level], torch.tensor([1., math.sqrt(hi / lo)]))
    assert gen.num_base_priors == [4, 6, 6, 6, 4, 4]
    assert gen.centers[4] == (50., 50.)


def test_ssd300_first_level_base_anchors_hand_values():
    gen = TASK_UTILS.build(SSD300)

    def box(w, h, c=4.):
        return [c - w / 2, c - h / 2, c + w / 2, c + h / 2]

    big = math.sqrt(21 * 45)
    expected = [box(21, 21), box(big, big), box(21 * math.sqrt(2), 21 / math.sqrt(2)),
                box(21 / math.sqrt(2), 21 * math.sqrt(2))]  # ratios 1, 1 (larger), 1/2, 2
    torch.testing.assert_close(gen.base_anchors[0], torch.tensor(expected))
    anchors = gen.grid_priors([(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)])
    assert [len(a) for a in anchors] == [38 * 38 * 4, 19 * 19 * 6, 600, 150, 36, 4]
    torch.testing.assert_close(anchors[0][4], torch.tensor(box(21, 21, 12.)) -
                               torch.tensor([0., 8., 0., 8.]))


def test_ssd512_and_explicit_sizes_and_errors():
    gen = SSDAnchorGenerator(strides=[8, 16, 32, 64, 128, 256, 512],
                             ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]],
                             basesize_ratio_range=(0.1, 0.9), input_size=512)
    # 10..90 % in steps of 16 % plus 4 % / 10 % first
    assert gen.base_sizes == [20, 51, 133, 215, 296, 378, 460]
    explicit = SSDAnchorGenerator(strides=[16, 32], ratios=[[2], [2]], min_sizes=[10, 20],
                                  max_sizes=[40, 80])
    torch.testing.assert_close(explicit.scales[0], torch.tensor([1., 2.]))
    assert 'input_size=300' in repr(explicit) and repr(explicit).startswith(
        'SSDAnchorGenerator(\n    strides=[(16, 16), (32, 32)],\n')
    with pytest.raises(ValueError):
        SSDAnchorGenerator(strides=[8, 16, 32], ratios=[[2], [2], [2]], input_size=400)
    with pytest.raises(AssertionError):
        SSDAnchorGenerator(strides=[16, 32], ratios=[[2]], min_sizes=[10], max_sizes=[40])
    with pytest.raises(AssertionError):
        SSDAnchorGenerator(strides=[16], ratios=[[2]], min_sizes=[10])


def test_yolo_anchor_generator_base_sizes_and_grid():
    gen = TASK_UTILS.build(dict(type='YOLOAnchorGenerator', strides=[32, 16, 8],
                                base_sizes=[[(116, 90), (156, 198), (373, 326)],
                                            [(30, 61), (62, 45), (59, 119)],
                                            [(10, 13), (16, 30), (33, 23)]]))
    assert gen.num_levels == 3 and gen.num_base_priors == [3, 3, 3]
    torch.testing.assert_close(gen.base_anchors[0][0], torch.tensor([-42., -29., 74., 61.]))
    torch.testing.assert_close(gen.base_anchors[2][2],
                               torch.tensor([4 - 16.5, 4 - 11.5, 4 + 16.5, 4 + 11.5]))
    level2 = gen.single_level_grid_priors((2, 3), 2)
    # location (x=1, y=0) shifts the level's base anchors by one stride (8) in x
    torch.testing.assert_close(level2[3:6], gen.base_anchors[2] + torch.tensor([8., 0, 8, 0]))
    with pytest.raises(AssertionError):
        YOLOAnchorGenerator(strides=[32, 16], base_sizes=[[(1, 1)], [(1, 1), (2, 2)]])


def test_legacy_anchor_generator_v1_convention():
    gen = LegacyAnchorGenerator([16], [1.], [1.], [9], center_offset=0.5)
    # centre 0.5 * (9 - 1) = 4, half size (9 - 1) / 2 = 4
    assert gen.grid_priors([(2, 2)])[0].tolist() == [[0., 0., 8., 8.], [16., 0., 24., 8.],
                                                     [0., 16., 8., 24.], [16., 16., 24., 24.]]
    ratio = LegacyAnchorGenerator([16], [0.5], [1.], [16], center_offset=0.5)
    w, h = 16 * math.sqrt(2), 16 / math.sqrt(2)
    expected = np.round([7.5 - (w - 1) / 2, 7.5 - (h - 1) / 2, 7.5 + (w - 1) / 2,
                         7.5 + (h - 1) / 2])
    assert ratio.base_anchors[0][0].tolist() == expected.tolist()
    legacy_ssd = LegacySSDAnchorGenerator(strides=[8, 16, 32, 64, 100, 300],
                                          ratios=SSD300['ratios'],
                                          basesize_ratio_range=(0.15, 0.9))
    assert legacy_ssd.centers[0] == (3.5, 3.5)
    # corners 3.5 -/+ (21 - 1) / 2, rounded half to even as torch.round does
    assert legacy_ssd.base_anchors[0][0].tolist() == np.round([-6.5, -6.5, 13.5, 13.5]).tolist()


def test_anchor_inside_flags_and_calc_region():
    anchors = torch.tensor([[0., 0., 10., 10.], [-2., 0., 5., 5.], [0., 0., 12., 5.],
                            [1., 1., 3., 3.]])
    valid = torch.tensor([True, True, True, False])
    assert anchor_inside_flags(anchors, valid, (11, 12)).tolist() == [True, False, False, False]
    assert anchor_inside_flags(anchors, valid, (11, 12), allowed_border=2).tolist() == \
        [True, True, True, False]
    assert anchor_inside_flags(HorizontalBoxes(anchors), valid, (11, 12)).tolist() == \
        [True, False, False, False]
    assert anchor_inside_flags(anchors, valid, (1, 1), allowed_border=-1) is valid
    region = calc_region(torch.tensor([0., 0., 10., 20.]), 0.2)
    assert [int(v) for v in region] == [2, 4, 8, 16]
    clamped = calc_region(torch.tensor([0., 0., 10., 20.]), 0.2, featmap_size=(10, 5))
    assert [int(v) for v in clamped] == [2, 4, 5, 10]
