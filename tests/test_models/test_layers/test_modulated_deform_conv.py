"""ModulatedDeformConv2d (offsets and masks passed in): mmcv keys, and against plain convs."""
import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import shapes_of

from mmdet_lite.models.layers import ModulatedDeformConv2d, ModulatedDeformConv2dPack


@pytest.mark.parametrize('bias', [True, False])
def test_keys_have_no_offset_conv(bias):
    dcn = ModulatedDeformConv2d(8, 16, 3, padding=1, groups=2, bias=bias)
    expected = {'weight': (16, 4, 3, 3)}
    if bias:
        expected['bias'] = (16, )
    assert shapes_of(dcn) == expected
    pack = ModulatedDeformConv2dPack(8, 16, 3, padding=1, bias=bias)
    assert isinstance(pack, ModulatedDeformConv2d)
    extra = set(shapes_of(pack)) - set(shapes_of(dcn))
    assert extra == {'conv_offset.weight', 'conv_offset.bias'}


@pytest.mark.parametrize('stride,padding,dilation', [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_zero_offsets_and_unit_mask_equal_a_plain_conv(stride, padding, dilation):
    dcn = ModulatedDeformConv2d(4, 6, 3, stride=stride, padding=padding, dilation=dilation)
    torch.nn.init.uniform_(dcn.bias)
    x = torch.rand(2, 4, 11, 9)
    expected = F.conv2d(x, dcn.weight, dcn.bias, stride=stride, padding=padding,
                        dilation=dilation)
    h, w = expected.shape[-2:]
    offset = torch.zeros(2, 18, h, w)
    mask = torch.ones(2, 9, h, w)
    torch.testing.assert_close(dcn(x, offset, mask), expected, rtol=1e-5, atol=1e-5)


def test_mask_scales_each_tap_before_the_bias():
    dcn = ModulatedDeformConv2d(3, 5, 3, padding=1)
    torch.nn.init.uniform_(dcn.bias)
    x = torch.rand(1, 3, 6, 6)
    offset = torch.zeros(1, 18, 6, 6)
    mask = torch.zeros(1, 9, 6, 6)
    mask[:, 4] = 1.0  # only the centre tap: a 1x1 conv with the centre weights
    expected = F.conv2d(x, dcn.weight[:, :, 1:2, 1:2], dcn.bias)
    torch.testing.assert_close(dcn(x, offset, mask), expected, rtol=1e-5, atol=1e-5)


def test_integer_offset_shifts_the_samples():
    dcn = ModulatedDeformConv2d(2, 3, 3, padding=1, bias=False)
    x = torch.rand(1, 2, 7, 7)
    offset = torch.zeros(1, 18, 7, 7)
    offset[:, 0::2] = 1.0  # dy = +1 for every tap: read one row further down
    mask = torch.ones(1, 9, 7, 7)
    expected = F.conv2d(F.pad(x, (1, 1, 1, 2)), dcn.weight)[..., 1:, :]
    torch.testing.assert_close(dcn(x, offset, mask), expected, rtol=1e-5, atol=1e-5)


def test_init_weights_is_mmcvs_uniform():
    dcn = ModulatedDeformConv2d(4, 6, 3)
    with torch.no_grad():
        dcn.weight.fill_(10.0)
        dcn.bias.fill_(1.0)
    dcn.init_weights()
    bound = 1 / (4 * 9)**0.5
    assert dcn.weight.abs().max() <= bound and torch.count_nonzero(dcn.bias) == 0
    assert dcn.weight.std() > 0
