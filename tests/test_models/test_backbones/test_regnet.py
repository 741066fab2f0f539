"""RegNetX: stage widths/depths/groups from mmdetection's formula, keys, shapes, freezing,
init, checkpoint loading and argument errors."""
import inspect
import math

import pytest
import torch
from helpers_resnet_family_keys import regnet
from helpers_state_dict import shapes_of
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import RegNet, ResNeXt
from mmdet_lite.models.backbones import regnet as regnet_module
from mmdet_lite.models.backbones import resnext as resnext_module
from mmdet_lite.registry import MODELS

# mmdetection 3.3's RegNet.arch_settings.
MMDET_ARCHS = {
    'regnetx_400mf': dict(w0=24, wa=24.48, wm=2.54, group_w=16, depth=22, bot_mul=1.0),
    'regnetx_800mf': dict(w0=56, wa=35.73, wm=2.28, group_w=16, depth=16, bot_mul=1.0),
    'regnetx_1.6gf': dict(w0=80, wa=34.01, wm=2.25, group_w=24, depth=18, bot_mul=1.0),
    'regnetx_3.2gf': dict(w0=88, wa=26.31, wm=2.25, group_w=48, depth=25, bot_mul=1.0),
    'regnetx_4.0gf': dict(w0=96, wa=38.65, wm=2.43, group_w=40, depth=23, bot_mul=1.0),
    'regnetx_6.4gf': dict(w0=184, wa=60.83, wm=2.07, group_w=56, depth=17, bot_mul=1.0),
    'regnetx_8.0gf': dict(w0=80, wa=49.56, wm=2.88, group_w=120, depth=23, bot_mul=1.0),
    'regnetx_12gf': dict(w0=168, wa=73.36, wm=2.37, group_w=112, depth=19, bot_mul=1.0),
}

# The FPN in_channels of mmdetection's RegNet configs: the stage widths, an independent fact.
MMDET_CONFIG_WIDTHS = {
    'regnetx_400mf': [32, 64, 160, 384],
    'regnetx_800mf': [64, 128, 288, 672],
    'regnetx_1.6gf': [72, 168, 408, 912],
    'regnetx_3.2gf': [96, 192, 432, 1008],
    'regnetx_4.0gf': [80, 240, 560, 1360],
    'regnetx_6.4gf': [168, 392, 784, 1624],
    'regnetx_8.0gf': [80, 240, 720, 1920],
    'regnetx_12gf': [224, 448, 896, 2240],
}


def regnet_stages(w0, wa, wm, group_w, depth, bot_mul):
    """mmdetection's RegNet rule in plain Python: per stage (width, blocks, group width,
    groups of the 3x3 conv)."""
    block_widths = []
    for j in range(depth):
        # continuous width, snapped to w0 * wm**k in log space, then to a multiple of 8
        k = round(math.log((w0 + wa * j) / w0) / math.log(wm))
        block_widths.append(int(round(w0 * wm**k / 8) * 8))
    runs = []
    for w in block_widths:
        if runs and runs[-1][0] == w:
            runs[-1][1] += 1
        else:
            runs.append([w, 1])
    stages = []
    for w, n in runs:
        # the bottleneck width becomes a multiple of the (at most as wide) group width
        w_bot = int(w * bot_mul)
        g = min(group_w, w_bot)
        w_bot = int(round(w_bot / g) * g)
        w = int(w_bot / bot_mul)
        stages.append((w, n, g, int(round(w * bot_mul)) // g))
    return stages


def bn_modules(module):
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def test_arch_settings_and_defaults_are_mmdetections():
    assert RegNet.arch_settings == MMDET_ARCHS
    defaults = {name: p.default for name, p in inspect.signature(RegNet).parameters.items()}
    assert defaults == dict(
        arch=inspect.Parameter.empty, in_channels=3, stem_channels=32, base_channels=32,
        strides=(2, 2, 2, 2), dilations=(1, 1, 1, 1), out_indices=(0, 1, 2, 3),
        style='pytorch', deep_stem=False, avg_down=False, frozen_stages=-1, conv_cfg=None,
        norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True, dcn=None,
        stage_with_dcn=(False, False, False, False), plugins=None, with_cp=False,
        zero_init_residual=True, pretrained=None, init_cfg=None)
    model = MODELS.build(dict(type='RegNet', arch='regnetx_400mf', out_indices=(3, )))
    assert isinstance(model, RegNet) and model.out_indices == (3, )


@pytest.mark.parametrize('arch', sorted(MMDET_ARCHS))
def test_stages_follow_the_regnet_formula(arch):
    stages = regnet_stages(**MMDET_ARCHS[arch])
    assert [w for w, _, _, _ in stages] == MMDET_CONFIG_WIDTHS[arch]
    with torch.device('meta'):  # shapes only: skip allocating and initializing weights
        model = RegNet(arch)
    assert model.stage_widths == [w for w, _, _, _ in stages]
    assert model.stage_blocks == [n for _, n, _, _ in stages]
    assert model.group_widths == [g for _, _, g, _ in stages]
    assert model.depth == MMDET_ARCHS[arch]['depth'] == sum(model.stage_blocks)
    assert model.feat_dim == stages[-1][0]
    for i, (width, num_blocks, group_w, groups) in enumerate(stages):
        layer = getattr(model, f'layer{i + 1}')
        assert len(layer) == num_blocks
        assert all(block.conv2.groups == groups for block in layer)
        assert layer[0].conv2.weight.shape == (width, group_w, 3, 3)


def test_regnetx_3_2gf_stages_are_the_papers():
    # RegNetX-3.2GF in Radosavovic et al. 2020: d = [2, 6, 15, 2], w = [96, 192, 432, 1008].
    assert [(w, n) for w, n, _, _ in regnet_stages(**MMDET_ARCHS['regnetx_3.2gf'])] == [
        (96, 2), (192, 6), (432, 15), (1008, 2)]


def test_regnetx_3_2gf_state_dict_keys_and_shapes():
    with torch.device('meta'):
        model = RegNet('regnetx_3.2gf')
    stages = regnet_stages(**MMDET_ARCHS['regnetx_3.2gf'])
    expected = regnet('', [s[0] for s in stages], [s[1] for s in stages],
                      [s[3] for s in stages])
    assert shapes_of(model) == expected
    assert list(model.state_dict()) == list(expected)  # parameter order too
    assert len(expected) == 6 + 25 * 18 + 4 * 6  # stem, 25 blocks, 4 shortcuts


def test_forward_shapes_strides_4_to_32_without_maxpool():
    model = RegNet('regnetx_3.2gf').eval()
    assert not hasattr(model, 'maxpool')
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 96, 16, 16), (1, 192, 8, 8),
                                             (1, 432, 4, 4), (1, 1008, 2, 2)]


def test_dict_arch_equals_named_arch():
    with torch.device('meta'):
        named = RegNet('regnetx_800mf')
        explicit = RegNet(dict(MMDET_ARCHS['regnetx_800mf']))
    assert shapes_of(named) == shapes_of(explicit)


def test_bottleneck_ratio_below_one_and_groups_one_quirk():
    # widths 16, 32, 64, 64 -> three stages; bot_mul 0.5 -> bottleneck widths 8, 16, 32.
    arch = dict(w0=16, wa=16, wm=2.0, group_w=8, depth=4, bot_mul=0.5)
    assert regnet_stages(**arch) == [(16, 1, 8, 1), (32, 1, 8, 2), (64, 2, 8, 4)]
    with pytest.raises(AssertionError):  # 4 default strides for 3 stages
        RegNet(arch)
    model = RegNet(arch, strides=(2, 2, 2), dilations=(1, 1, 1), out_indices=(0, 1, 2))
    # With one group, ResNeXt's Bottleneck takes width = planes, ignoring bot_mul
    # (mmdetection's behaviour); with more groups the width is group_w * groups.
    assert model.layer1[0].conv1.out_channels == 16
    assert model.layer2[0].conv2.weight.shape == (16, 8, 3, 3)
    assert model.layer3[1].conv2.weight.shape == (32, 8, 3, 3)
    assert model.layer3[1].conv3.weight.shape == (64, 32, 1, 1)
    outs = model.eval()(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]


def test_blocks_are_resnext_bottlenecks_with_expansion_one():
    model = RegNet('regnetx_400mf')
    block = model.layer2[0]
    assert isinstance(block, resnext_module.Bottleneck)
    assert type(block).__name__ == 'Bottleneck' and block.expansion == 1
    assert resnext_module.Bottleneck.expansion == 4  # the shared class is left alone
    assert type(ResNeXt(depth=50, groups=2, base_channels=8).layer1[0]).expansion == 4
    assert regnet_module.Bottleneck.expansion == 1


def test_frozen_stages_and_norm_eval():
    model = RegNet('regnetx_400mf', frozen_stages=1)
    model.train()
    frozen = [model.conv1, model.bn1, model.layer1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    assert not model.layer1.training and not model.bn1.training
    assert all(not m.training for m in bn_modules(model))  # norm_eval defaults to True

    model = RegNet('regnetx_400mf', frozen_stages=1, norm_eval=False).train()
    assert not model.layer1[0].bn1.training and model.layer2[0].bn1.training
    x = torch.rand(2, 3, 32, 32)
    running = model.layer1[0].bn1.running_mean.clone()
    model(x)
    assert torch.equal(model.layer1[0].bn1.running_mean, running)


def test_default_init_zeroes_every_last_norm():
    # Unlike ResNeXt (ResNet's `block is Bottleneck` test fails for it), RegNet's
    # zero_init_residual reaches its blocks.
    model = RegNet('regnetx_400mf')
    model.init_weights()
    for layer in (model.layer1, model.layer4):
        for block in layer:
            assert torch.all(block.bn3.weight == 0)
            assert torch.all(block.bn2.weight == 1)
    assert torch.all(model.bn1.weight == 1)
    model = RegNet('regnetx_400mf', zero_init_residual=False)
    model.init_weights()
    assert torch.all(model.layer1[0].bn3.weight == 1)


def test_mmdetection_keyed_checkpoint_loads_through_init_cfg(tmp_path):
    stages = regnet_stages(**MMDET_ARCHS['regnetx_400mf'])
    expected = regnet('', [s[0] for s in stages], [s[1] for s in stages],
                      [s[3] for s in stages])
    gen = torch.Generator().manual_seed(0)
    checkpoint = {k: (torch.randint(0, 5, s, generator=gen) if k.endswith('tracked') else
                      torch.rand(s, generator=gen)) for k, s in expected.items()}
    checkpoint['fc.weight'] = torch.rand(1000, 384)  # ImageNet head, not in the backbone
    torch.save({'state_dict': checkpoint}, tmp_path / 'regnetx_400mf.pth')
    model = RegNet('regnetx_400mf', init_cfg=dict(type='Pretrained',
                                                  checkpoint=str(tmp_path / 'regnet.pth')))
    with pytest.raises(FileNotFoundError, match='regnet.pth'):
        model.init_weights()
    model = RegNet('regnetx_400mf', init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'regnetx_400mf.pth')))
    model.init_weights()
    state = model.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], checkpoint[k].to(state[k].dtype)) for k in expected)


@pytest.mark.parametrize('arch,error,match', [
    ('regnetx_999mf', AssertionError, 'regnetx_999mf'),
    (3, ValueError, 'str or a dict'),
    (dict(w0=20, wa=10.0, wm=2.0, group_w=8, depth=4, bot_mul=1.0), AssertionError, 'w0'),
    (dict(w0=16, wa=10.0, wm=1.0, group_w=8, depth=4, bot_mul=1.0), AssertionError, 'wm'),
    (dict(w0=16, wa=-1.0, wm=2.0, group_w=8, depth=4, bot_mul=1.0), AssertionError, 'wa'),
])
def test_bad_arch_raises_like_mmdetection(arch, error, match):
    with pytest.raises(error, match=match):
        RegNet(arch)


def test_out_indices_and_pretrained_with_init_cfg_are_rejected():
    with pytest.raises(AssertionError):
        RegNet('regnetx_400mf', out_indices=(4, ))
    with pytest.raises(AssertionError):
        RegNet('regnetx_400mf', pretrained='a.pth', init_cfg=dict(type='Pretrained',
                                                                  checkpoint='a.pth'))
