"""DeltaXYWHBBoxCoder: encode hand values, round trips, clipping and batched decode."""
import math

import pytest
import torch

from mmdet_lite.models.task_modules import DeltaXYWHBBoxCoder
from mmdet_lite.registry import TASK_UTILS

PRIORS = torch.tensor([[0., 0., 10., 10.], [5., 5., 15., 25.]])
GTS = torch.tensor([[1., 2., 11., 14.], [0., 0., 30., 30.]])


def test_encode_hand_value_with_stds():
    coder = TASK_UTILS.build(dict(type='DeltaXYWHBBoxCoder', target_stds=[0.1, 0.1, 0.2, 0.2]))
    assert coder.encode_size == 4
    # Prior centre (5, 5) size 10x10; gt centre (6, 8) size 10x12.
    deltas = coder.encode(PRIORS[:1], GTS[:1])
    expected = torch.tensor([[0.1 / 0.1, 0.3 / 0.1, 0., math.log(1.2) / 0.2]])
    torch.testing.assert_close(deltas, expected)


def test_encode_decode_round_trip_with_means_and_stds():
    coder = DeltaXYWHBBoxCoder(target_means=(0.1, -0.1, 0.2, 0.), target_stds=(0.1, 0.2, 0.3, 1.))
    deltas = coder.encode(PRIORS, GTS)
    torch.testing.assert_close(coder.decode(PRIORS, deltas), GTS)


def test_decode_clips_to_max_shape():
    coder = DeltaXYWHBBoxCoder()
    deltas = coder.encode(PRIORS, GTS)
    decoded = coder.decode(PRIORS, deltas, max_shape=(20, 25))  # (h, w)
    torch.testing.assert_close(decoded, torch.tensor([[1., 2., 11., 14.], [0., 0., 25., 20.]]))
    unclipped = DeltaXYWHBBoxCoder(clip_border=False).decode(PRIORS, deltas, max_shape=(20, 25))
    torch.testing.assert_close(unclipped, GTS)


def test_decode_clamps_dw_dh_by_wh_ratio_clip():
    coder = DeltaXYWHBBoxCoder()
    prior = torch.tensor([[0., 0., 10., 10.]])
    deltas = torch.tensor([[0., 0., 10., -10.]])
    # |log(16 / 1000)| caps the scale at 62.5: w = 625, h = 0.16, centre (5, 5).
    expected = torch.tensor([[5 - 312.5, 5 - 0.08, 5 + 312.5, 5 + 0.08]])
    torch.testing.assert_close(coder.decode(prior, deltas), expected)
    clipped = coder.decode(prior, deltas, max_shape=(100, 200))
    torch.testing.assert_close(clipped, torch.tensor([[0., 5 - 0.08, 200., 5 + 0.08]]))
    # A looser clip lets exp(2) through.
    loose = coder.decode(prior, torch.tensor([[0., 0., 2., 0.]]), wh_ratio_clip=1e-3)
    half_w = 5 * math.exp(2)
    torch.testing.assert_close(loose, torch.tensor([[5 - half_w, 0., 5 + half_w, 10.]]))


def test_decode_ctr_clamp_limits_centre_shift():
    coder = DeltaXYWHBBoxCoder(add_ctr_clamp=True, ctr_clamp=32)
    prior = torch.tensor([[0., 0., 10., 10.]])
    decoded = coder.decode(prior, torch.tensor([[10., 0., 0., 0.]]))  # shift 100 px -> 32
    torch.testing.assert_close(decoded, torch.tensor([[32., 0., 42., 10.]]))


def test_decode_class_specific_and_batched():
    coder = DeltaXYWHBBoxCoder()
    deltas = coder.encode(PRIORS, GTS)
    two_class = coder.decode(PRIORS, torch.cat([deltas, torch.zeros_like(deltas)], dim=1))
    assert two_class.shape == (2, 8)
    torch.testing.assert_close(two_class[:, :4], GTS)
    torch.testing.assert_close(two_class[:, 4:], PRIORS)

    batched = coder.decode(PRIORS.expand(2, 2, 4), deltas.expand(2, 2, 4),
                           max_shape=[(20, 25), (10, 12)])
    torch.testing.assert_close(batched[0], torch.tensor([[1., 2., 11., 14.], [0., 0., 25., 20.]]))
    torch.testing.assert_close(batched[1], torch.tensor([[1., 2., 11., 10.], [0., 0., 12., 10.]]))


def test_empty_and_bad_shapes():
    coder = DeltaXYWHBBoxCoder()
    assert coder.decode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    assert coder.encode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)
    with pytest.raises(ValueError, match='same number of boxes'):
        coder.encode(PRIORS, GTS[:1])
    with pytest.raises(ValueError, match='same first dim'):
        coder.decode(PRIORS, torch.zeros(3, 4))
    with pytest.raises(ValueError, match='target_means'):
        DeltaXYWHBBoxCoder(target_means=(0., 0.))
