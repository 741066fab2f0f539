"""AutoAugment geometric ops (Rotate, ShearX/Y, TranslateX/Y) on a 20 x 30 (h x w) image.

The magnitude is pinned with level=10 (-> max_mag) and reversal_prob=1.0 (the sign is kept,
as np.random.rand() is never > 1) or 0.0 (negated, as rand() > 0 almost surely). Expected
boxes below are hand-computed from the move; masks are rectangles, so their tight boxes
follow the boxes up to one pixel (pixel centres vs. box edges).
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, boxes_array, clip_boxes, project_corners, use_box_kind
from transform_helpers import H, W, make_image, make_results, mask_boxes

from mmdet_lite.datasets.transforms import (GeomTransform, Rotate, ShearX, ShearY, TranslateX,
                                            TranslateY)
from mmdet_lite.datasets.transforms.augment_levels import level_to_mag
from mmdet_lite.registry import TRANSFORMS

BOXES = [[2, 2, 8, 8], [10, 4, 20, 12]]

# op, kwargs, homography, boxes after the move and clipping to 30 x 20
CASES = {
    # int(30 * 0.1) = 3 pixels right.
    'translate_x': (TranslateX, dict(max_mag=0.1), [[1, 0, 3], [0, 1, 0], [0, 0, 1]],
                    [[5, 2, 11, 8], [13, 4, 23, 12]]),
    # int(20 * 0.2) = 4 pixels down.
    'translate_y': (TranslateY, dict(max_mag=0.2), [[1, 0, 0], [0, 1, 4], [0, 0, 1]],
                    [[2, 6, 8, 12], [10, 8, 20, 16]]),
    # tan(45 deg) = 1: x' = x + y; [10, 20] x [4, 12] -> x' in [14, 32], clipped to 30.
    'shear_x': (ShearX, dict(max_mag=45.), [[1, 1, 0], [0, 1, 0], [0, 0, 1]],
                [[4, 2, 16, 8], [14, 4, 30, 12]]),
    # y' = y + x; [10, 20] x [4, 12] -> y' in [14, 32], clipped to 20.
    'shear_y': (ShearY, dict(max_mag=45.), [[1, 0, 0], [1, 1, 0], [0, 0, 1]],
                [[2, 4, 8, 16], [10, 14, 20, 20]]),
    # 90 deg clockwise about (14.5, 9.5): x' = 24 - y, y' = x - 5.
    'rotate': (Rotate, dict(max_mag=90.), [[0, -1, 24], [1, 0, -5], [0, 0, 1]],
               [[16, 0, 22, 3], [12, 5, 20, 15]]),
}


def build(case: str, **extra):
    op, kwargs, _, _ = CASES[case]
    return op(**{'level': 10, 'reversal_prob': 1.0, 'interpolation': 'nearest', **kwargs,
                 **extra})


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('mask_type', ['bitmap', 'polygon'])
@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_boxes_masks_and_homography_agree(case, mask_type, box_kind):
    _, _, matrix, expected = CASES[case]
    results = use_box_kind(make_results(BOXES, labels=[4, 5], ignore=[False, True],
                                        masks=mask_type), box_kind)
    results = build(case)(results)
    np.testing.assert_allclose(results['homography_matrix'], matrix, atol=1e-6)
    assert results['homography_matrix'].dtype == np.float32
    boxes = boxes_array(results, box_kind)
    np.testing.assert_allclose(boxes, expected, atol=1e-4)
    # The recorded matrix maps the input corners onto the output boxes (before clipping).
    np.testing.assert_allclose(
        boxes, clip_boxes(project_corners(BOXES, results['homography_matrix']), H, W),
        atol=1e-4)
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [4, 5])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [False, True])
    assert results['img'].shape == (H, W, 3)
    masks = results['gt_masks']
    assert len(masks) == 2 and (masks.height, masks.width) == (H, W)
    # A clipped hull can be looser than the clipped mask (a sheared box cut diagonally by
    # the border), so masks are compared with the boxes that stayed inside the image.
    projected = project_corners(BOXES, matrix)
    inside = ((projected[:, :2] >= 0) & (projected[:, 2:] <= [W, H])).all(axis=1)
    assert inside.any()
    np.testing.assert_allclose(mask_boxes(masks)[inside], boxes[inside], atol=1)


def test_translate_moves_pixels_and_fills_the_border():
    results = build('translate_x', img_border_value=(10, 20, 30))(make_results(BOXES))
    img = make_image()
    np.testing.assert_array_equal(results['img'][:, 3:], img[:, :-3])
    assert (results['img'][:, :3] == [10, 20, 30]).all()
    np.testing.assert_array_equal(results['gt_masks'].masks[1, 4:12, 13:23], 1)
    assert results['gt_masks'].masks[1].sum() == 8 * 10


def test_shear_and_rotate_move_pixels_as_their_matrices_say():
    img = make_image()
    sheared = build('shear_x')(make_results(BOXES))['img']
    for y, x in [(5, 10), (12, 20), (19, 29)]:  # output (y, x) comes from (y, x - y)
        np.testing.assert_array_equal(sheared[y, x], img[y, x - y])
    rotated = build('rotate')(make_results(BOXES))['img']
    for y, x in [(5, 10), (0, 24), (14, 20)]:  # output (y, x) comes from (24 - x, y + 5)
        np.testing.assert_array_equal(rotated[y, x], img[24 - x, y + 5])
    assert (rotated[0, 0] == 128).all()  # source (24, 5) is below the image


def test_reversal_negates_the_magnitude():
    op = TranslateY(level=10, max_mag=0.2, reversal_prob=0.0)
    results = op(make_results(BOXES))
    np.testing.assert_allclose(results['homography_matrix'][1, 2], -4)
    np.testing.assert_allclose(results['gt_bboxes'], [[2, 0, 8, 4], [10, 0, 20, 8]])


def test_homographies_chain_in_application_order():
    results = make_results([[4, 3, 9, 7]], masks=None)
    results = build('translate_x')(results)
    results = build('shear_y')(results)
    shift = np.array([[1, 0, 3], [0, 1, 0], [0, 0, 1]])
    shear = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(results['homography_matrix'], shear @ shift, atol=1e-6)
    # x' = x + 3 in [7, 12], then y'' = y + x' in [10, 19].
    np.testing.assert_allclose(results['gt_bboxes'], [[7, 10, 12, 19]], atol=1e-5)
    np.testing.assert_allclose(
        results['gt_bboxes'], project_corners([[4, 3, 9, 7]], results['homography_matrix']),
        atol=1e-5)


def test_semantic_map_uses_nearest_and_ignore_label():
    results = make_results(BOXES, masks=None)
    seg = np.zeros((H, W), dtype=np.uint8)
    seg[4:12, 10:20] = 7
    results['gt_seg_map'] = seg
    results = build('translate_x', seg_ignore_label=200, interpolation='bilinear')(results)
    expected = np.full((H, W), 200, dtype=np.uint8)
    expected[:, 3:] = seg[:, :-3]
    np.testing.assert_array_equal(results['gt_seg_map'], expected)


@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_empty_instances(case, box_kind):
    results = use_box_kind(make_results([], masks='bitmap'), box_kind)
    results = build(case)(results)
    assert boxes_array(results, box_kind).shape == (0, 4)
    assert len(results['gt_masks']) == 0
    assert (results['gt_masks'].height, results['gt_masks'].width) == (H, W)


def test_prob_zero_changes_nothing():
    results = TranslateX(prob=0.0, level=10)(make_results(BOXES))
    np.testing.assert_array_equal(results['img'], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)
    assert 'homography_matrix' not in results


def test_random_level_draws_within_range():
    np.random.seed(0)
    for _ in range(20):
        results = TranslateX(max_mag=0.1)(make_results(BOXES, masks=None))
        assert results['homography_matrix'][0, 2] in range(-3, 4)


def test_level_to_mag():
    assert level_to_mag(10, 0., 30.) == 30.
    assert level_to_mag(5, 0., 30.) == 15.
    assert level_to_mag(3, 0., 0.1) == 0.0  # round(0.03, 1)
    assert level_to_mag(0, 2., 4.) == 2.
    np.random.seed(1)
    draws = [level_to_mag(None, 1., 2.) for _ in range(50)]
    assert all(1. <= d <= 2. and round(d, 1) == d for d in draws)


def test_geom_transform_base_is_identity_with_identity_homography():
    results = GeomTransform(level=3)(make_results(BOXES))
    np.testing.assert_array_equal(results['homography_matrix'], np.eye(3))
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)


def test_build_from_registry_and_repr():
    op = TRANSFORMS.build(dict(type='Rotate', level=5, img_border_value=(1, 2, 3)))
    assert isinstance(op, Rotate)
    assert repr(op) == ('Rotate(prob=1.0, level=5, min_mag=0.0, max_mag=30.0, '
                        'reversal_prob=0.5, img_border_value=(1.0, 2.0, 3.0), '
                        'mask_border_value=0, seg_ignore_label=255, interpolation=bilinear)')
    assert repr(TranslateY()) == (
        'TranslateY(prob=1.0, level=None, min_mag=0.0, max_mag=0.1, reversal_prob=0.5, '
        'img_border_value=(128.0, 128.0, 128.0), mask_border_value=0, '
        'seg_ignore_label=255, interpolation=bilinear)')


@pytest.mark.parametrize('op, kwargs', [
    (GeomTransform, dict(prob=1.5)),
    (GeomTransform, dict(level=11)),
    (GeomTransform, dict(level=2.5)),
    (GeomTransform, dict(min_mag=0)),           # must be a float
    (GeomTransform, dict(max_mag=1)),
    (GeomTransform, dict(min_mag=0.8, max_mag=0.5)),
    (GeomTransform, dict(reversal_prob=1)),     # must be a float
    (GeomTransform, dict(reversal_prob=1.5)),
    (GeomTransform, dict(img_border_value=(1, 2))),
    (GeomTransform, dict(img_border_value=300)),
    (ShearX, dict(max_mag=91.)),
    (ShearY, dict(min_mag=-1.)),
    (Rotate, dict(max_mag=181.)),
    (TranslateX, dict(max_mag=1.5)),
    (TranslateY, dict(min_mag=-0.1)),
])
def test_invalid_args_raise_assertion_errors(op, kwargs):
    with pytest.raises(AssertionError, match='|'.join(kwargs)):
        op(**kwargs)


def test_img_border_value_of_wrong_type_is_a_value_error():
    with pytest.raises(ValueError, match='img_border_value'):
        Rotate(img_border_value=[1, 2, 3])
