"""ResNet-50 as the classic zoo configures it: DCN / DCNv2 in stages 2-4, GCNet's ContextBlock,
empirical attention (GeneralizedAttention), GroupNorm and ConvWS + GroupNorm.

Key lists come from mmdetection's / mmcv's definitions (tests/helpers_hrnet_keys.py); the
numeric checks compare against plain convolutions written here.
"""
import pytest
import torch
import torch.nn.functional as F
from helpers_hrnet_keys import resnet50
from helpers_state_dict import shapes_of
from mmcv.cnn.bricks import ContextBlock, ConvWS2d, GeneralizedAttention
from torch import nn

from mmdet_lite.models.backbones import ResNet
from mmdet_lite.models.layers import DeformConv2dPack, ModulatedDeformConv2dPack

C3_C5 = (False, True, True, True)


def dcn_cfg(kind: str, deform_groups: int = 1, fallback_on_stride: bool = False) -> dict:
    return dict(type=kind, deform_groups=deform_groups, fallback_on_stride=fallback_on_stride)


@pytest.mark.parametrize('kind,groups,layer_type', [('DCN', 1, DeformConv2dPack),
                                                    ('DCNv2', 1, ModulatedDeformConv2dPack),
                                                    ('DCNv2', 4, ModulatedDeformConv2dPack)])
def test_dcn_c3_c5_keys_and_layer_types(kind, groups, layer_type):
    model = ResNet(50, dcn=dcn_cfg(kind, groups), stage_with_dcn=C3_C5)
    assert shapes_of(model) == resnet50('', dcn=kind, deform_groups=groups,
                                        stage_with_dcn=C3_C5)
    # 13 deformable convs (4 + 6 + 3 blocks); stage 1 keeps plain convs.
    assert sum(isinstance(m, layer_type) for m in model.modules()) == 13
    assert type(model.layer1[0].conv2) is nn.Conv2d
    assert model.layer2[0].conv2.stride == (2, 2)
    assert model.layer4[2].conv2.deform_groups == groups


def test_fallback_on_stride_keeps_strided_convs_plain():
    model = ResNet(50, dcn=dcn_cfg('DCN', fallback_on_stride=True), stage_with_dcn=C3_C5)
    for layer in (model.layer2, model.layer3, model.layer4):
        assert type(layer[0].conv2) is nn.Conv2d and layer[0].conv2.stride == (2, 2)
        assert all(isinstance(block.conv2, DeformConv2dPack) for block in list(layer)[1:])
    assert 'layer2.0.conv2.conv_offset.weight' not in model.state_dict()


def _plain_twin(dcn_model: ResNet, scale: float) -> ResNet:
    """A ResNet without DCN holding ``dcn_model``'s weights, deformable 3x3 weights times
    ``scale``."""
    plain = ResNet(50, base_channels=8).eval()
    state = {k: v for k, v in dcn_model.state_dict().items() if 'conv_offset' not in k}
    for name, module in dcn_model.named_modules():
        if isinstance(module, (DeformConv2dPack, ModulatedDeformConv2dPack)):
            state[f'{name}.weight'] = module.weight * scale
    plain.load_state_dict(state)
    return plain


@pytest.mark.parametrize('kind,scale', [('DCN', 1.0), ('DCNv2', 0.5)])
def test_zero_offsets_make_the_dcn_backbone_a_plain_resnet(kind, scale):
    # Zero offsets sample the regular grid; DCNv2's zero mask logits weight every sample by
    # sigmoid(0) = 0.5, i.e. halve its 3x3 convs.
    torch.manual_seed(0)
    model = ResNet(50, base_channels=8, dcn=dcn_cfg(kind), stage_with_dcn=C3_C5).eval()
    for m in model.modules():
        if hasattr(m, 'conv_offset'):
            nn.init.zeros_(m.conv_offset.weight)
            nn.init.zeros_(m.conv_offset.bias)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
        expected = _plain_twin(model, scale)(x)
    for got, ref in zip(outs, expected):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_dcn_offsets_change_the_backbone_output():
    torch.manual_seed(0)
    model = ResNet(50, base_channels=8, dcn=dcn_cfg('DCN'), stage_with_dcn=C3_C5).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[-1]
        nn.init.constant_(model.layer4[0].conv2.conv_offset.bias, 0.7)
        after = model(x)[-1]
    assert not torch.allclose(before, after)


@pytest.mark.parametrize('ratio', [1. / 4, 1. / 16])
def test_gcb_c3_c5_keys_and_plugin_names(ratio):
    plugins = [dict(cfg=dict(type='ContextBlock', ratio=ratio), stages=C3_C5,
                    position='after_conv3')]
    model = ResNet(50, plugins=plugins)
    assert shapes_of(model) == resnet50('', gcb_ratio=ratio, gcb_stages=C3_C5)
    block = model.layer3[1]
    assert block.after_conv3_plugin_names == ['context_block']
    assert isinstance(block.context_block, ContextBlock)
    assert block.context_block.planes == int(1024 * ratio)
    assert not hasattr(model.layer1[0], 'context_block')


def test_context_block_acts_on_the_residual_branch_before_the_shortcut():
    torch.manual_seed(0)
    plugins = [dict(cfg=dict(type='ContextBlock', ratio=1. / 4), position='after_conv3')]
    block = ResNet(50, base_channels=8, plugins=plugins).eval().layer2[0]
    nn.init.normal_(block.context_block.channel_add_conv[3].weight)  # mmcv starts it at 0
    x = torch.rand(1, 32, 8, 8)
    with torch.no_grad():
        out = F.relu(block.bn1(block.conv1(x)))
        out = F.relu(block.bn2(block.conv2(out)))
        out = block.context_block(block.bn3(block.conv3(out)))
        expected = F.relu(out + block.downsample(x))
        torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize('attention_type', ['1111', '0010'])
def test_generalized_attention_c4_c5_keys_and_forward(attention_type):
    plugins = [dict(cfg=dict(type='GeneralizedAttention', spatial_range=-1, num_heads=8,
                             attention_type=attention_type, kv_stride=2),
                    stages=(False, False, True, True), position='after_conv2')]
    model = ResNet(50, plugins=plugins)
    assert shapes_of(model) == resnet50('', attention_type=attention_type,
                                        attention_stages=(False, False, True, True))
    attention = model.layer3[0].gen_attention_block
    assert isinstance(attention, GeneralizedAttention)
    assert attention.in_channels == 256 and model.layer4[0].gen_attention_block.in_channels == 512
    assert model.layer4[2].after_conv2_plugin_names == ['gen_attention_block']

    small = ResNet(50, base_channels=16, plugins=plugins).eval()
    with torch.no_grad():
        outs = small(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4),
                                              (1, 512, 2, 2)]


def test_group_norm_resnet_keys():
    gn = dict(type='GN', num_groups=32, requires_grad=True)
    model = ResNet(50, norm_cfg=gn)
    assert shapes_of(model) == resnet50('', norm_kind='gn')
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 53 and all(m.num_groups == 32 for m in norms)
    assert isinstance(model.layer1[0].downsample[1], nn.GroupNorm)


def test_conv_ws_resnet_standardizes_every_conv_weight():
    model = ResNet(50, conv_cfg=dict(type='ConvWS'),
                   norm_cfg=dict(type='GN', num_groups=32, requires_grad=True))
    assert shapes_of(model) == resnet50('', norm_kind='gn')
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # stem + 3 per block (16 blocks) + 4 shortcut convs.
    assert len(convs) == 53 and all(isinstance(m, ConvWS2d) for m in convs)

    # Weight standardization: each output filter shifted to zero mean and divided by its
    # (unbiased) standard deviation + 1e-5 before the convolution.
    conv = model.conv1
    w = conv.weight.flatten(1)
    standardized = ((w - w.mean(1, keepdim=True)) / (w.std(1, keepdim=True) + 1e-5))
    x = torch.rand(1, 3, 16, 16)
    expected = F.conv2d(x, standardized.view_as(conv.weight), stride=2, padding=3)
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)
