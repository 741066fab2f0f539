"""DistancePointBBoxCoder, TBLRBBoxCoder, YOLOBBoxCoder, PseudoBBoxCoder: hand values."""
import math

import pytest
import torch

from mmdet_lite.models.task_modules.coders import (BaseBBoxCoder, DistancePointBBoxCoder,
                                                   PseudoBBoxCoder, TBLRBBoxCoder,
                                                   YOLOBBoxCoder)
from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import HorizontalBoxes


@pytest.mark.parametrize('name', ['DistancePointBBoxCoder', 'TBLRBBoxCoder', 'YOLOBBoxCoder',
                                  'PseudoBBoxCoder', 'BucketingBBoxCoder',
                                  'LegacyDeltaXYWHBBoxCoder', 'DeltaXYWHBBoxCoder'])
def test_coders_registered_with_base_attributes(name):
    extra = dict(num_buckets=4, scale_factor=1) if name == 'BucketingBBoxCoder' else {}
    coder = TASK_UTILS.build(dict(type=name, **extra))
    assert isinstance(coder, BaseBBoxCoder)
    assert coder.encode_size == 4 and coder.use_box_type is False
    assert TASK_UTILS.build(dict(type=name, use_box_type=True, **extra)).use_box_type


# ---- DistancePointBBoxCoder -------------------------------------------------------------

def test_distance_point_encode_hand_values_and_max_dis():
    coder = DistancePointBBoxCoder()
    points = torch.tensor([[5., 5.]])
    gts = torch.tensor([[1., 2., 9., 10.]])
    torch.testing.assert_close(coder.encode(points, gts), torch.tensor([[4., 3., 4., 5.]]))
    # max_dis=4, eps=0.1: distances clamp to 3.9
    torch.testing.assert_close(coder.encode(points, HorizontalBoxes(gts), max_dis=4.),
                               torch.tensor([[3.9, 3., 3.9, 3.9]]))


def test_distance_point_decode_clip_and_box_type():
    points = torch.tensor([[5., 5.], [2., 2.]])
    dist = torch.tensor([[4., 3., 4., 5.], [3., 3., 1., 1.]])
    coder = DistancePointBBoxCoder()
    torch.testing.assert_close(coder.decode(points, dist),
                               torch.tensor([[1., 2., 9., 10.], [-1., -1., 3., 3.]]))
    torch.testing.assert_close(coder.decode(points, dist, max_shape=(8, 8, 3)),
                               torch.tensor([[1., 2., 8., 8.], [0., 0., 3., 3.]]))
    # clip_border=False ignores max_shape
    no_clip = DistancePointBBoxCoder(clip_border=False)
    assert no_clip.decode(points, dist, max_shape=(8, 8))[0, 3] == 10
    boxes = DistancePointBBoxCoder(use_box_type=True).decode(points, dist)
    assert isinstance(boxes, HorizontalBoxes)


def test_distance_point_batched_per_image_max_shape():
    coder = DistancePointBBoxCoder()
    points = torch.tensor([[5., 5.]]).expand(2, 1, 2)
    dist = torch.full((2, 1, 4), 4.)
    out = coder.decode(points, dist, max_shape=[(6, 8), (100, 7)])
    torch.testing.assert_close(out, torch.tensor([[[1., 1., 8., 6.]], [[1., 1., 7., 9.]]]))


def test_distance_point_bad_shapes_are_assertion_errors():
    coder = DistancePointBBoxCoder()
    with pytest.raises(AssertionError):
        coder.encode(torch.zeros(2, 2), torch.zeros(3, 4))
    with pytest.raises(AssertionError):
        coder.decode(torch.zeros(2, 3), torch.zeros(2, 4))


# ---- TBLRBBoxCoder ----------------------------------------------------------------------

PRIOR = torch.tensor([[0., 0., 10., 20.]])  # centre (5, 10), w 10, h 20
GT = torch.tensor([[2., 4., 9., 18.]])  # top 6, bottom 8, left 3, right 4


def test_tblr_encode_hand_values_default_normalizer():
    # (6/20, 8/20, 3/10, 4/10) / 4
    torch.testing.assert_close(TBLRBBoxCoder().encode(PRIOR, GT),
                               torch.tensor([[0.075, 0.1, 0.075, 0.1]]))


def test_tblr_encode_per_side_normalizer_and_round_trip():
    coder = TBLRBBoxCoder(normalizer=[1., 2., 3., 4.])
    enc = coder.encode(HorizontalBoxes(PRIOR), HorizontalBoxes(GT))
    torch.testing.assert_close(enc, torch.tensor([[0.3, 0.2, 0.1, 0.1]]))
    torch.testing.assert_close(coder.decode(PRIOR, enc), GT)


def test_tblr_decode_clips_and_batches():
    coder = TBLRBBoxCoder()
    enc = coder.encode(PRIOR, GT)
    torch.testing.assert_close(coder.decode(PRIOR, enc, max_shape=(15, 8)),
                               torch.tensor([[2., 4., 8., 15.]]))
    torch.testing.assert_close(TBLRBBoxCoder(clip_border=False).decode(PRIOR, enc, (15, 8)), GT)
    batched = coder.decode(PRIOR.expand(2, 1, 4), enc.expand(2, 1, 4),
                           max_shape=[(15, 8), (100, 100)])
    torch.testing.assert_close(batched, torch.stack([torch.tensor([[2., 4., 8., 15.]]), GT]))
    assert isinstance(TBLRBBoxCoder(use_box_type=True).decode(PRIOR, enc), HorizontalBoxes)


def test_tblr_bad_normalizer_length_is_assertion_error():
    with pytest.raises(AssertionError):
        TBLRBBoxCoder(normalizer=[1., 2.]).encode(PRIOR, GT)


# ---- YOLOBBoxCoder ----------------------------------------------------------------------

def test_yolo_encode_hand_values_with_stride():
    anchors = torch.tensor([[0., 0., 32., 32.], [0., 0., 16., 16.]])
    gts = torch.tensor([[8., 8., 40., 24.], [4., 0., 12., 16.]])
    # 1st: centre (24, 16) vs (16, 16), stride 32 -> cx 0.75, cy 0.5; w 32/32, h 16/32
    # 2nd: centre (8, 8) vs (8, 8), stride 8 -> 0.5, 0.5; w 8/16, h 16/16
    enc = YOLOBBoxCoder().encode(anchors, gts, torch.tensor([32., 8.]))
    torch.testing.assert_close(enc, torch.tensor([[0.75, 0.5, 0., math.log(0.5)],
                                                  [0.5, 0.5, math.log(0.5), 0.]]))
    # an int stride is used for every anchor; centres outside the cell clamp to [eps, 1-eps]
    enc8 = YOLOBBoxCoder().encode(anchors[:1], gts[:1], 8)
    assert enc8[0, 0] == pytest.approx(1 - 1e-6)


def test_yolo_decode_round_trip_and_batched_strides():
    coder = YOLOBBoxCoder()
    anchors = torch.tensor([[0., 0., 32., 32.], [0., 0., 16., 16.]])
    gts = torch.tensor([[8., 8., 40., 24.], [4., 0., 12., 16.]])
    strides = torch.tensor([32., 8.])
    enc = coder.encode(anchors, gts, strides)
    torch.testing.assert_close(coder.decode(anchors, enc, strides[:, None]), gts)
    # YOLOV3Head decodes [B, N, 4] predictions with [N, 1] strides
    batched = coder.decode(anchors, enc.expand(3, 2, 4), strides[:, None])
    torch.testing.assert_close(batched, gts.expand(3, 2, 4))
    assert isinstance(YOLOBBoxCoder(use_box_type=True).decode(anchors, enc, 32),
                      HorizontalBoxes)


# ---- PseudoBBoxCoder --------------------------------------------------------------------

def test_pseudo_coder_is_identity():
    coder = PseudoBBoxCoder()
    gts = torch.tensor([[1., 2., 3., 4.]])
    assert torch.equal(coder.encode(None, HorizontalBoxes(gts)), gts)
    pred = torch.tensor([[5., 6., 7., 8.]])
    assert coder.decode(None, pred) is pred
    boxed = PseudoBBoxCoder(use_box_type=True).decode(None, pred)
    assert isinstance(boxed, HorizontalBoxes) and torch.equal(boxed.tensor, pred)
