"""SinePositionalEncoding accepts what mmdetection 3.3 accepts: scale checked (by an assert)
only with normalize=True, an odd num_feats only failing in forward, a missing mask replaced
by the input's shape; mmdetection's repr."""
import math

import pytest
import torch

from mmdet_lite.models.layers import SinePositionalEncoding
from mmdet_lite.registry import MODELS


@pytest.mark.parametrize('scale', [None, (3., ), 'pi'])
def test_without_normalize_any_scale_is_accepted_and_unused(scale):
    pe = SinePositionalEncoding(num_feats=2, normalize=False, scale=scale)
    out = pe(torch.zeros(1, 1, 2, dtype=torch.bool))  # y = 1, x = 1, 2
    # num_feats=2: both channels use dim_t = 10000 ** 0 = 1
    expected = torch.tensor([[[math.sin(1), math.sin(1)], [math.cos(1), math.cos(1)]],
                             [[math.sin(1), math.sin(2)], [math.cos(1), math.cos(2)]]])
    torch.testing.assert_close(out[0], expected.reshape(4, 1, 2))


@pytest.mark.parametrize('scale', [None, (3., ), '2'])
def test_with_normalize_a_non_number_scale_is_an_assertion_error(scale):
    with pytest.raises(AssertionError, match='scale must be a float or int'):
        SinePositionalEncoding(num_feats=8, normalize=True, scale=scale)
    with pytest.raises(TypeError):
        MODELS.build(dict(type='SinePositionalEncoding', num_feats=8, normalize=True,
                          scale=scale))


@pytest.mark.parametrize('scale', [2, 1.0, True])
def test_with_normalize_int_and_float_scales_are_used(scale):
    pe = SinePositionalEncoding(num_feats=2, normalize=True, scale=scale, eps=0.)
    out = pe(torch.zeros(1, 2, 1, dtype=torch.bool))  # y = 1, 2 of 2 rows; x = 1 of 1
    y = torch.tensor([0.5, 1.0]) * scale
    x = torch.tensor([1.0, 1.0]) * scale
    expected = torch.stack([y.sin(), y.cos(), x.sin(), x.cos()]).reshape(4, 2, 1)
    torch.testing.assert_close(out[0], expected)


def test_no_mask_uses_the_input_shape_as_an_unpadded_batch():
    pe = SinePositionalEncoding(num_feats=4, normalize=True)
    features = torch.rand(2, 16, 3, 5)
    torch.testing.assert_close(pe(None, features), pe(torch.zeros(2, 3, 5, dtype=torch.bool)))
    # the mask wins when both are given
    mask = torch.zeros(2, 3, 5, dtype=torch.bool)
    mask[:, :, 4] = True
    torch.testing.assert_close(pe(mask, features), pe(mask))
    with pytest.raises(AssertionError, match='got neither'):
        pe(None)


def test_odd_num_feats_constructs_and_fails_in_forward():
    pe = SinePositionalEncoding(num_feats=7)
    assert pe.num_feats == 7
    with pytest.raises(ValueError, match='num_feats must be even'):
        pe(torch.zeros(1, 2, 2, dtype=torch.bool))


def test_repr_is_mmdetections():
    pe = SinePositionalEncoding(num_feats=128, normalize=True, offset=-0.5)
    assert repr(pe) == ('SinePositionalEncoding(num_feats=128, temperature=10000, '
                        'normalize=True, scale=6.283185307179586, eps=1e-06)')
