"""CTResNetNeck (CenterNet): mmdetection 3.3's keys and shapes, DCNv2 or plain convs, the
bilinear deconv init."""
import pytest
import torch
from helpers_state_dict import bn, conv_bn, shapes_of
from torch import nn

from mmdet_lite.models.layers import ModulatedDeformConv2dPack
from mmdet_lite.models.necks import CTResNetNeck
from mmdet_lite.registry import MODELS


def expected_keys(in_c, filters, kernels, use_dcn):
    keys = {}
    for i, (c, k) in enumerate(zip(filters, kernels)):
        keys.update(conv_bn(f'deconv_layers.{2 * i}', in_c, c, 3))
        if use_dcn:  # DCNv2 pack without bias (a BN follows), 27 = 3 * 3 * (dy, dx, mask)
            keys[f'deconv_layers.{2 * i}.conv.conv_offset.weight'] = (27, in_c, 3, 3)
            keys[f'deconv_layers.{2 * i}.conv.conv_offset.bias'] = (27, )
        # ConvTranspose2d weight is [C_in, C_out, k, k]
        keys[f'deconv_layers.{2 * i + 1}.conv.weight'] = (c, c, k, k)
        keys.update(bn(f'deconv_layers.{2 * i + 1}.bn', c))
        in_c = c
    return keys


@pytest.mark.parametrize('use_dcn', [True, False])
def test_keys_and_shapes(use_dcn):
    neck = MODELS.build(dict(type='CTResNetNeck', in_channels=16, num_deconv_filters=(8, 4),
                             num_deconv_kernels=(4, 4), use_dcn=use_dcn))
    assert shapes_of(neck) == expected_keys(16, (8, 4), (4, 4), use_dcn)
    conv_type = ModulatedDeformConv2dPack if use_dcn else nn.Conv2d
    assert type(neck.deconv_layers[0].conv) is conv_type
    assert isinstance(neck.deconv_layers[1].conv, nn.ConvTranspose2d)
    assert neck.deconv_layers[1].conv.stride == (2, 2)
    assert neck.in_channels == 4  # advanced while building, as in mmdetection
    outs = neck([torch.rand(2, 3, 20, 20), torch.rand(2, 16, 5, 6)])
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == (2, 4, 20, 24)
    assert outs[0].min() >= 0  # BN + ReLU


def test_bilinear_deconv_init_by_hand():
    neck = CTResNetNeck(8, (4, ), (4, ), use_dcn=True)
    bn_layer = neck.deconv_layers[1].bn
    torch.nn.init.constant_(bn_layer.weight, 3.0)
    neck.init_weights()
    # k = 4: f = 2, c = 0.75, taps (1 - |i/2 - 0.75|) = 0.25, 0.75, 0.75, 0.25
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    w = neck.deconv_layers[1].conv.weight
    for out in range(4):
        torch.testing.assert_close(w[out, 0], row[:, None] * row[None, :])
    assert torch.all(bn_layer.weight == 1) and torch.all(bn_layer.bias == 0)
    # The DCNv2 offset conv stays at zero.
    assert torch.count_nonzero(neck.deconv_layers[0].conv.conv_offset.weight) == 0


def test_bilinear_kernel_for_kernel_3():
    neck = CTResNetNeck(4, (2, ), (3, ), use_dcn=False)
    neck.init_weights()
    # k = 3: f = 2, c = (4 - 1 - 0) / 4 = 0.75: taps 0.25, 0.75, 0.75
    row = torch.tensor([0.25, 0.75, 0.75])
    torch.testing.assert_close(neck.deconv_layers[1].conv.weight[1, 0], row[:, None] * row)


def test_mismatched_stage_lists():
    with pytest.raises(AssertionError, match='same length'):
        CTResNetNeck(8, (4, 4), (4, ))
    with pytest.raises(AssertionError, match='list or tuple'):
        CTResNetNeck(8, (4, ), (4, ))(torch.rand(1, 8, 4, 4))
