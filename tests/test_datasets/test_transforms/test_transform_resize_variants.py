"""FixShapeResize, FixScaleResize, ResizeShortestEdge and SegRescale on a 20 x 30 image."""
import numpy as np
import pytest
from transform_helpers import (BOX_KINDS, assert_homography_maps_boxes,
                               assert_masks_match_boxes, boxes_as_array, make_image,
                               make_results, with_box_kind)

from mmdet_lite.datasets.transforms import (FixScaleResize, FixShapeResize, Resize,
                                            ResizeShortestEdge, SegRescale)
from mmdet_lite.registry import TRANSFORMS

BOXES = [[3, 4, 9, 16], [10, 0, 30, 20]]


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_fix_shape_resize_stretches(kind):
    results = FixShapeResize(width=60, height=10)(with_box_kind(make_results(BOXES), kind))
    assert results['img'].shape == (10, 60, 3)
    assert results['scale'] == (60, 10) and results['scale_factor'] == (2.0, 0.5)
    np.testing.assert_allclose(boxes_as_array(results, kind), [[6, 2, 18, 8], [20, 0, 60, 10]])
    np.testing.assert_allclose(results['homography_matrix'],
                               [[2, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    assert_homography_maps_boxes(BOXES, results, kind)
    assert_masks_match_boxes(results)


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_fix_shape_resize_keep_ratio_letterboxes(kind):
    # factor min(40 / 30, 40 / 20) = 4 / 3: 30 x 20 -> 40 x 27 (20 * 4 / 3 = 26.7 rounds
    # up), then padded with 5 on the bottom to 40 x 40.
    transform = FixShapeResize(width=40, height=40, keep_ratio=True, pad_val=dict(img=5))
    results = transform(with_box_kind(make_results(BOXES), kind))
    assert results['img'].shape == (40, 40, 3) and results['img_shape'] == (40, 40)
    assert results['pad_shape'] == (40, 40, 3) and results['scale'] == (40, 27)
    assert (results['img'][27:] == 5).all()
    np.testing.assert_allclose(results['scale_factor'], (4 / 3, 4 / 3))
    np.testing.assert_allclose(boxes_as_array(results, kind),
                               np.array(BOXES) * 4 / 3, rtol=1e-6)
    np.testing.assert_allclose(results['homography_matrix'],
                               [[4 / 3, 0, 0], [0, 4 / 3, 0], [0, 0, 1]], rtol=1e-6)
    assert_homography_maps_boxes(BOXES, results, kind)
    # The recorded factor is the exact 4/3 while the image was rounded: up to 1 px apart.
    assert_masks_match_boxes(results, atol=1.0)


def test_fix_scale_resize_truncates_where_resize_rounds():
    # keep_ratio with scale (1000, 25): factor min(1000 / 30, 25 / 20) = 1.25 and
    # 30 * 1.25 = 37.5: Resize rounds to 38, FixScaleResize truncates to 37.
    rounded = Resize(scale=(1000, 25), keep_ratio=True)(make_results(BOXES, masks=None))
    assert rounded['img_shape'] == (25, 38)
    results = FixScaleResize(scale=(1000, 25), keep_ratio=True)(
        with_box_kind(make_results(BOXES), 'hbox'))
    assert results['img_shape'] == (25, 37)
    assert results['scale_factor'] == (37 / 30, 25 / 20)
    assert_homography_maps_boxes(BOXES, results, 'hbox')
    assert_masks_match_boxes(results)
    # Without keep_ratio it is Resize.
    stretched = FixScaleResize(scale=(60, 10))(make_results(BOXES, masks=None))
    np.testing.assert_allclose(stretched['gt_bboxes'], [[6, 2, 18, 8], [20, 0, 60, 10]])


@pytest.mark.parametrize('scale, max_size, shape', [
    (40, None, (40, 60)),        # short side 20 -> 40, long side 30 -> 60
    ((40, 80), None, (40, 60)),  # a tuple means its minimum
    (40, 50, (33, 50)),          # long side capped at 50: 40 * 50 / 60 = 33.3 -> 33
])
def test_resize_shortest_edge(scale, max_size, shape):
    transform = TRANSFORMS.build(dict(type='ResizeShortestEdge', scale=scale,
                                      max_size=max_size))
    assert isinstance(transform.resize, Resize)
    results = transform(with_box_kind(make_results(BOXES), 'hbox'))
    assert results['img_shape'] == shape
    h, w = shape
    assert results['scale_factor'] == (w / 30, h / 20)
    assert_homography_maps_boxes(BOXES, results, 'hbox')
    assert_masks_match_boxes(results)


def test_resize_shortest_edge_portrait_image():
    img = make_image(30, 20)  # h > w: the width is the short side
    results = ResizeShortestEdge(scale=10)(dict(img=img, img_shape=(30, 20)))
    assert results['img_shape'] == (15, 10)


def test_seg_rescale():
    seg = make_image()[..., 2]
    results = SegRescale(scale_factor=0.5)(dict(gt_seg_map=seg.copy()))
    # Nearest neighbour at exactly half size takes every other pixel.
    np.testing.assert_array_equal(results['gt_seg_map'], seg[::2, ::2])
    untouched = SegRescale()(dict(gt_seg_map=seg))
    assert untouched['gt_seg_map'] is seg


def test_reprs():
    # mmdetection's formats, unbalanced parentheses included.
    assert repr(FixShapeResize(width=60, height=10)) == (
        'FixShapeResize(width=60, height=10, keep_ratio=False, clip_object_border=True), '
        'backend=cv2), interpolation=bilinear)')
    assert repr(FixScaleResize(scale=(1333, 800), keep_ratio=True)) == (
        'FixScaleResize(scale=(1333, 800), scale_factor=None, keep_ratio=True, '
        'clip_object_border=True), backend=cv2), interpolation=bilinear)')
    assert repr(SegRescale(scale_factor=0.125)) == 'SegRescale(scale_factor=0.125, backend=cv2)'


def test_fix_shape_resize_needs_both_sides():
    with pytest.raises(AssertionError, match='width'):
        FixShapeResize(width=None, height=10)
