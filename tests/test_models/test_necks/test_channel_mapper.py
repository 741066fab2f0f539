"""ChannelMapper: per-level channel mapping, extra levels, keys matching mmdet."""
import math

import pytest
import torch

from mmdet_lite.models.necks import ChannelMapper
from mmdet_lite.registry import MODELS


def maps(channels, sizes, batch=1):
    return [torch.rand(batch, c, s, s) for c, s in zip(channels, sizes)]


def test_shapes_one_output_per_input():
    neck = ChannelMapper([4, 8, 16], 6)
    outs = neck(maps([4, 8, 16], [20, 10, 5], batch=2))
    assert [tuple(o.shape) for o in outs] == [(2, 6, 20, 20), (2, 6, 10, 10), (2, 6, 5, 5)]
    assert neck.extra_convs is None
    assert all(m.conv.kernel_size == (3, 3) and m.conv.padding == (1, 1) for m in neck.convs)
    assert all(o.min() >= 0 for o in outs)  # default ReLU


def test_extra_levels_when_num_outs_exceeds_inputs():
    neck = ChannelMapper([4, 8], 6, num_outs=4)
    inputs = maps([4, 8], [10, 5])
    outs = neck(inputs)
    assert [tuple(o.shape) for o in outs] == [(1, 6, 10, 10), (1, 6, 5, 5), (1, 6, 3, 3),
                                              (1, 6, 2, 2)]
    # The first extra conv reads the raw last input (8 channels), later ones the previous.
    assert neck.extra_convs[0].conv.in_channels == 8
    assert neck.extra_convs[1].conv.in_channels == 6
    torch.testing.assert_close(outs[2], neck.extra_convs[0](inputs[-1]))
    torch.testing.assert_close(outs[3], neck.extra_convs[1](outs[2]))


def test_detr_config_keys_and_shapes():
    neck = MODELS.build(dict(type='ChannelMapper', in_channels=[2048], kernel_size=1,
                             out_channels=256, act_cfg=None, norm_cfg=None, num_outs=1))
    assert set(neck.state_dict()) == {'convs.0.conv.weight', 'convs.0.conv.bias'}
    assert neck.state_dict()['convs.0.conv.weight'].shape == (256, 2048, 1, 1)
    (out,) = neck([torch.rand(1, 2048, 3, 5)])
    assert out.shape == (1, 256, 3, 5)
    assert out.min() < 0  # no activation


def test_extra_conv_keys_and_norm():
    neck = ChannelMapper([4, 8], 6, num_outs=3, norm_cfg=dict(type='GN', num_groups=2))
    keys = set(neck.state_dict())
    assert {'convs.0.conv.weight', 'convs.1.gn.weight', 'extra_convs.0.conv.weight',
            'extra_convs.0.gn.bias'} <= keys
    assert not any(k.endswith('conv.bias') for k in keys)  # bias='auto' with a norm layer


def test_explicit_bias_overrides_auto():
    gn = dict(type='GN', num_groups=2)
    neck = ChannelMapper([4], 6, norm_cfg=gn, bias=True)
    assert {'convs.0.conv.bias', 'convs.0.gn.weight'} <= set(neck.state_dict())
    assert neck.convs[0].conv.bias.shape == (6,)
    # The same config with bias='auto' (the default) drops the bias before the norm.
    assert ChannelMapper([4], 6, norm_cfg=gn).convs[0].conv.bias is None


def test_xavier_init_applied():
    neck = ChannelMapper([4, 8], 6, num_outs=3)
    convs = list(neck.convs) + list(neck.extra_convs)
    for m in convs:  # values no initializer produces, so a skipped conv shows up
        torch.nn.init.constant_(m.conv.weight, 10.0)
        torch.nn.init.constant_(m.conv.bias, 1.0)
    neck.init_weights()
    for m in convs:
        w = m.conv.weight
        receptive = w.shape[2] * w.shape[3]
        bound = math.sqrt(6.0 / ((w.shape[0] + w.shape[1]) * receptive))
        assert w.abs().max() <= bound + 1e-6
        assert torch.count_nonzero(m.conv.bias) == 0


def test_bad_input_is_assertion_error():
    neck = ChannelMapper([4, 8], 6)
    with pytest.raises(AssertionError, match=r'expects 2 input maps .* got 1'):
        neck(maps([4], [10]))
    with pytest.raises(AssertionError, match='in_channels must be a list'):
        ChannelMapper(2048, 256)


def test_positional_arguments_in_mmdet_order():
    """mmdetection 3.3 order: ..., act_cfg, bias, num_outs, init_cfg."""
    neck = ChannelMapper([4, 8], 6, 1, None, None, None, False, 3)
    assert neck.convs[0].conv.bias is None  # bias=False reached the convs
    assert neck.convs[0].conv.kernel_size == (1, 1)
    assert len(neck.extra_convs) == 1  # num_outs=3
    assert len(neck(maps([4, 8], [8, 4]))) == 3


def test_num_outs_below_inputs_gives_one_output_per_input():
    """mmdetection accepts num_outs < len(in_channels) and adds nothing."""
    neck = ChannelMapper([4, 8, 16], 6, num_outs=1)
    assert neck.extra_convs is None
    outs = neck(maps([4, 8, 16], [8, 4, 2]))
    assert [tuple(o.shape) for o in outs] == [(1, 6, 8, 8), (1, 6, 4, 4), (1, 6, 2, 2)]
