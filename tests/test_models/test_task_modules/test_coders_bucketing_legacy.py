"""BucketingBBoxCoder (SABL), LegacyDeltaXYWHBBoxCoder and DeltaXYWHBBoxCoder.decode inputs."""
import math

import numpy as np
import pytest
import torch

from mmdet_lite.models.task_modules.coders import (BucketingBBoxCoder, DeltaXYWHBBoxCoder,
                                                   LegacyDeltaXYWHBBoxCoder)
from mmdet_lite.structures.bbox import HorizontalBoxes

# Proposal [0, 0, 8, 8], 4 buckets -> bucket size 2, 2 buckets per side, bucket centres:
# left (1, 3), right (7, 5), top (1, 3), down (7, 5).
PROPOSAL = torch.tensor([[0., 0., 8., 8.]])
GT = torch.tensor([[2.5, 0.8, 6.4, 8.]])


def test_bucketing_encode_hand_case():
    coder = BucketingBBoxCoder(num_buckets=4, scale_factor=1)
    offsets, offset_weights, labels, cls_weights = coder.encode(PROPOSAL, HorizontalBoxes(GT))
    # (bucket centre - gt side) / bucket size, sides l, r, t, d
    torch.testing.assert_close(offsets, torch.tensor([[-0.75, 0.25, 0.3, -0.7,
                                                       0.1, 1.1, -0.5, -1.5]]))
    # nearest bucket per side: l -> 1, r -> 0, t -> 0, d -> 0
    assert labels.tolist() == [[0., 1., 1., 0., 1., 0., 1., 0.]]
    # the 2nd nearest regresses only when its |offset| < offset_upperbound (1.0)
    assert offset_weights.tolist() == [[1., 1., 1., 1., 1., 0., 1., 0.]]
    # ignored: non-label buckets within one bucket of the gt side
    assert cls_weights.tolist() == [[0., 1., 1., 0., 1., 1., 1., 1.]]
    _, _, _, all_weights = BucketingBBoxCoder(4, 1, cls_ignore_neighbor=False).encode(
        PROPOSAL, GT)
    assert all_weights.tolist() == [[1.] * 8]


def test_bucketing_decode_recovers_gt_from_exact_predictions():
    coder = BucketingBBoxCoder(num_buckets=4, scale_factor=1)
    offsets, _, labels, _ = coder.encode(PROPOSAL, GT)
    boxes, conf = coder.decode(PROPOSAL, (labels * 20., offsets))
    torch.testing.assert_close(boxes, GT)
    # with 2 buckets per side the runner-up is always adjacent: confidence sums to 1
    torch.testing.assert_close(conf, torch.ones(1))
    clipped, _ = coder.decode(PROPOSAL, (labels * 20., offsets), max_shape=(6, 6))
    torch.testing.assert_close(clipped, torch.tensor([[2.5, 0.8, 5., 5.]]))
    box_coder = BucketingBBoxCoder(4, 1, use_box_type=True)
    boxed, _ = box_coder.decode(PROPOSAL, (labels * 20., offsets))
    assert isinstance(boxed, HorizontalBoxes)


def test_bucketing_scale_factor_and_confidence_of_non_adjacent_runner_up():
    # 6 buckets over the proposal scaled by 2 ([-4, -4, 12, 12]): bucket size 16/6
    coder = BucketingBBoxCoder(num_buckets=6, scale_factor=2)
    logits = torch.tensor([[2., 0., 1.] * 4])  # best bucket 0, runner-up bucket 2
    offsets = torch.zeros(1, 12)
    boxes, conf = coder.decode(PROPOSAL, (logits, offsets))
    size = 16 / 6
    torch.testing.assert_close(
        boxes, torch.tensor([[-4 + size / 2, -4 + size / 2, 12 - size / 2, 12 - size / 2]]))
    probs = np.exp([2., 0., 1.]) / np.exp([2., 0., 1.]).sum()
    torch.testing.assert_close(conf, torch.tensor([probs[0]], dtype=torch.float32))


def test_bucketing_bad_pred_is_assertion_error():
    with pytest.raises(AssertionError):
        BucketingBBoxCoder(4, 1).decode(PROPOSAL, (torch.zeros(1, 8), ))


def test_legacy_delta_hand_values_encode_and_decode():
    coder = LegacyDeltaXYWHBBoxCoder()
    prior = torch.tensor([[0., 0., 9., 9.]])  # width 10 with the +1
    gt = torch.tensor([[0., 0., 19., 19.]])  # width 20, centre shifted by 5
    enc = coder.encode(prior, gt)
    torch.testing.assert_close(enc, torch.tensor([[0.5, 0.5, math.log(2), math.log(2)]]))
    # decoding spans the full +1 size around the centre (no -1), as V1.x did: half a pixel
    # wider on each side than the encoded gt
    torch.testing.assert_close(coder.decode(prior, enc), gt + torch.tensor([-.5, -.5, .5, .5]))
    stds = LegacyDeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2))
    torch.testing.assert_close(stds.encode(prior, gt),
                               torch.tensor([[5., 5., math.log(2) / 0.2, math.log(2) / 0.2]]))


def test_legacy_delta_decode_matches_mmdetection_docstring_example():
    rois = torch.tensor([[0., 0., 1., 1.], [0., 0., 1., 1.], [0., 0., 1., 1.], [5., 5., 5., 5.]])
    deltas = torch.tensor([[0., 0., 0., 0.], [1., 1., 1., 1.], [0., 0., 2., -1.],
                           [0.7, -1.9, -0.5, 0.3]])
    out = LegacyDeltaXYWHBBoxCoder().decode(rois, deltas, max_shape=(32, 32))
    expected = torch.tensor([[0.0000, 0.0000, 1.5000, 1.5000], [0.0000, 0.0000, 5.2183, 5.2183],
                             [0.0000, 0.1321, 7.8891, 0.8679], [5.3967, 2.4251, 6.0033, 3.7749]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    # clipping is to size - 1
    big = LegacyDeltaXYWHBBoxCoder().decode(rois[:1], torch.tensor([[0., 0., 3., 3.]]), (8, 8))
    assert big.max() == 7


def test_legacy_delta_class_specific_and_box_type():
    rois = torch.tensor([[0., 0., 9., 9.]])
    deltas = torch.zeros(1, 8)
    assert LegacyDeltaXYWHBBoxCoder().decode(rois, deltas).shape == (1, 8)
    assert isinstance(LegacyDeltaXYWHBBoxCoder(use_box_type=True).decode(
        HorizontalBoxes(rois), deltas[:, :4]), HorizontalBoxes)
    with pytest.raises(AssertionError):
        LegacyDeltaXYWHBBoxCoder(use_box_type=True).decode(rois, deltas)


def test_delta_decode_per_image_shape_lists_box_objects_and_box_type():
    coder = DeltaXYWHBBoxCoder(use_box_type=True)
    priors = HorizontalBoxes(torch.tensor([[[0., 0., 10., 10.]], [[0., 0., 10., 10.]]]))
    deltas = torch.tensor([[[0., 0., math.log(4), math.log(4)]]]).expand(2, 1, 4)
    # decoded box [-15, -15, 25, 25]; per-image (h, w, c) shapes
    out = coder.decode(priors, deltas, max_shape=[(12, 20, 3), (30, 8, 3)])
    assert isinstance(out, HorizontalBoxes)
    torch.testing.assert_close(out.tensor, torch.tensor([[[0., 0., 20., 12.]],
                                                         [[0., 0., 8., 25.]]]))
    # unbatched priors and deltas with one shape
    single = DeltaXYWHBBoxCoder().decode(priors.tensor[0], deltas[0], max_shape=(12, 20))
    torch.testing.assert_close(single, torch.tensor([[0., 0., 20., 12.]]))


def test_delta_ctr_clamp_hand_value_and_assertion_errors():
    coder = DeltaXYWHBBoxCoder(add_ctr_clamp=True, ctr_clamp=4)
    prior = torch.tensor([[0., 0., 10., 10.]])
    # dx = 1 would move the centre by 10 px: clamped to 4; dw = -10 is not clamped below
    out = coder.decode(prior, torch.tensor([[1., 0., -10., 0.]]))
    half_w = 5 * math.exp(-10)
    torch.testing.assert_close(out, torch.tensor([[9 - half_w, 0., 9 + half_w, 10.]]))
    with pytest.raises(AssertionError):
        coder.decode(prior, torch.zeros(2, 4))
    with pytest.raises(AssertionError):
        coder.encode(prior, torch.zeros(2, 4))
