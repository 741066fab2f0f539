"""MlvlPointGenerator and PointGenerator against hand-computed grids."""
import pytest
import torch

from mmdet_lite.models.task_modules.prior_generators import MlvlPointGenerator, PointGenerator
from mmdet_lite.registry import TASK_UTILS


def test_mlvl_points_hand_grid_with_and_without_stride():
    gen = TASK_UTILS.build(dict(type='MlvlPointGenerator', strides=[8, (16, 32)], offset=0.5))
    assert gen.num_levels == 2 and gen.num_base_priors == [1, 1]
    level0, level1 = gen.grid_priors([(2, 3), (1, 2)])
    # x = (i + 0.5) * 8 for i in 0..2, y = (j + 0.5) * 8 for j in 0..1, x fastest
    assert level0.tolist() == [[4., 4.], [12., 4.], [20., 4.], [4., 12.], [12., 12.], [20., 12.]]
    assert level1.tolist() == [[8., 16.], [24., 16.]]
    with_stride = gen.grid_priors([(2, 3), (1, 2)], with_stride=True)
    assert with_stride[1].tolist() == [[8., 16., 16., 32.], [24., 16., 16., 32.]]
    assert gen.grid_priors([(2, 3), (1, 2)], dtype=torch.float16)[0].dtype == torch.float16
    zero = MlvlPointGenerator([4], offset=0.)
    assert zero.grid_priors([(1, 2)])[0].tolist() == [[0., 0.], [4., 0.]]


def test_mlvl_points_sparse_priors_equal_indexed_grid():
    gen = MlvlPointGenerator([8, 16])
    grid = gen.single_level_grid_priors((3, 5), level_idx=1)
    idxs = torch.tensor([0, 4, 7, 14])
    torch.testing.assert_close(gen.sparse_priors(idxs, (3, 5), level_idx=1), grid[idxs])


def test_mlvl_points_valid_flags_on_padded_image():
    gen = MlvlPointGenerator([8, 16])
    # pad (10, 20): stride 8 -> 2 rows, 3 cols valid of (3, 4); stride 16 -> 1 x 2 of (2, 2)
    flags8, flags16 = gen.valid_flags([(3, 4), (2, 2)], (10, 20, 3))
    assert flags8.tolist() == [y < 2 and x < 3 for y in range(3) for x in range(4)]
    assert flags16.tolist() == [True, True, False, False]
    with pytest.raises(AssertionError):
        gen.valid_flags([(3, 4)], (10, 20))
    with pytest.raises(AssertionError):
        gen.single_level_valid_flags((2, 2), (3, 1))


def test_point_generator_grid_points_and_flags():
    gen = PointGenerator()
    points = gen.grid_points((2, 2), stride=4)
    assert points.tolist() == [[0., 0., 4.], [4., 0., 4.], [0., 4., 4.], [4., 4., 4.]]
    assert gen.valid_flags((2, 3), (1, 2)).tolist() == [True, True, False, False, False, False]
