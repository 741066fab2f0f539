"""CSPLayer, DarknetBottleneck and CSPNeXtBlock: mmdetection 3.3's keys, defaults, data flow."""
import inspect

import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import conv_bn, csp_layer, dw_sep_bn, shapes_of

from mmdet_lite.models.layers import CSPLayer, CSPNeXtBlock, DarknetBottleneck


def defaults(cls):
    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_constructor_defaults_are_mmdetections():
    bn = dict(type='BN', momentum=0.03, eps=0.001)
    assert defaults(CSPLayer) == dict(
        expand_ratio=0.5, num_blocks=1, add_identity=True, use_depthwise=False,
        use_cspnext_block=False, channel_attention=False, conv_cfg=None, norm_cfg=bn,
        act_cfg=dict(type='Swish'), init_cfg=None)
    assert defaults(DarknetBottleneck) == dict(
        expansion=0.5, add_identity=True, use_depthwise=False, conv_cfg=None, norm_cfg=bn,
        act_cfg=dict(type='Swish'), init_cfg=None)
    assert defaults(CSPNeXtBlock) == dict(
        expansion=0.5, add_identity=True, use_depthwise=False, kernel_size=5, conv_cfg=None,
        norm_cfg=bn, act_cfg=dict(type='SiLU'), init_cfg=None)


@pytest.mark.parametrize('cspnext', [False, True])
@pytest.mark.parametrize('depthwise', [False, True])
@pytest.mark.parametrize('attention', [False, True])
def test_csp_layer_state_dict(cspnext, depthwise, attention):
    layer = CSPLayer(8, 16, num_blocks=2, use_cspnext_block=cspnext, use_depthwise=depthwise,
                     channel_attention=attention)
    assert shapes_of(layer) == csp_layer('', 8, 16, num_blocks=2, cspnext=cspnext,
                                         depthwise=depthwise, attention=attention)
    assert hasattr(layer, 'attention') is attention


def test_csp_layer_state_dict_by_hand_for_one_darknet_block():
    # The full list for CSPLayer(8, 16): mid = 8 channels per branch.
    layer = CSPLayer(8, 16, expand_ratio=0.5)
    expected = {
        **conv_bn('main_conv', 8, 8, 1),
        **conv_bn('short_conv', 8, 8, 1),
        **conv_bn('final_conv', 16, 16, 1),
        **conv_bn('blocks.0.conv1', 8, 8, 1),
        **conv_bn('blocks.0.conv2', 8, 8, 3),
    }
    assert shapes_of(layer) == expected
    assert layer.main_conv.bn.momentum == 0.03 and layer.main_conv.bn.eps == 0.001


def test_cspnext_block_kernel_and_expand_ratio():
    layer = CSPLayer(16, 16, expand_ratio=0.25, use_cspnext_block=True)
    mid = 4
    block = layer.blocks[0]
    assert isinstance(block, CSPNeXtBlock)
    assert block.conv2.depthwise_conv.conv.kernel_size == (5, 5)
    assert block.conv2.depthwise_conv.conv.padding == (2, 2)
    assert shapes_of(block) == {**conv_bn('conv1', mid, mid, 3), **dw_sep_bn('conv2', mid, mid, 5)}
    # CSPLayer passes its own act_cfg (Swish) down, overriding the block's SiLU default.
    assert type(block.conv1.activate).__name__ == 'Swish'


def test_csp_layer_forward_is_main_then_short_concatenated():
    layer = CSPLayer(6, 10, num_blocks=2, channel_attention=True).eval()
    x = torch.rand(2, 6, 9, 7)
    out = layer(x)
    assert out.shape == (2, 10, 9, 7)
    main = layer.blocks(layer.main_conv(x))
    short = layer.short_conv(x)
    cat = torch.cat([main, short], dim=1)
    pooled = cat.mean(dim=(2, 3), keepdim=True)
    attended = cat * F.hardsigmoid(F.conv2d(pooled, layer.attention.fc.weight,
                                            layer.attention.fc.bias))
    torch.testing.assert_close(out, layer.final_conv(attended))


@pytest.mark.parametrize('block_cls', [DarknetBottleneck, CSPNeXtBlock])
def test_identity_added_only_when_channels_match(block_cls):
    # With the second conv's weights at zero, its BN (eval, fresh stats) gives 0 and the
    # activation (Swish/SiLU) of 0 is 0: the block returns exactly its shortcut.
    same = block_cls(4, 4).eval()
    conv2 = same.conv2.pointwise_conv if block_cls is CSPNeXtBlock else same.conv2
    torch.nn.init.zeros_(conv2.conv.weight)
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(same(x), x)

    no_add = block_cls(4, 4, add_identity=False).eval()
    conv2 = no_add.conv2.pointwise_conv if block_cls is CSPNeXtBlock else no_add.conv2
    torch.nn.init.zeros_(conv2.conv.weight)
    assert torch.count_nonzero(no_add(x)) == 0

    widen = block_cls(4, 8)
    assert widen.add_identity is False and widen(x).shape == (1, 8, 6, 6)


def test_darknet_bottleneck_expansion_sets_hidden_width():
    block = DarknetBottleneck(8, 12, expansion=0.25)
    assert shapes_of(block) == {**conv_bn('conv1', 8, 3, 1), **conv_bn('conv2', 3, 12, 3)}
