"""CSPDarknet (YOLOX backbone) and Focus: mmdetection 3.3's keys and shapes, defaults, the
space-to-depth order, output strides, freezing, norm_eval and argument errors."""
import inspect
import math

import pytest
import torch
from helpers_csp_keys import csp_darknet
from helpers_state_dict import shapes_of
from mmcv.cnn import ConvModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import CSPDarknet
from mmdet_lite.models.backbones import csp_darknet as csp_darknet_module
from mmdet_lite.models.backbones.csp_darknet import Focus, SPPBottleneck
from mmdet_lite.models.layers import SPPBottleneck as LayersSPPBottleneck
from mmdet_lite.registry import MODELS

# Channels 8 (stem), 16, 32, 64, 128 (P5) or 96, 128 (P6); one block per stage.
SMALL = dict(deepen_factor=0.1, widen_factor=0.125)


def shapes(outs):
    return [tuple(o.shape) for o in outs]


def bn_modules(module):
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def test_signature_defaults_match_mmdetection():
    params = inspect.signature(CSPDarknet).parameters
    assert list(params) == [
        'arch', 'deepen_factor', 'widen_factor', 'out_indices', 'frozen_stages', 'use_depthwise',
        'arch_ovewrite', 'spp_kernal_sizes', 'conv_cfg', 'norm_cfg', 'act_cfg', 'norm_eval',
        'init_cfg'
    ]
    defaults = {k: p.default for k, p in params.items()}
    assert defaults == dict(
        arch='P5', deepen_factor=1.0, widen_factor=1.0, out_indices=(2, 3, 4), frozen_stages=-1,
        use_depthwise=False, arch_ovewrite=None, spp_kernal_sizes=(5, 9, 13), conv_cfg=None,
        norm_cfg=dict(type='BN', momentum=0.03, eps=0.001), act_cfg=dict(type='Swish'),
        norm_eval=False,
        init_cfg=dict(type='Kaiming', layer='Conv2d', a=math.sqrt(5), distribution='uniform',
                      mode='fan_in', nonlinearity='leaky_relu'))
    assert CSPDarknet.arch_settings['P5'][2] == [256, 512, 9, True, False]
    assert CSPDarknet.arch_settings['P6'][4] == [768, 1024, 3, False, True]
    focus = inspect.signature(Focus).parameters
    assert {k: p.default for k, p in focus.items() if k not in ('in_channels', 'out_channels')
            } == dict(kernel_size=1, stride=1, conv_cfg=None,
                      norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
                      act_cfg=dict(type='Swish'))


def test_registry_and_module_paths():
    model = MODELS.build(dict(type='CSPDarknet', **SMALL))
    assert type(model) is CSPDarknet and csp_darknet_module.CSPDarknet is CSPDarknet
    assert SPPBottleneck is LayersSPPBottleneck  # mmdetection defines it in csp_darknet.py
    assert isinstance(model.stem, Focus) and not hasattr(Focus, 'init_weights')
    assert model.layers == ['stem', 'stage1', 'stage2', 'stage3', 'stage4']
    # The Swish default builds mmcv's Swish; the stage conv is a plain ConvModule.
    assert type(model.stem.conv.activate).__name__ == 'Swish'
    assert type(model.stage1[0]) is ConvModule


@pytest.mark.parametrize('name,kwargs', [
    ('s', dict(deepen_factor=0.33, widen_factor=0.5)),
    ('nano', dict(deepen_factor=0.33, widen_factor=0.25, use_depthwise=True)),
    ('p6', dict(arch='P6', deepen_factor=0.33, widen_factor=0.125)),
    ('spp_kernels', dict(spp_kernal_sizes=(3, 5), **SMALL)),
])
def test_keys_and_shapes_match_mmdetection(name, kwargs):
    assert shapes_of(CSPDarknet(**kwargs)) == csp_darknet(**kwargs)


def test_nano_keys_by_hand():
    keys = shapes_of(CSPDarknet(deepen_factor=0.33, widen_factor=0.25, use_depthwise=True))
    assert keys['stem.conv.conv.weight'] == (16, 12, 3, 3)  # Focus: 4 * 3 channels, not dw
    assert keys['stage1.0.depthwise_conv.conv.weight'] == (16, 1, 3, 3)
    assert keys['stage1.0.pointwise_conv.conv.weight'] == (32, 16, 1, 1)
    assert keys['stage1.1.blocks.0.conv1.conv.weight'] == (16, 16, 1, 1)
    assert keys['stage1.1.blocks.0.conv2.depthwise_conv.conv.weight'] == (16, 1, 3, 3)
    assert 'stage2.1.blocks.2.conv1.conv.weight' in keys  # round(9 * 0.33) = 3 blocks
    assert 'stage2.1.blocks.3.conv1.conv.weight' not in keys
    assert keys['stage4.1.conv1.conv.weight'] == (128, 256, 1, 1)  # SPP
    assert keys['stage4.1.conv2.conv.weight'] == (256, 512, 1, 1)
    assert not any('attention' in k for k in keys)


def test_focus_space_to_depth_order():
    focus = Focus(1, 4, kernel_size=1, norm_cfg=None, act_cfg=None)
    with torch.no_grad():  # identity 1x1 conv: the output is the folded input itself
        focus.conv.conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        focus.conv.conv.bias.zero_()
    x = torch.arange(16.).view(1, 1, 4, 4)
    # rows [0..3], [4..7], [8..11], [12..15]: (even row, even col), (odd row, even col),
    # (even row, odd col), (odd row, odd col)
    expected = torch.tensor([[[0., 2.], [8., 10.]], [[4., 6.], [12., 14.]],
                             [[1., 3.], [9., 11.]], [[5., 7.], [13., 15.]]]).unsqueeze(0)
    torch.testing.assert_close(focus(x), expected)


def test_focus_default_conv_keeps_the_halved_size():
    focus = Focus(3, 8, kernel_size=3)
    assert focus.conv.conv.padding == (1, 1) and focus.conv.conv.in_channels == 12
    assert focus(torch.rand(2, 3, 10, 6)).shape == (2, 8, 5, 3)


@pytest.mark.parametrize('arch,out_indices,expected', [
    ('P5', (2, 3, 4), [(2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]),
    ('P5', (0, 1), [(2, 8, 32, 32), (2, 16, 16, 16)]),
    ('P6', (3, 5), [(2, 64, 4, 4), (2, 128, 1, 1)]),
])
def test_output_shapes_and_strides(arch, out_indices, expected):
    model = CSPDarknet(arch=arch, out_indices=out_indices, **SMALL).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 64))
    assert isinstance(outs, tuple)
    assert shapes(outs) == expected


def test_depthwise_forward_shapes():
    model = CSPDarknet(use_depthwise=True, **SMALL).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert shapes(outs) == [(1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]


@pytest.mark.parametrize('frozen_stages', [0, 3])
def test_frozen_stages_after_train(frozen_stages):
    model = CSPDarknet(frozen_stages=frozen_stages, **SMALL)
    assert all(p.requires_grad for p in model.parameters())  # frozen by train(), as mmdet
    model.train()
    for i, name in enumerate(model.layers):
        layer = getattr(model, name)
        frozen = i <= frozen_stages
        assert all(p.requires_grad != frozen for p in layer.parameters()), name
        assert all(m.training != frozen for m in bn_modules(layer)), name
    # eval() then train() freezes again.
    model.eval().train()
    assert not model.stem.conv.bn.training and not model.stem.conv.conv.weight.requires_grad


def test_norm_eval_keeps_bn_statistics_in_train_mode():
    model = CSPDarknet(norm_eval=True, **SMALL).train()
    assert model.training and all(not m.training for m in bn_modules(model))
    before = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    model(torch.rand(2, 3, 64, 64))
    for key, value in before.items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    assert all(m.training for m in bn_modules(CSPDarknet(**SMALL).train()))


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(out_indices=(1, 5)), AssertionError, r'out_indices must be in 0\.\.4'),
    (dict(arch='P6', out_indices=(6, )), AssertionError, r'0\.\.5'),
    (dict(frozen_stages=5), ValueError, r'frozen_stages must be in range\(-1, 5\)'),
    (dict(arch='P4'), KeyError, 'P4'),
])
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        CSPDarknet(**kwargs)


def test_cspnext_spelling_of_spp_kernel_sizes_is_not_accepted():
    # mmdetection's CSPDarknet only knows the misspelt 'spp_kernal_sizes'.
    with pytest.raises(TypeError):
        CSPDarknet(spp_kernel_sizes=(5, 9, 13))


def test_init_weights_reaches_the_focus_conv():
    model = CSPDarknet(**SMALL)
    model.init_weights()
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        assert conv.weight.abs().max() <= 1 / math.sqrt(conv.weight[0].numel()) + 1e-6
    fan_in = 12 * 9
    assert abs(model.stem.conv.conv.weight.std().item() * math.sqrt(3 * fan_in) - 1) < 0.3
