"""SELayer, DyReLU and ChannelAttention: keys, hand-computed outputs, argument checks."""
import pytest
import torch
from helpers_state_dict import conv_bias, shapes_of

from mmdet_lite.models.layers import ChannelAttention, DyReLU, SELayer


def test_channel_attention_keys():
    assert shapes_of(ChannelAttention(6)) == {'fc.weight': (6, 6, 1, 1), 'fc.bias': (6, )}


def test_channel_attention_on_a_constant_map_by_hand():
    att = ChannelAttention(4)
    with torch.no_grad():
        att.fc.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        att.fc.bias.zero_()
    values = torch.tensor([0.0, 1.5, -3.0, 6.0])
    x = values.view(1, 4, 1, 1).expand(2, 4, 5, 3).clone()
    # pooled = the constant; hardsigmoid(v) = clamp(v / 6 + 0.5, 0, 1) = 0.5, 0.75, 0, 1
    expected = torch.tensor([0.0, 1.5 * 0.75, 0.0, 6.0]).view(1, 4, 1, 1).expand(2, 4, 5, 3)
    torch.testing.assert_close(att(x), expected)


def test_channel_attention_pools_over_the_whole_map():
    att = ChannelAttention(1)
    with torch.no_grad():
        att.fc.weight.fill_(1.0)
        att.fc.bias.fill_(0.0)
    x = torch.tensor([[[[0.0, 3.0], [1.0, 2.0]]]])  # mean 1.5 -> hardsigmoid 0.75
    torch.testing.assert_close(att(x), x * 0.75)


def test_se_layer_keys_and_by_hand():
    se = SELayer(8, ratio=4)
    assert shapes_of(se) == {**conv_bias('conv1', 8, 2, 1), **conv_bias('conv2', 2, 8, 1)}
    with torch.no_grad():
        for conv in (se.conv1.conv, se.conv2.conv):
            conv.weight.zero_()
            conv.bias.zero_()
    x = torch.randn(1, 8, 3, 3)
    torch.testing.assert_close(se(x), x * 0.5)  # sigmoid(0) = 0.5


def test_dyrelu_keys_and_defaults():
    dy = DyReLU(8)
    # ratio 4: 8 -> 2 -> 4 * 8 coefficients (a1, b1, a2, b2)
    assert shapes_of(dy) == {**conv_bias('conv1', 8, 2, 1), **conv_bias('conv2', 2, 32, 1)}
    assert type(dy.conv2.activate).__name__ == 'HSigmoid'
    assert dy.conv2.activate.bias == 3.0 and dy.conv2.activate.divisor == 6.0


@pytest.mark.parametrize('conv2_bias,slopes', [(0.0, (1.0, 0.0, 0.0, 0.0)),
                                               (3.0, (2.0, 0.5, 1.0, 0.5))])
def test_dyrelu_by_hand(conv2_bias, slopes):
    dy = DyReLU(4)
    with torch.no_grad():
        for conv in (dy.conv1.conv, dy.conv2.conv):
            conv.weight.zero_()
            conv.bias.zero_()
        dy.conv2.conv.bias.fill_(conv2_bias)
    # coeff = hsigmoid(bias) - 0.5: 0 for bias 0 (hsigmoid 0.5), 0.5 for bias 3 (hsigmoid 1);
    # a1 = 2c + 1, b1 = c, a2 = 2c, b2 = c.
    a1, b1, a2, b2 = slopes
    x = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(dy(x), torch.maximum(a1 * x + b1, a2 * x + b2))
    if conv2_bias == 0.0:
        torch.testing.assert_close(dy(x), torch.relu(x))


def test_single_act_cfg_is_used_twice_and_bad_ones_rejected():
    se = SELayer(4, ratio=2, act_cfg=dict(type='Sigmoid'))
    assert isinstance(se.conv1.activate, torch.nn.Sigmoid)
    assert isinstance(se.conv2.activate, torch.nn.Sigmoid)
    with pytest.raises(AssertionError, match='act_cfg'):
        SELayer(4, act_cfg=(dict(type='ReLU'), ))
    with pytest.raises(AssertionError, match='act_cfg'):
        DyReLU(4, act_cfg=(dict(type='ReLU'), 'Sigmoid'))
