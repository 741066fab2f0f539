"""ResNetV1d is mmdetection's: ResNet with deep_stem=True and avg_down=True, full key list
and order, the average-pool shortcut in every stage, freezing and checkpoint loading."""
import pytest
import torch
import torch.nn.functional as F
from helpers_resnet_family_keys import resnet_v1d
from helpers_state_dict import shapes_of
from torch import nn

from mmdet_lite.models.backbones import ResNet, ResNetV1d
from mmdet_lite.registry import MODELS


@pytest.mark.parametrize('depth', [50, 101])
def test_state_dict_keys_shapes_and_order(depth):
    with torch.device('meta'):
        model = ResNetV1d(depth=depth)
    expected = resnet_v1d('', depth=depth)
    assert shapes_of(model) == expected
    assert list(model.state_dict()) == list(expected)


def test_is_resnet_with_deep_stem_and_avg_down_fixed():
    model = MODELS.build(dict(type='ResNetV1d', depth=50, base_channels=16))
    assert type(model) is ResNetV1d and isinstance(model, ResNet)
    assert model.deep_stem and model.avg_down
    with torch.device('meta'):
        same = ResNet(depth=50, base_channels=16, deep_stem=True, avg_down=True)
    assert shapes_of(model) == shapes_of(same)
    for fixed in ('deep_stem', 'avg_down'):
        with pytest.raises(TypeError, match=fixed):
            ResNetV1d(depth=50, **{fixed: False})


def test_every_stage_shortcut_average_pools_first():
    model = ResNetV1d(depth=50, base_channels=16)
    # Stage 1 does not stride: its shortcut still starts with an AvgPool2d, of size 1.
    assert model.layer1[0].downsample[0].kernel_size == 1
    for name in ('layer2', 'layer3', 'layer4'):
        pool, conv, _ = getattr(model, name)[0].downsample
        assert (pool.kernel_size, pool.stride, pool.ceil_mode, pool.count_include_pad) == (
            2, 2, True, False)
        assert conv.stride == (1, 1) and conv.kernel_size == (1, 1)
    shortcut = model.layer2[0].downsample.eval()
    x = torch.rand(2, 64, 9, 9)
    with torch.no_grad():
        # 9x9 -> 5x5: ceil mode, and the edge windows average only the real pixels.
        expected = shortcut[2](F.conv2d(F.avg_pool2d(x, 2, 2, ceil_mode=True,
                                                     count_include_pad=False),
                                        shortcut[1].weight))
        torch.testing.assert_close(shortcut(x), expected)


def test_deep_stem_and_forward_shapes():
    model = ResNetV1d(depth=50, base_channels=16).eval()
    convs = [m for m in model.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [
        (3, 8, (2, 2)), (8, 8, (1, 1)), (8, 16, (1, 1))]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 16), (1, 128, 8, 8),
                                             (1, 256, 4, 4), (1, 512, 2, 2)]


def test_frozen_stages_freeze_the_deep_stem():
    model = ResNetV1d(depth=50, base_channels=16, frozen_stages=1, norm_eval=False).train()
    assert all(not p.requires_grad for m in (model.stem, model.layer1)
               for p in m.parameters())
    assert not model.stem.training and not model.layer1.training
    assert model.layer2.training and model.layer2[0].bn1.training


def test_mmdetection_keyed_checkpoint_loads_through_init_cfg(tmp_path):
    expected = resnet_v1d('', depth=50, base_channels=16)
    gen = torch.Generator().manual_seed(0)
    checkpoint = {k: (torch.randint(0, 5, s, generator=gen) if k.endswith('tracked') else
                      torch.rand(s, generator=gen)) for k, s in expected.items()}
    torch.save({'state_dict': checkpoint}, tmp_path / 'resnet50_v1d.pth')
    model = ResNetV1d(depth=50, base_channels=16, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'resnet50_v1d.pth')))
    model.init_weights()
    state = model.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[k], checkpoint[k]) for k in expected)
