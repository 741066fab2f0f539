"""ResNeXt: grouped widths as mmdetection, shapes, keys, init, plugins and DCN in grouped convs."""
import pytest
import torch
from torch import nn

from mmdet_lite.models.backbones import ResNet, ResNeXt
from mmdet_lite.models.backbones.resnext import Bottleneck
from mmdet_lite.models.layers import DeformConv2dPack
from mmdet_lite.registry import MODELS


def test_resnext_32x4d_widths_groups_and_shapes():
    model = ResNeXt(depth=50, groups=32, base_width=4).eval()
    for i, width in enumerate((128, 256, 512, 1024)):
        block = getattr(model, f'layer{i + 1}')[0]
        assert isinstance(block, Bottleneck)
        assert (block.conv1.out_channels, block.conv2.groups) == (width, 32)
        assert block.conv2.weight.shape == (width, width // 32, 3, 3)
        assert block.conv3.out_channels == 256 * 2**i
        assert block.bn1.num_features == block.bn2.num_features == width
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16), (1, 512, 8, 8),
                                             (1, 1024, 4, 4), (1, 2048, 2, 2)]


def test_width_follows_base_channels():
    # width = floor(planes * base_width / base_channels) * groups = floor(16 * 4 / 16) * 8
    model = ResNeXt(depth=50, groups=8, base_width=4, base_channels=16)
    assert model.layer1[0].conv2.in_channels == 32
    assert model.layer4[0].conv2.in_channels == 256


def test_groups_one_is_resnet_with_the_same_keys():
    resnext = ResNeXt(depth=50, groups=1, base_channels=16)
    resnet = ResNet(50, base_channels=16)
    assert {k: v.shape for k, v in resnext.state_dict().items()} == {
        k: v.shape for k, v in resnet.state_dict().items()}


@pytest.mark.parametrize('depth,blocks', [(101, (3, 4, 23, 3)), (152, (3, 8, 36, 3))])
def test_deeper_resnext(depth, blocks):
    model = ResNeXt(depth=depth, groups=4, base_width=2, base_channels=8).eval()
    assert tuple(len(getattr(model, f'layer{i + 1}')) for i in range(4)) == blocks
    assert model(torch.rand(1, 3, 32, 32))[3].shape == (1, 256, 1, 1)


def test_registry_build_and_bad_depth():
    model = MODELS.build(dict(type='ResNeXt', depth=50, groups=4, base_width=4,
                              base_channels=16, out_indices=(3, )))
    assert isinstance(model, ResNeXt) and model.groups == 4 and model.base_width == 4
    with pytest.raises(KeyError, match=r'Invalid depth 18 for ResNeXt.*\[50, 101, 152\]'):
        ResNeXt(depth=18)


def test_zero_init_residual_does_not_reach_resnext_blocks():
    # mmdetection 3.3 quirk, kept: ResNet's zero_init_residual tests `block is Bottleneck`,
    # and ResNeXt's block is a subclass, so its residual norms stay at 1.
    model = ResNeXt(depth=50, groups=4, base_channels=16)
    assert model.zero_init_residual
    model.init_weights()
    assert all(torch.all(block.bn3.weight == 1) for block in model.layer2)
    assert torch.all(model.layer2[0].bn2.weight == 1)


def test_plugins_see_the_grouped_width():
    plugins = [dict(cfg=dict(type='ContextBlock', ratio=0.25), position='after_conv2',
                    stages=(True, False, False, False))]
    model = ResNeXt(depth=50, groups=8, base_width=4, base_channels=16, plugins=plugins)
    assert model.layer1[0].context_block.in_channels == 32
    assert not hasattr(model.layer2[0], 'context_block')
    assert model.eval()(torch.rand(1, 3, 32, 32))[0].shape == (1, 64, 8, 8)


def test_grouped_dcn_matches_grouped_conv_at_init():
    model = ResNeXt(depth=50, groups=4, base_width=4, base_channels=16,
                    dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
                    stage_with_dcn=(False, False, False, True))
    conv2 = model.layer4[0].conv2
    assert type(conv2) is DeformConv2dPack and conv2.groups == 4
    assert type(model.layer3[0].conv2) is nn.Conv2d
    # Zero offsets hold at construction; ResNet's Kaiming init_cfg then reaches conv_offset
    # (as with mmcv's DCN v1, which leaves init_weights to its parent).
    x = torch.rand(1, 128, 4, 4)
    expected = nn.functional.conv2d(x, conv2.weight, stride=2, padding=1, groups=4)
    torch.testing.assert_close(conv2(x), expected, rtol=1e-5, atol=1e-5)
    model.init_weights()
    assert conv2.conv_offset.weight.abs().sum() > 0
    model.train()
    sum(o.sum() for o in model(torch.rand(1, 3, 32, 32))).backward()
    assert conv2.conv_offset.weight.grad is not None
