"""Deformable convs (DCN, DCNv2): mmcv parameter names, offset/mask layout against hand-built
plain convs, gradients, registry lookup, and their use in ResNet."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.registry import DefaultScope
from torch import nn

from mmdet_lite.models.backbones import ResNet
from mmdet_lite.models.layers import DeformConv2dPack, ModulatedDeformConv2dPack
from mmdet_lite.registry import MODELS


def test_dcn_parameter_names_and_shapes():
    dcn = DeformConv2dPack(8, 16, 3, padding=1, deform_groups=2)
    assert {k: tuple(v.shape) for k, v in dcn.state_dict().items()} == {
        'weight': (16, 8, 3, 3),
        'conv_offset.weight': (2 * 2 * 9, 8, 3, 3),
        'conv_offset.bias': (36, ),
    }


@pytest.mark.parametrize('bias', [True, False])
def test_dcnv2_parameter_names_and_shapes(bias):
    dcn = ModulatedDeformConv2dPack(8, 16, 3, padding=1, groups=2, bias=bias)
    expected = {'weight': (16, 4, 3, 3), 'conv_offset.weight': (27, 8, 3, 3),
                'conv_offset.bias': (27, )}
    if bias:
        expected['bias'] = (16, )
    assert {k: tuple(v.shape) for k, v in dcn.state_dict().items()} == expected


@pytest.mark.parametrize('stride,padding,dilation', [(1, 1, 1), (2, 1, 1), (1, 2, 2)])
def test_zero_offsets_make_dcn_a_plain_conv(stride, padding, dilation):
    dcn = DeformConv2dPack(4, 6, 3, stride=stride, padding=padding, dilation=dilation)
    x = torch.rand(2, 4, 9, 9)
    expected = F.conv2d(x, dcn.weight, stride=stride, padding=padding, dilation=dilation)
    torch.testing.assert_close(dcn(x), expected, rtol=1e-5, atol=1e-5)


def test_zero_offsets_make_dcnv2_half_a_plain_conv():
    dcn = ModulatedDeformConv2dPack(4, 6, 3, padding=1)
    nn.init.uniform_(dcn.bias)
    x = torch.rand(1, 4, 7, 7)
    # mask = sigmoid(0) = 0.5 scales every sample; the bias is added after.
    expected = 0.5 * F.conv2d(x, dcn.weight, padding=1) + dcn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(dcn(x), expected, rtol=1e-5, atol=1e-5)


def test_offset_channels_are_dy_dx_pairs():
    dcn = DeformConv2dPack(3, 5, 3, padding=1)
    with torch.no_grad():
        dcn.conv_offset.bias[1::2] = 1.0  # dx = +1 for every tap, dy = 0
    x = torch.rand(1, 3, 8, 8)
    # Every tap reads one pixel to its right: a plain conv over a zero-padded image whose
    # output is read one column further right (an extra zero column on the right edge).
    expected = F.conv2d(F.pad(x, (1, 2, 1, 1)), dcn.weight)[..., 1:]
    torch.testing.assert_close(dcn(x), expected, rtol=1e-5, atol=1e-5)


def test_dcnv2_mask_is_the_last_third_of_offset_channels():
    dcn = ModulatedDeformConv2dPack(3, 5, 3, padding=1, bias=False)
    with torch.no_grad():
        dcn.conv_offset.bias[18:] = 30.0  # mask logits -> sigmoid = 1
        dcn.conv_offset.bias[1:18:2] = 1.0  # dx = +1 in the offset part
    x = torch.rand(1, 3, 8, 8)
    expected = F.conv2d(F.pad(x, (1, 2, 1, 1)), dcn.weight)[..., 1:]
    torch.testing.assert_close(dcn(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('cls', [DeformConv2dPack, ModulatedDeformConv2dPack])
def test_backward_reaches_input_weight_and_offset_conv(cls):
    dcn = cls(4, 4, 3, padding=1)
    x = torch.rand(2, 4, 6, 6, requires_grad=True)
    out = dcn(x)
    assert out.shape == (2, 4, 6, 6)
    (out**2).sum().backward()
    for grad in (x.grad, dcn.weight.grad, dcn.conv_offset.weight.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_bad_dcn_arguments():
    with pytest.raises(ValueError, match='does not support bias=True'):
        DeformConv2dPack(4, 4, 3, bias=True)
    with pytest.raises(ValueError, match=r'divisible by groups \(3\)'):
        DeformConv2dPack(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match=r'divisible by deform_groups \(3\)'):
        ModulatedDeformConv2dPack(4, 6, 3, deform_groups=3)


@pytest.mark.parametrize('scope', [None, 'mmdet_lite'])
def test_mmcv_build_conv_layer_finds_dcn_types(scope):
    with DefaultScope.overwrite_default_scope(scope):
        dcn = build_conv_layer(dict(type='DCN', deform_groups=1), 4, 4, 3, padding=1, bias=False)
        dcnv2 = build_conv_layer(dict(type='DCNv2'), 4, 4, 3, padding=1, bias=False)
    assert type(dcn) is DeformConv2dPack and type(dcnv2) is ModulatedDeformConv2dPack
    assert MODELS.get('DCN') is DeformConv2dPack


def test_resnet_dcn_stages_keys_and_plain_conv_equivalence_at_init():
    dcn_cfg = dict(type='DCN', deform_groups=1, fallback_on_stride=False)
    model = ResNet(50, base_channels=8, dcn=dcn_cfg, stage_with_dcn=(False, True, True, True))
    # Built with zero offsets; compared with plain convs before init_weights, which (as
    # with mmcv's DCN v1 inside mmdetection's ResNet) lets the Kaiming init reach them.
    assert dcn_cfg == dict(type='DCN', deform_groups=1, fallback_on_stride=False)
    assert type(model.layer1[0].conv2) is nn.Conv2d
    for layer in (model.layer2, model.layer3, model.layer4):
        assert all(type(block.conv2) is DeformConv2dPack for block in layer)
    assert torch.all(model.layer3[1].conv2.conv_offset.weight == 0)
    keys = set(model.state_dict())
    assert {'layer2.0.conv2.weight', 'layer2.0.conv2.conv_offset.weight',
            'layer4.2.conv2.conv_offset.bias'} <= keys
    assert 'layer1.0.conv2.conv_offset.weight' not in keys

    plain = ResNet(50, base_channels=8)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and all('conv_offset' in k for k in unexpected)
    model.eval()
    plain.eval()
    x = torch.rand(1, 3, 32, 32)
    for ours, ref in zip(model(x), plain(x)):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_resnet_init_reaches_dcn_offsets_but_not_dcnv2_ones():
    # mmdetection 3.3 + mmcv: DeformConv2dPack has no init_weights (only init_offset), so
    # ResNet's Kaiming init is final; ModulatedDeformConv2dPack.init_weights runs after it,
    # re-drawing the main weights uniformly and zeroing the offsets.
    dcn = ResNet(50, base_channels=8, dcn=dict(type='DCN', deform_groups=1),
                 stage_with_dcn=(False, False, True, False))
    dcn.init_weights()
    assert dcn.layer3[0].conv2.conv_offset.weight.abs().sum() > 0
    dcnv2 = ResNet(50, base_channels=8, dcn=dict(type='DCNv2', deform_groups=1),
                   stage_with_dcn=(False, False, True, False))
    dcnv2.init_weights()
    conv2 = dcnv2.layer3[0].conv2
    assert torch.all(conv2.conv_offset.weight == 0) and torch.all(conv2.conv_offset.bias == 0)
    stdv = 1 / (conv2.in_channels * 9) ** 0.5
    assert conv2.weight.abs().max() <= stdv  # uniform(-stdv, stdv), not Kaiming


def test_resnet_dcnv2_forward_and_backward():
    model = ResNet(50, base_channels=8, dcn=dict(type='DCNv2', deform_groups=2),
                   stage_with_dcn=(False, False, True, True)).train()
    outs = model(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs][2:] == [(2, 128, 2, 2), (2, 256, 1, 1)]
    sum(o.sum() for o in outs).backward()
    conv2 = model.layer3[0].conv2
    assert type(conv2) is ModulatedDeformConv2dPack and conv2.deform_groups == 2
    assert conv2.bias is None  # built with bias=False, like mmdetection
    assert conv2.weight.grad is not None and conv2.conv_offset.weight.grad is not None


def test_fallback_on_stride_keeps_strided_3x3_plain():
    model = ResNet(50, base_channels=8, dcn=dict(type='DCN', fallback_on_stride=True),
                   stage_with_dcn=(False, True, True, True))
    assert type(model.layer2[0].conv2) is nn.Conv2d and model.layer2[0].conv2.stride == (2, 2)
    assert type(model.layer2[1].conv2) is DeformConv2dPack


def test_dcn_with_conv_cfg_is_an_error():
    with pytest.raises(ValueError, match='conv_cfg must be None when dcn is set'):
        ResNet(50, conv_cfg=dict(type='Conv2d'), dcn=dict(type='DCN'),
               stage_with_dcn=(True, True, True, True))


def test_dcn_v1_main_weights_are_mmcvs_kaiming_uniform():
    # mmcv's DeformConv2d.reset_parameters: kaiming_uniform_(nonlinearity='relu'), i.e.
    # U(-b, b) with b = sqrt(6 / fan_in); DCNv2 keeps U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    torch.manual_seed(0)
    dcn = DeformConv2dPack(64, 64, 3, padding=1)
    fan_in = 64 * 9
    bound = (6 / fan_in) ** 0.5
    w = dcn.weight.detach()
    assert w.abs().max() <= bound
    assert w.abs().max() > 0.95 * bound  # 36864 draws reach the edge of the wider range
    assert abs(w.std().item() - bound / 3 ** 0.5) < 0.02 * bound
    dcnv2 = ModulatedDeformConv2dPack(64, 64, 3, padding=1)
    assert dcnv2.weight.abs().max() <= 1 / fan_in ** 0.5
    assert repr(dcn).startswith('DeformConv2dPack(in_channels=64,\nout_channels=64,\n')
