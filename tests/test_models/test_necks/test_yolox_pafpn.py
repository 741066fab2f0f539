"""YOLOXPAFPN and CSPNeXtPAFPN: mmdetection 3.3's keys and shapes, defaults, data flow."""
import inspect
import math

import pytest
import torch
from helpers_state_dict import conv_bn, csp_layer, dw_sep_bn, shapes_of

from mmdet_lite.models.necks import CSPNeXtPAFPN, YOLOXPAFPN
from mmdet_lite.registry import MODELS

IN_CHANNELS = [8, 16, 32]


def expected_keys(in_channels, out_channels, cspnext, num_blocks=1, expand_ratio=0.5,
                  depthwise=False):
    """From mmdetection's definitions of YOLOXPAFPN / CSPNeXtPAFPN."""
    csp = dict(num_blocks=num_blocks, expand_ratio=expand_ratio, cspnext=cspnext,
               depthwise=depthwise)
    keys = {}
    # top-down, coarsest first: reduce 1x1 C_idx -> C_idx-1, CSP(2 * C_idx-1 -> C_idx-1)
    for i, idx in enumerate(range(len(in_channels) - 1, 0, -1)):
        keys.update(conv_bn(f'reduce_layers.{i}', in_channels[idx], in_channels[idx - 1], 1))
        keys.update(csp_layer(f'top_down_blocks.{i}', in_channels[idx - 1] * 2,
                              in_channels[idx - 1], **csp))
    # bottom-up: stride-2 3x3 C_idx -> C_idx, CSP(2 * C_idx -> C_idx+1)
    for idx in range(len(in_channels) - 1):
        down = dw_sep_bn if depthwise else conv_bn
        keys.update(down(f'downsamples.{idx}', in_channels[idx], in_channels[idx], 3))
        keys.update(csp_layer(f'bottom_up_blocks.{idx}', in_channels[idx] * 2,
                              in_channels[idx + 1], **csp))
    # YOLOX: plain 1x1 output convs; CSPNeXt: 3x3 ones, depthwise separable with the rest
    out_k = 3 if cspnext else 1
    out_conv = dw_sep_bn if (cspnext and depthwise) else conv_bn
    for i, c in enumerate(in_channels):
        keys.update(out_conv(f'out_convs.{i}', c, out_channels, out_k))
    return keys


def inputs(batch=2, size=16):
    return [torch.rand(batch, c, size >> i, size >> i) for i, c in enumerate(IN_CHANNELS)]


def test_yolox_keys_by_hand_for_two_levels():
    neck = YOLOXPAFPN([4, 8], 6, num_csp_blocks=1)
    assert shapes_of(neck) == {
        **conv_bn('reduce_layers.0', 8, 4, 1),
        **csp_layer('top_down_blocks.0', 8, 4),  # mid 2
        **conv_bn('downsamples.0', 4, 4, 3),
        **csp_layer('bottom_up_blocks.0', 8, 8),  # mid 4
        **conv_bn('out_convs.0', 4, 6, 1),
        **conv_bn('out_convs.1', 8, 6, 1),
    }
    assert shapes_of(neck)['top_down_blocks.0.blocks.0.conv2.conv.weight'] == (2, 2, 3, 3)


@pytest.mark.parametrize('depthwise', [False, True])
def test_yolox_keys_and_shapes(depthwise):
    neck = MODELS.build(dict(type='YOLOXPAFPN', in_channels=IN_CHANNELS, out_channels=8,
                             num_csp_blocks=2, use_depthwise=depthwise))
    assert shapes_of(neck) == expected_keys(IN_CHANNELS, 8, cspnext=False, num_blocks=2,
                                            depthwise=depthwise)
    outs = neck(inputs())
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 8, 16, 16), (2, 8, 8, 8), (2, 8, 4, 4)]
    # No residuals inside the neck's CSP blocks.
    assert not any(m.add_identity for m in neck.top_down_blocks[0].blocks)


@pytest.mark.parametrize('depthwise', [False, True])
def test_cspnext_keys_and_shapes(depthwise):
    neck = MODELS.build(dict(type='CSPNeXtPAFPN', in_channels=IN_CHANNELS, out_channels=8,
                             num_csp_blocks=1, expand_ratio=0.5, use_depthwise=depthwise,
                             act_cfg=dict(type='SiLU')))
    assert shapes_of(neck) == expected_keys(IN_CHANNELS, 8, cspnext=True, depthwise=depthwise)
    outs = neck(inputs(batch=1, size=20))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 20, 20), (1, 8, 10, 10), (1, 8, 5, 5)]
    out_conv = neck.out_convs[0].depthwise_conv if depthwise else neck.out_convs[0]
    assert out_conv.conv.padding == (1, 1)


def test_cspnext_expand_ratio_reaches_the_csp_layers():
    neck = CSPNeXtPAFPN(IN_CHANNELS, 8, num_csp_blocks=1, expand_ratio=0.25)
    assert shapes_of(neck) == expected_keys(IN_CHANNELS, 8, cspnext=True, expand_ratio=0.25)
    assert neck.top_down_blocks[0].main_conv.conv.out_channels == 4  # int(16 * 0.25)


@pytest.mark.parametrize('cls', [YOLOXPAFPN, CSPNeXtPAFPN])
def test_defaults(cls):
    params = inspect.signature(cls.__init__).parameters
    assert params['num_csp_blocks'].default == 3
    assert params['use_depthwise'].default is False
    assert params['upsample_cfg'].default == dict(scale_factor=2, mode='nearest')
    assert params['norm_cfg'].default == dict(type='BN', momentum=0.03, eps=0.001)
    assert params['act_cfg'].default == dict(type='Swish')
    assert params['init_cfg'].default == dict(type='Kaiming', layer='Conv2d', a=math.sqrt(5),
                                              distribution='uniform', mode='fan_in',
                                              nonlinearity='leaky_relu')


@pytest.mark.parametrize('cls', [YOLOXPAFPN, CSPNeXtPAFPN])
def test_forward_wiring(cls):
    # Recompute the PAFPN from its parts: upsampled coarse map first in the top-down concat,
    # downsampled fine map first in the bottom-up concat.
    neck = cls(IN_CHANNELS, 4, num_csp_blocks=1).eval()
    x = inputs(batch=1)
    up = torch.nn.functional.interpolate
    r2 = neck.reduce_layers[0](x[2])
    t1 = neck.top_down_blocks[0](torch.cat([up(r2, scale_factor=2), x[1]], 1))
    r1 = neck.reduce_layers[1](t1)
    t0 = neck.top_down_blocks[1](torch.cat([up(r1, scale_factor=2), x[0]], 1))
    b1 = neck.bottom_up_blocks[0](torch.cat([neck.downsamples[0](t0), r1], 1))
    b2 = neck.bottom_up_blocks[1](torch.cat([neck.downsamples[1](b1), r2], 1))
    expected = [neck.out_convs[i](m) for i, m in enumerate([t0, b1, b2])]
    for out, ref in zip(neck(x), expected):
        torch.testing.assert_close(out, ref)


def test_kaiming_init_applied():
    neck = YOLOXPAFPN([4, 8], 4, num_csp_blocks=1)
    conv = neck.out_convs[1].conv
    torch.nn.init.constant_(conv.weight, 10.0)
    neck.init_weights()
    assert conv.weight.abs().max() <= 1 / math.sqrt(8) + 1e-6  # torch's default conv bound


def test_wrong_number_of_levels():
    neck = YOLOXPAFPN(IN_CHANNELS, 4, num_csp_blocks=1)
    with pytest.raises(AssertionError, match='expects 3 input levels'):
        neck(inputs()[:2])
