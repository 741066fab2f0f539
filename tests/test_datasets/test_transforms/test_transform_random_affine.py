"""RandomAffine on a 20 x 30 (h x w) image: a pinned matrix, and seeded draws replayed here.

Pinned warp M = [[0.5, 0, 5], [0, 0.5, -3], [0, 0, 1]] (halve, then shift by (5, -3)):
  [4, 10, 12, 20] -> [7, 2, 11, 7]
  [0, 0, 4, 4]    -> [5, -3, 7, -1] -> clipped [5, 0, 7, 0], outside -> dropped
"""
import math

import numpy as np
import pytest
from geom_helpers import BOX_KINDS, boxes_array, clip_boxes, project_corners, use_box_kind
from transform_helpers import H, W, make_image, make_results

from mmdet_lite.datasets.transforms import RandomAffine
from mmdet_lite.registry import TRANSFORMS

WARP = np.array([[0.5, 0, 5], [0, 0.5, -3], [0, 0, 1]], dtype=np.float32)
BOXES = [[4, 10, 12, 20], [0, 0, 4, 4]]


def pinned(matrix=WARP, **kwargs) -> RandomAffine:
    affine = RandomAffine(**kwargs)
    affine._get_random_homography_matrix = lambda height, width: matrix
    return affine


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_pinned_warp_moves_image_and_boxes(box_kind):
    results = use_box_kind(make_results(BOXES, labels=[7, 8], ignore=[True, False], masks=None),
                           box_kind)
    results = pinned(border_val=(1, 2, 3))(results)
    np.testing.assert_allclose(boxes_array(results, box_kind), [[7, 2, 11, 7]], atol=1e-5)
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [7])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [True])
    img = results['img']
    assert img.shape == (H, W, 3) and results['img_shape'] == (H, W)
    # Output (y, x) samples input (2 * (y + 3), 2 * (x - 5)).
    for y, x in [(2, 7), (0, 5), (5, 16)]:
        np.testing.assert_array_equal(img[y, x], make_image()[2 * (y + 3), 2 * (x - 5)])
    assert (img[19, 29] == [1, 2, 3]).all() and (img[0, 0] == [1, 2, 3]).all()


def test_without_clipping_boxes_outside_are_still_dropped():
    results = pinned(bbox_clip_border=False)(make_results(BOXES + [[20, 2, 40, 12]],
                                                          masks=None))
    # [20, 2, 40, 12] -> [15, -2, 25, 3]: partly above the image, kept unclipped.
    np.testing.assert_allclose(results['gt_bboxes'], [[7, 2, 11, 7], [15, -2, 25, 3]])


def test_border_changes_the_output_size():
    results = pinned(np.eye(3, dtype=np.float32), border=(-5, -2))(make_results(BOXES,
                                                                                masks=None))
    assert results['img'].shape == (H - 4, W - 10, 3)
    np.testing.assert_array_equal(results['img'], make_image()[:H - 4, :W - 10])
    np.testing.assert_allclose(results['gt_bboxes'], [[4, 10, 12, 16], [0, 0, 4, 4]])


def replayed_warp(seed, rot, scale_range, shear, trans, height, width) -> np.ndarray:
    """The warp of the seeded draws, composed here in float64: T @ Sh @ R @ S."""
    rng = np.random.RandomState(seed)
    angle = math.radians(rng.uniform(-rot, rot))
    scale = rng.uniform(*scale_range)
    shear_x = math.tan(math.radians(rng.uniform(-shear, shear)))
    shear_y = math.tan(math.radians(rng.uniform(-shear, shear)))
    tx = rng.uniform(-trans, trans) * width
    ty = rng.uniform(-trans, trans) * height
    rotate = np.array([[math.cos(angle), -math.sin(angle), 0],
                       [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    return (np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]) @
            np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]]) @ rotate @
            np.diag([scale, scale, 1.]))


@pytest.mark.parametrize('seed', range(5))
def test_seeded_draws_match_an_independent_composition(seed):
    boxes = [[4, 10, 12, 20], [10, 2, 28, 9], [0, 0, 3, 3]]
    np.random.seed(seed)
    affine = RandomAffine(max_rotate_degree=30., max_translate_ratio=0.2,
                          scaling_ratio_range=(0.6, 1.4), max_shear_degree=5.)
    results = affine(make_results(boxes, masks=None))
    warp = replayed_warp(seed, 30., (0.6, 1.4), 5., 0.2, H, W)
    expected = clip_boxes(project_corners(boxes, warp), H, W)
    inside = (expected[:, 0] < W) & (expected[:, 1] < H) & (expected[:, 2] > 0) & \
        (expected[:, 3] > 0)
    np.testing.assert_allclose(results['gt_bboxes'], expected[inside], atol=1e-3)
    np.testing.assert_array_equal(results['gt_bboxes_labels'], np.arange(3)[inside])


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_empty_instances_warp_only_the_image(box_kind):
    results = make_results([], masks='bitmap')  # masks are fine when there is no box
    results = pinned()(use_box_kind(results, box_kind))
    assert boxes_array(results, box_kind).shape == (0, 4)
    assert results['img'][0, 5].tolist() == make_image()[6, 0].tolist()


def test_masks_with_boxes_are_not_supported():
    with pytest.raises(NotImplementedError, match='bbox'):
        pinned()(make_results(BOXES, masks='bitmap'))


def test_matrix_helpers():
    np.testing.assert_allclose(RandomAffine._get_rotation_matrix(90.),
                               [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-7)
    np.testing.assert_allclose(RandomAffine._get_shear_matrix(45., 0.),
                               [[1, 1, 0], [0, 1, 0], [0, 0, 1]], atol=1e-7)
    np.testing.assert_allclose(RandomAffine._get_scaling_matrix(2.), np.diag([2, 2, 1]))
    np.testing.assert_allclose(RandomAffine._get_translation_matrix(3., -1.),
                               [[1, 0, 3], [0, 1, -1], [0, 0, 1]])
    assert RandomAffine._get_rotation_matrix(10.).dtype == np.float32


def test_repr_build_and_invalid_args():
    affine = TRANSFORMS.build(dict(type='RandomAffine', scaling_ratio_range=(0.1, 2),
                                   border=(-320, -320)))
    assert repr(affine) == ('RandomAffine(max_rotate_degree=10.0, max_translate_ratio=0.1, '
                            'scaling_ratio_range=(0.1, 2), max_shear_degree=2.0, '
                            'border=(-320, -320), border_val=(114, 114, 114), '
                            'bbox_clip_border=True)')
    with pytest.raises(AssertionError, match='max_translate_ratio'):
        RandomAffine(max_translate_ratio=1.5)
    with pytest.raises(AssertionError, match='scaling_ratio_range'):
        RandomAffine(scaling_ratio_range=(2., 1.))
    with pytest.raises(AssertionError, match='scaling_ratio_range'):
        RandomAffine(scaling_ratio_range=(0., 1.))
