"""Expand a 20 x 30 (h x w) image onto a canvas, with the draws pinned or seeded.

Pinned: ratio 2 -> a 40 x 60 canvas, image top-left corner at (left, top) = (5, 7), so every
box moves by (+5, +7) and the image occupies rows 7..26, columns 5..34.
"""
import numpy as np
import pytest
from geom_helpers import BOX_KINDS, assert_instances_aligned, boxes_array, use_box_kind
from transform_helpers import H, W, make_image, make_results

from mmdet_lite.datasets.transforms import Expand

BOXES = [[2, 2, 8, 8], [10, 4, 30, 20]]


def pinned(ratio=2.0, left_top=(5, 7), **kwargs) -> Expand:
    expand = Expand(prob=1.0, **kwargs)
    expand._random_ratio = lambda: ratio
    expand._random_left_top = lambda r, h, w: left_top
    return expand


@pytest.mark.parametrize('mask_type', ['bitmap', 'polygon'])
@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_image_boxes_and_masks_move_together(mask_type, box_kind):
    results = use_box_kind(make_results(BOXES, labels=[3, 4], ignore=[True, False],
                                        masks=mask_type), box_kind)
    results = pinned(mean=(1, 2, 3))(results)
    img = results['img']
    assert img.shape == (40, 60, 3) and results['img_shape'] == (40, 60)
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img[7:27, 5:35], make_image())
    # mean is given in RGB and reversed for the BGR image.
    outside = np.ones((40, 60), dtype=bool)
    outside[7:27, 5:35] = False
    assert (img[outside] == [3, 2, 1]).all()
    np.testing.assert_allclose(boxes_array(results, box_kind),
                               [[7, 9, 13, 15], [15, 11, 35, 27]])
    np.testing.assert_array_equal(results['gt_bboxes_labels'], [3, 4])
    np.testing.assert_array_equal(results['gt_ignore_flags'], [True, False])
    assert_instances_aligned(results, box_kind, atol=0)


def test_mean_order_without_to_rgb():
    results = pinned(mean=(1, 2, 3), to_rgb=False)(make_results(BOXES, masks=None))
    assert (results['img'][0, 0] == [1, 2, 3]).all()


def test_semantic_map_is_padded_with_the_ignore_label():
    results = make_results(BOXES, masks=None)
    seg = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 7
    results['gt_seg_map'] = seg
    results = pinned(seg_ignore_label=255)(results)
    expected = np.full((40, 60), 255, dtype=np.uint8)
    expected[7:27, 5:35] = seg
    np.testing.assert_array_equal(results['gt_seg_map'], expected)


def test_semantic_map_needs_an_ignore_label():
    results = make_results(BOXES, masks=None)
    results['gt_seg_map'] = np.zeros((H, W), dtype=np.uint8)
    with pytest.raises(TypeError, match='seg_ignore_label'):
        pinned()(results)


@pytest.mark.parametrize('box_kind', BOX_KINDS)
def test_empty_instances(box_kind):
    results = pinned()(use_box_kind(make_results([]), box_kind))
    assert boxes_array(results, box_kind).shape == (0, 4)
    assert (results['gt_masks'].height, results['gt_masks'].width) == (40, 60)


def test_probability_zero_keeps_the_sample():
    results = Expand(prob=0.0)(make_results(BOXES))
    np.testing.assert_array_equal(results['img'], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)


def test_seeded_draws_place_image_where_boxes_went():
    np.random.seed(3)
    expand = Expand(prob=1.0, ratio_range=(1.5, 3))
    for _ in range(10):
        results = expand(make_results(BOXES))
        canvas_h, canvas_w = results['img'].shape[:2]
        assert 1.5 * H - 1 < canvas_h <= 3 * H and 1.5 * W - 1 < canvas_w <= 3 * W
        left, top = (results['gt_bboxes'][0, :2] - BOXES[0][:2]).astype(int)
        assert 0 <= left <= canvas_w - W and 0 <= top <= canvas_h - H
        np.testing.assert_array_equal(results['img'][top:top + H, left:left + W], make_image())
        assert_instances_aligned(results, atol=0)


def test_missing_image_is_an_assertion_error():
    with pytest.raises(AssertionError, match='img'):
        pinned()(dict(gt_bboxes=np.zeros((0, 4), np.float32)))


def test_repr():
    assert repr(Expand()) == ('Expand(mean=(0, 0, 0), to_rgb=True, ratio_range=(1, 4), '
                              'seg_ignore_label=None, prob=0.5)')
    assert repr(Expand(mean=[1, 2, 3], seg_ignore_label=255, prob=1.0)) == (
        'Expand(mean=[3, 2, 1], to_rgb=True, ratio_range=(1, 4), '
        'seg_ignore_label=255, prob=1.0)')
