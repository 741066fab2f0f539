"""SinePositionalEncoding: hand-computed values, normalization and padding invariance."""
import math

import pytest
import torch

from mmdet_lite.models.layers import SinePositionalEncoding
from mmdet_lite.models.layers.positional_encoding import sine_cosine_encoding
from mmdet_lite.registry import MODELS


def test_registered_and_output_shape():
    pe = MODELS.build(dict(type='SinePositionalEncoding', num_feats=8, normalize=True))
    assert isinstance(pe, SinePositionalEncoding)
    pos = pe(torch.zeros(2, 3, 5, dtype=torch.bool))
    assert pos.shape == (2, 16, 3, 5)


def test_sine_cosine_encoding_by_hand():
    # num_feats=6, temperature 8: dim_t = 8 ** (2 * (i // 2) / 6) = [1, 1, 2, 2, 4, 4].
    pos = sine_cosine_encoding(torch.tensor([[2.0], [0.0]]), num_feats=6, temperature=8)
    assert pos.shape == (2, 1, 6)  # any leading shape [...] -> [..., num_feats]
    expected = [math.sin(2.), math.cos(2.), math.sin(1.), math.cos(1.), math.sin(.5),
                math.cos(.5)]
    torch.testing.assert_close(pos[0, 0], torch.tensor(expected))
    torch.testing.assert_close(pos[1, 0], torch.tensor([0., 1.] * 3))  # sin 0, cos 0
    assert sine_cosine_encoding(torch.zeros(3, dtype=torch.float64), 4).dtype == torch.float64


def test_unnormalized_values_by_hand():
    # num_feats=4, temperature 10000: dim_t = [1, 1, 100, 100] (10000 ** (2 * (i // 2) / 4)).
    pe = SinePositionalEncoding(num_feats=4)
    pos = pe(torch.zeros(1, 2, 3, dtype=torch.bool))
    y, x = 2., 3.  # position (row 1, col 2) counts 1-based: y = 2, x = 3
    expected = [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100),
                math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)]
    torch.testing.assert_close(pos[0, :, 1, 2], torch.tensor(expected))


def test_normalized_coordinates_end_at_scale():
    pe = SinePositionalEncoding(num_feats=2, normalize=True, scale=2 * math.pi)
    pos = pe(torch.zeros(1, 4, 2, dtype=torch.bool))
    # Channel 0 is sin(y_norm); y_norm = (row + 1) / 4 * 2*pi -> sin(pi/2), sin(pi), ...
    expected_rows = torch.sin(torch.tensor([1., 2., 3., 4.]) / 4 * 2 * math.pi)
    torch.testing.assert_close(pos[0, 0, :, 0], expected_rows, atol=1e-5, rtol=0)
    # Channel 1 is cos(y_norm / temperature ** (2 * 0 / 2)) = cos(y_norm) as well.
    torch.testing.assert_close(pos[0, 1, :, 0], torch.cos(torch.tensor([1., 2., 3., 4.]) / 4 *
                                                          2 * math.pi), atol=1e-5, rtol=0)


def test_offset_shifts_coordinates_before_normalizing():
    pe = SinePositionalEncoding(num_feats=2, normalize=True, scale=1.0, offset=-0.5, eps=0.)
    pos = pe(torch.zeros(1, 2, 1, dtype=torch.bool))
    # y = (1 - 0.5) / 2 = 0.25 on the first row, (2 - 0.5) / 2 = 0.75 on the second.
    torch.testing.assert_close(pos[0, 0, :, 0], torch.sin(torch.tensor([0.25, 0.75])))


def test_padded_image_keeps_its_encoding():
    pe = SinePositionalEncoding(num_feats=8, normalize=True)
    alone = pe(torch.zeros(1, 3, 4, dtype=torch.bool))
    mask = torch.ones(1, 5, 7, dtype=torch.bool)
    mask[0, :3, :4] = False  # the same 3x4 image, padded to 5x7
    padded = pe(mask)
    torch.testing.assert_close(padded[:, :, :3, :4], alone)


def test_bad_arguments():
    with pytest.raises(TypeError, match='scale must be a float'):
        SinePositionalEncoding(num_feats=8, normalize=True, scale=None)
    with pytest.raises(ValueError, match=r'mask of shape \[B, H, W\]'):
        SinePositionalEncoding(num_feats=8)(torch.zeros(3, 4))
