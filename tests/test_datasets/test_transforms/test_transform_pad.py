"""Pad on a 20 x 30 (h x w) image: fixed size, size divisor, square, padding values."""
import numpy as np
import pytest
from transform_helpers import (BOX_KINDS, assert_masks_match_boxes, boxes_as_array,
                               make_image, make_results, with_box_kind)

from mmdet_lite.datasets.transforms import Pad

BOXES = [[3, 2, 9, 8], [10, 5, 30, 20]]


@pytest.mark.parametrize('kwargs, shape', [
    (dict(size=(32, 24)), (24, 32)),                          # size is (w, h)
    (dict(size_divisor=16), (32, 32)),
    (dict(size_divisor=7), (21, 35)),
    (dict(pad_to_square=True), (30, 30)),
    (dict(pad_to_square=True, size_divisor=16), (32, 32)),
])
def test_output_shape(kwargs, shape):
    results = Pad(**kwargs)(make_results(BOXES))
    assert results['img'].shape == (*shape, 3)
    assert results['pad_shape'] == (*shape, 3)
    assert results['img_shape'] == shape
    assert results['pad_size_divisor'] == kwargs.get('size_divisor')
    # Padding is at the bottom/right: the image and the boxes do not move.
    np.testing.assert_array_equal(results['img'][:20, :30], make_image())
    np.testing.assert_allclose(results['gt_bboxes'], BOXES)
    assert_masks_match_boxes(results, atol=0)


@pytest.mark.parametrize('kind', BOX_KINDS)
def test_boxes_of_either_kind_pass_unchanged_and_no_homography(kind):
    results = Pad(size_divisor=16)(with_box_kind(make_results(BOXES), kind))
    np.testing.assert_allclose(boxes_as_array(results, kind), BOXES)
    # Bottom/right padding moves nothing: mmdetection records no homography for it.
    assert 'homography_matrix' not in results


def test_pad_values_for_image_masks_and_semantic_map():
    results = make_results(BOXES)
    results['gt_seg_map'] = np.ones((20, 30), dtype=np.uint8)
    results = Pad(size=(32, 24), pad_val=dict(img=7, masks=0, seg=255))(results)
    assert (results['img'][20:] == 7).all() and (results['img'][:, 30:] == 7).all()
    assert results['gt_masks'].masks.shape == (2, 24, 32)
    assert results['gt_masks'].masks[:, 20:].sum() == 0
    assert results['gt_seg_map'].shape == (24, 32)
    assert (results['gt_seg_map'][20:] == 255).all()
    assert (results['gt_seg_map'][:20, :30] == 1).all()


def test_number_pad_val_applies_to_image_only():
    transform = Pad(size_divisor=16, pad_val=3)
    assert transform.pad_val == dict(img=3, seg=255)
    results = transform(make_results(BOXES, masks='polygon'))
    assert (results['img'][20:] == 3).all()
    assert results['gt_masks'].height == 32 and results['gt_masks'].width == 32


def test_edge_padding_mode():
    results = Pad(size=(31, 21), padding_mode='edge')(make_results(BOXES, masks=None))
    np.testing.assert_array_equal(results['img'][20], results['img'][19])


def test_bad_arguments():
    # mmcv asserts on all of these.
    with pytest.raises(AssertionError, match='exactly one'):
        Pad()
    with pytest.raises(AssertionError, match='exactly one'):
        Pad(size=(32, 32), size_divisor=32)
    with pytest.raises(AssertionError, match='pad_to_square'):
        Pad(size=(32, 32), pad_to_square=True)
    with pytest.raises(ValueError, match='size_divisor'):
        Pad(size_divisor=0)
    with pytest.raises(AssertionError, match='padding_mode'):
        Pad(size_divisor=32, padding_mode='wrap')
    with pytest.raises(AssertionError, match='pad_val'):
        Pad(size_divisor=32, pad_val='black')


def test_repr():
    # mmcv's format, unbalanced parentheses and unquoted mode included.
    assert repr(Pad(size_divisor=32)) == (
        "Pad(size=None, size_divisor=32, pad_to_square=False, "
        "pad_val={'img': 0, 'seg': 255}), padding_mode=constant)")
    assert repr(Pad(size=(32, 24), pad_val=3)) == (
        "Pad(size=(32, 24), size_divisor=None, pad_to_square=False, "
        "pad_val={'img': 3, 'seg': 255}), padding_mode=constant)")


def test_per_channel_image_pad_value():
    # YOLOX/RTMDet configs write pad_val=dict(img=(114, 114, 114)).
    results = dict(img=np.zeros((5, 6, 3), dtype=np.uint8))
    results = Pad(size=(8, 8), pad_val=dict(img=(114, 115, 116)))(results)
    assert results['img'].shape == (8, 8, 3)
    np.testing.assert_array_equal(results['img'][7, 7], [114, 115, 116])
    np.testing.assert_array_equal(results['img'][0, 0], [0, 0, 0])
