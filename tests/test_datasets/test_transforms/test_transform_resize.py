"""Resize on a 20 x 30 (h x w) image with hand-computed boxes, for array and box inputs."""
import numpy as np
import pytest
from transform_helpers import (BOX_KINDS, assert_homography_maps_boxes,
                               assert_masks_match_boxes, boxes_as_array, make_results,
                               with_box_kind)

from mmdet_lite.datasets.transforms import Resize
from mmdet_lite.registry import TRANSFORMS

BOXES = [[3, 4, 9, 16], [10, 0, 30, 20]]


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_exact_scale_without_keep_ratio(kind):
    results = Resize(scale=(60, 10))(with_box_kind(make_results(BOXES), kind))
    assert results['img'].shape == (10, 60, 3)
    assert results['img_shape'] == (10, 60)
    assert results['scale'] == (60, 10)
    assert results['scale_factor'] == (2.0, 0.5)
    assert results['keep_ratio'] is False
    # x * 2, y * 0.5
    np.testing.assert_allclose(boxes_as_array(results, kind), [[6, 2, 18, 8], [20, 0, 60, 10]])
    np.testing.assert_array_equal(results['homography_matrix'],
                                  [[2, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    assert_homography_maps_boxes(BOXES, results, kind)
    assert_masks_match_boxes(results)


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_keep_ratio_fits_long_and_short_edge(kind):
    # Long edge <= 60 and short edge <= 50: factor min(60 / 30, 50 / 20) = 2.
    results = Resize(scale=(60, 50), keep_ratio=True)(with_box_kind(make_results(BOXES), kind))
    assert results['img_shape'] == (40, 60)
    assert results['scale_factor'] == (2.0, 2.0)
    np.testing.assert_allclose(boxes_as_array(results, kind), [[6, 8, 18, 32], [20, 0, 60, 40]])
    assert_homography_maps_boxes(BOXES, results, kind)
    assert_masks_match_boxes(results)


def test_keep_ratio_limited_by_short_edge():
    # (1333, 10): factor min(1333 / 30, 10 / 20) = 0.5 -> 10 x 15.
    results = Resize(scale=(1333, 10), keep_ratio=True)(make_results(BOXES, masks='polygon'))
    assert results['img_shape'] == (10, 15)
    np.testing.assert_allclose(results['gt_bboxes'], [[1.5, 2, 4.5, 8], [5, 0, 15, 10]])
    assert_masks_match_boxes(results)


@pytest.mark.parametrize('scale_factor, shape, expected_sf', [
    (0.5, (10, 15), (0.5, 0.5)),
    ((2.0, 1.0), (20, 60), (2.0, 1.0)),
])
def test_scale_factor(scale_factor, shape, expected_sf):
    results = Resize(scale_factor=scale_factor)(make_results(BOXES))
    assert results['img_shape'] == shape
    assert results['scale_factor'] == expected_sf
    w_sf, h_sf = expected_sf
    expected = np.array(BOXES, dtype=np.float32) * [w_sf, h_sf, w_sf, h_sf]
    np.testing.assert_allclose(results['gt_bboxes'], expected)
    assert_masks_match_boxes(results)


def test_numpy_and_box_inputs_give_the_same_numbers():
    outputs = {kind: Resize(scale=(47, 13))(with_box_kind(make_results(BOXES), kind))
               for kind in BOX_KINDS}
    np.testing.assert_array_equal(outputs['numpy']['gt_bboxes'],
                                  outputs['hbox']['gt_bboxes'].numpy())
    np.testing.assert_array_equal(outputs['numpy']['homography_matrix'],
                                  outputs['hbox']['homography_matrix'])


def test_homography_composes_with_an_earlier_one():
    results = Resize(scale=(60, 40))(make_results(BOXES, masks=None))   # x2, x2
    results = Resize(scale=(15, 10))(results)                            # x0.25, x0.25
    np.testing.assert_allclose(results['homography_matrix'],
                               [[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    assert_homography_maps_boxes(BOXES, results, 'numpy')


def test_scale_wins_over_scale_factor():
    results = Resize(scale=(60, 40), scale_factor=0.5)(make_results(BOXES))
    assert results['img_shape'] == (40, 60)


def test_polygon_masks_resize_with_boxes():
    results = Resize(scale=(60, 10))(make_results(BOXES, masks='polygon'))
    assert results['gt_masks'].height == 10 and results['gt_masks'].width == 60
    assert_masks_match_boxes(results)


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_clip_object_border(kind):
    # A box sticking out of the right border (allowed for some datasets).
    results = make_results([[25, 0, 35, 10]], masks=None)
    clipped = Resize(scale=(60, 40))(
        with_box_kind(dict(results, gt_bboxes=results['gt_bboxes'].copy()), kind))
    np.testing.assert_allclose(boxes_as_array(clipped, kind), [[50, 0, 60, 20]])
    unclipped = Resize(scale=(60, 40), clip_object_border=False)(with_box_kind(results, kind))
    np.testing.assert_allclose(boxes_as_array(unclipped, kind), [[50, 0, 70, 20]])


def test_semantic_map_uses_nearest():
    results = make_results(BOXES, masks=None)
    seg = np.zeros((20, 30), dtype=np.uint8)
    seg[:, 15:] = 3
    results['gt_seg_map'] = seg
    results = Resize(scale=(60, 10))(results)
    assert results['gt_seg_map'].shape == (10, 60)
    assert set(np.unique(results['gt_seg_map'])) == {0, 3}
    assert (results['gt_seg_map'][:, 30:] == 3).all()


def test_int_scale_and_registry_build():
    resize = TRANSFORMS.build(dict(type='Resize', scale=16))
    assert isinstance(resize, Resize)
    assert resize(make_results(BOXES, masks=None))['img_shape'] == (16, 16)


def test_bad_arguments():
    # mmcv asserts that one of scale / scale_factor is given.
    with pytest.raises(AssertionError, match='scale'):
        Resize()
    with pytest.raises(TypeError, match='scale'):
        Resize(scale=(1, 2, 3))
    with pytest.raises(ValueError, match='placeholder'):
        Resize(scale=0)(make_results(BOXES))
    with pytest.raises(KeyError, match="results\\['img'\\]"):
        Resize(scale=(10, 10))({})


def test_repr():
    # mmdetection's format, unbalanced parentheses included.
    assert repr(Resize(scale=(60, 10), keep_ratio=True)) == (
        'Resize(scale=(60, 10), scale_factor=None, keep_ratio=True, '
        'clip_object_border=True), backend=cv2), interpolation=bilinear)')
    assert repr(Resize(scale_factor=0.5)) == (
        'Resize(scale=None, scale_factor=(0.5, 0.5), keep_ratio=False, '
        'clip_object_border=True), backend=cv2), interpolation=bilinear)')
