"""Res2Net: Bottle2neck against a split-by-split reference, keys and their order, the forced
ResNet-D layout, shapes, freezing, init and argument errors."""
import inspect

import pytest
import torch
import torch.nn.functional as F
from helpers_resnet_family_keys import bottle2neck, res2net
from helpers_state_dict import shapes_of
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import Res2Net
from mmdet_lite.models.backbones.res2net import Bottle2neck, Res2Layer
from mmdet_lite.models.layers import DeformConv2dPack
from mmdet_lite.registry import MODELS


def small_res2net(**kwargs) -> Res2Net:
    """Res2Net-50 at a quarter of the widths: split width 4 in stage 1 (16 -> 4 x 4)."""
    return Res2Net(**dict(dict(depth=50, base_channels=16, base_width=4), **kwargs))


def randomize_norms(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) + 0.5
            m.bias.data = torch.rand(c, generator=gen) - 0.5
            m.running_mean = torch.rand(c, generator=gen) - 0.5
            m.running_var = torch.rand(c, generator=gen) + 0.5


def bn_eval(x, m):
    return (x - m.running_mean[:, None, None]) / torch.sqrt(
        m.running_var[:, None, None] + m.eps) * m.weight[:, None, None] + m.bias[:, None, None]


def reference_bottle2neck(block, x, stride, first_in_stage):
    """Res2Net's block written out: 1x1 conv, then split s (s = 0 .. scales - 2) gets its
    own 3x3 conv of (split s + output of split s - 1), except in a stage's first block,
    where the splits are independent and the last split is 3x3-average-pooled when the
    block strides; the last split passes through; 1x1 conv; residual."""
    out = F.relu(bn_eval(F.conv2d(x, block.conv1.weight), block.bn1))
    w = out.shape[1] // block.scales
    pieces, previous = [], None
    for s in range(block.scales - 1):
        split = out[:, s * w:(s + 1) * w]
        if previous is not None and not first_in_stage:
            split = split + previous
        previous = F.relu(bn_eval(F.conv2d(split, block.convs[s].weight, stride=stride,
                                           padding=1), block.bns[s]))
        pieces.append(previous)
    last = out[:, (block.scales - 1) * w:]
    if first_in_stage and stride > 1:
        last = F.avg_pool2d(last, 3, stride, padding=1)
    out = bn_eval(F.conv2d(torch.cat(pieces + [last], 1), block.conv3.weight), block.bn3)
    identity = x
    if block.downsample is not None:
        pooled = F.avg_pool2d(x, stride, stride, ceil_mode=True, count_include_pad=False)
        identity = bn_eval(F.conv2d(pooled, block.downsample[1].weight), block.downsample[2])
    return F.relu(out + identity)


@pytest.mark.parametrize('layer,index,stride,first', [
    ('layer1', 0, 1, True),   # 'stage' block without stride: no pool, independent splits
    ('layer2', 0, 2, True),   # 'stage' block with stride: the last split is pooled
    ('layer2', 1, 1, False),  # 'normal' block: cascaded splits
])
def test_bottle2neck_matches_reference(layer, index, stride, first):
    model = small_res2net().eval()
    randomize_norms(model)
    block = getattr(model, layer)[index]
    assert block.stage_type == ('stage' if first else 'normal')
    in_c = block.conv1.in_channels
    x = torch.randn(2, in_c, 9, 9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_bottle2neck(block, x, stride, first))


def test_defaults_and_registry():
    def defaults(cls):
        return {n: p.default for n, p in inspect.signature(cls).parameters.items()
                if p.kind is p.POSITIONAL_OR_KEYWORD}

    assert defaults(Res2Net) == dict(scales=4, base_width=26, style='pytorch',
                                     deep_stem=True, avg_down=True, pretrained=None,
                                     init_cfg=None)
    assert {k: v for k, v in defaults(Bottle2neck).items() if k not in (
        'inplanes', 'planes')} == dict(scales=4, base_width=26, base_channels=64,
                                       stage_type='normal')
    assert {k: v for k, v in defaults(Res2Layer).items() if k not in (
        'block', 'inplanes', 'planes', 'num_blocks')} == dict(
            stride=1, avg_down=True, conv_cfg=None, norm_cfg=dict(type='BN'), scales=4,
            base_width=26)
    assert set(Res2Net.arch_settings) == {50, 101, 152}
    model = MODELS.build(dict(type='Res2Net', depth=50, base_channels=16, base_width=4))
    assert isinstance(model, Res2Net) and model.scales == 4 and model.base_width == 4


def test_style_deep_stem_and_avg_down_are_forced_like_mmdetection():
    model = small_res2net(style='caffe', deep_stem=False, avg_down=False)
    assert (model.style, model.deep_stem, model.avg_down) == ('pytorch', True, True)
    assert hasattr(model, 'stem') and not hasattr(model, 'conv1')
    assert isinstance(model.layer2[0].downsample[0], torch.nn.AvgPool2d)
    assert model.layer2[0].convs[0].stride == (2, 2)  # pytorch style: stride on the 3x3


def test_res2net_101_state_dict_keys_shapes_and_order():
    with torch.device('meta'):
        model = Res2Net(depth=101)
    expected = res2net('', depth=101, scales=4, base_width=26)
    assert shapes_of(model) == expected
    # Same parameter order as mmdetection (its optimizer states index parameters by order).
    assert list(model.state_dict()) == list(expected)
    assert shapes_of(model.layer4[0])['convs.0.weight'] == (208, 208, 3, 3)  # 26w x 8


def test_split_widths_per_stage_and_scales():
    with torch.device('meta'):
        model = Res2Net(depth=50, scales=8, base_width=14)
    for i, width in enumerate((14, 28, 56, 112)):
        block = getattr(model, f'layer{i + 1}')[1]
        assert block.width == width and len(block.convs) == len(block.bns) == 7
        assert block.conv1.out_channels == 8 * width
        assert not hasattr(block, 'conv2') and not hasattr(block, 'bn2')
    expected = bottle2neck('', 64, 64, scales=8, base_width=14, downsample=True)
    assert shapes_of(model.layer1[0]) == expected


def test_pool_only_in_strided_first_blocks():
    model = small_res2net()
    assert not hasattr(model.layer1[0], 'pool')
    for name in ('layer2', 'layer3', 'layer4'):
        layer = getattr(model, name)
        pool = layer[0].pool
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
        assert not any(hasattr(block, 'pool') for block in list(layer)[1:])


def test_forward_shapes():
    model = small_res2net().eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 16), (1, 128, 8, 8),
                                             (1, 256, 4, 4), (1, 512, 2, 2)]


def test_frozen_stages_and_norm_eval():
    model = small_res2net(frozen_stages=2).train()
    assert all(not p.requires_grad for m in (model.stem, model.layer1, model.layer2)
               for p in m.parameters())
    assert all(p.requires_grad for p in model.layer3.parameters())
    assert not model.stem.training and not model.layer2.training
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    model = small_res2net(frozen_stages=1, norm_eval=False).train()
    assert model.layer2[0].bns[0].training and not model.layer1[0].bns[0].training


def test_zero_init_residual_does_not_reach_bottle2necks():
    # mmdetection quirk, kept: ResNet's zero init tests `block is Bottleneck`.
    model = small_res2net()
    model.init_weights()
    assert all(torch.all(block.bn3.weight == 1) for block in model.layer3)


def test_dcn_makes_every_split_conv_deformable():
    for fallback in (False, True):  # fallback_on_stride never applies (mmdetection)
        model = small_res2net(dcn=dict(type='DCN', deform_groups=1,
                                       fallback_on_stride=fallback),
                              stage_with_dcn=(False, False, False, True))
        assert all(type(conv) is DeformConv2dPack for conv in model.layer4[0].convs)
        assert type(model.layer3[0].convs[0]) is torch.nn.Conv2d


def test_scales_one_is_rejected():
    with pytest.raises(AssertionError, match='scales'):
        Res2Net(depth=50, scales=1)


def test_mmdetection_keyed_checkpoint_loads_through_init_cfg(tmp_path):
    expected = res2net('', depth=50, scales=4, base_width=4, base_channels=16)
    gen = torch.Generator().manual_seed(0)
    checkpoint = {k: (torch.randint(0, 5, s, generator=gen) if k.endswith('tracked') else
                      torch.rand(s, generator=gen)) for k, s in expected.items()}
    torch.save(checkpoint, tmp_path / 'res2net.pth')
    model = small_res2net(init_cfg=dict(type='Pretrained',
                                        checkpoint=str(tmp_path / 'res2net.pth')))
    model.init_weights()
    state = model.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], checkpoint[k]) for k in expected)
