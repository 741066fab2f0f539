"""Numpy ``bbox_overlaps`` of mmdet.evaluation: hand values, legacy +1 pixels, torchvision."""
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from mmdet_lite.evaluation import bbox_overlaps
from mmdet_lite.evaluation.functional import bbox_overlaps as functional_bbox_overlaps

A = np.array([[0, 0, 10, 10], [0, 0, 4, 4]], dtype=np.float64)
B = np.array([[5, 0, 15, 10]], dtype=np.float64)


def test_exported_from_both_packages():
    assert bbox_overlaps is functional_bbox_overlaps


def test_iou_and_iof_hand_values():
    ious = bbox_overlaps(A, B)
    assert ious.dtype == np.float32 and ious.shape == (2, 1)
    # overlap 5*10 = 50; union 100 + 100 - 50; second box does not overlap
    np.testing.assert_allclose(ious, [[50 / 150], [0.]], rtol=1e-6)
    iofs = bbox_overlaps(A, B, mode='iof')  # over the area of the A box
    np.testing.assert_allclose(iofs, [[50 / 100], [0.]], rtol=1e-6)
    # more rows than columns and the reverse give transposed results
    np.testing.assert_allclose(bbox_overlaps(B, A), ious.T, rtol=1e-6)
    np.testing.assert_allclose(bbox_overlaps(B, A, mode='iof'), [[50 / 100, 0.]], rtol=1e-6)


def test_legacy_coordinate_hand_values():
    # +1 pixels: A0 is 11x11 = 121, B is 11x11, overlap x 5..10 -> 6, y 0..10 -> 11: 66
    ious = bbox_overlaps(A[:1], B, use_legacy_coordinate=True)
    np.testing.assert_allclose(ious, [[66 / (121 + 121 - 66)]], rtol=1e-6)
    iofs = bbox_overlaps(A[:1], B, mode='iof', use_legacy_coordinate=True)
    np.testing.assert_allclose(iofs, [[66 / 121]], rtol=1e-6)
    # touching boxes overlap by one pixel row in the legacy system only
    touch1, touch2 = np.array([[0, 0, 2, 2]]), np.array([[2, 0, 4, 2]])
    assert bbox_overlaps(touch1, touch2)[0, 0] == 0
    np.testing.assert_allclose(bbox_overlaps(touch1, touch2, use_legacy_coordinate=True),
                               [[3 / (9 + 9 - 3)]], rtol=1e-6)


def test_vs_torchvision():
    rng = np.random.default_rng(0)
    xy1 = rng.uniform(0, 50, (7, 2))
    b1 = np.concatenate([xy1, xy1 + rng.uniform(1, 30, (7, 2))], 1)
    xy2 = rng.uniform(0, 50, (5, 2))
    b2 = np.concatenate([xy2, xy2 + rng.uniform(1, 30, (5, 2))], 1)
    expected = box_iou(torch.from_numpy(b1), torch.from_numpy(b2)).numpy()
    np.testing.assert_allclose(bbox_overlaps(b1, b2), expected, rtol=1e-5, atol=1e-6)


def test_empty_and_bad_mode():
    assert bbox_overlaps(np.zeros((0, 4)), B).shape == (0, 1)
    assert bbox_overlaps(A, np.zeros((0, 4))).shape == (2, 0)
    with pytest.raises(AssertionError, match='mode'):
        bbox_overlaps(A, B, mode='giou')


def test_score_column_is_ignored():
    # Detections carry a 5th score column; mmdetection's numpy overlaps read only x1..y2.
    dets = np.array([[0, 0, 10, 10, 0.9]], dtype=np.float32)
    gts = np.array([[5, 0, 15, 10]], dtype=np.float32)
    assert np.allclose(bbox_overlaps(dets, gts), [[50 / 150]])
