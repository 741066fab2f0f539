"""ResNet / ResNetV1d: shapes per depth, stem and shortcut variants, stride placement, freezing,
norm_eval, activation checkpointing, initialization, checkpoint loading and argument errors."""
import pytest
import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import ResNet, ResNetV1d
from mmdet_lite.models.backbones.resnet import BasicBlock, Bottleneck
from mmdet_lite.registry import MODELS


def shapes(outs):
    return [tuple(o.shape) for o in outs]


def bn_modules(module):
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


@pytest.mark.parametrize('depth,base,size,blocks,expansion', [
    (18, 64, 64, (2, 2, 2, 2), 1),
    (34, 16, 64, (3, 4, 6, 3), 1),
    (50, 16, 64, (3, 4, 6, 3), 4),
    (101, 8, 32, (3, 4, 23, 3), 4),
    (152, 8, 32, (3, 8, 36, 3), 4),
])
def test_output_shapes_per_depth(depth, base, size, blocks, expansion):
    model = ResNet(depth, base_channels=base).eval()
    assert tuple(len(getattr(model, f'layer{i + 1}')) for i in range(4)) == blocks
    assert model.block is (BasicBlock if expansion == 1 else Bottleneck)
    with torch.no_grad():
        outs = model(torch.rand(2, 3, size, size))
    expected = [(2, base * 2**i * expansion, size // (4 * 2**i), size // (4 * 2**i))
                for i in range(4)]
    assert shapes(outs) == expected
    assert model.feat_dim == base * 8 * expansion


def test_registry_build_and_arch_settings():
    model = MODELS.build(dict(type='ResNet', depth=18))
    assert isinstance(model, ResNet)
    assert ResNet.arch_settings[50] == (Bottleneck, (3, 4, 6, 3))
    assert sorted(ResNet.arch_settings) == [18, 34, 50, 101, 152]
    assert model.res_layers == ['layer1', 'layer2', 'layer3', 'layer4']


def test_state_dict_keys_equal_torchvision_resnet50():
    ours = set(ResNet(50).state_dict())
    theirs = set(torchvision.models.resnet50(weights=None).state_dict()) - {'fc.weight', 'fc.bias'}
    assert ours == theirs
    assert {'conv1.weight', 'bn1.running_var', 'layer1.0.downsample.0.weight',
            'layer4.2.bn3.weight'} <= ours


def test_out_indices_num_stages_stem_and_in_channels():
    model = ResNet(18, in_channels=1, stem_channels=32, base_channels=16, num_stages=3,
                   strides=(1, 2, 2), dilations=(1, 1, 1), out_indices=(0, 2)).eval()
    assert model.conv1.weight.shape == (32, 1, 7, 7)
    assert model.layer1[0].conv1.in_channels == 32
    assert not hasattr(model, 'layer4')
    outs = model(torch.rand(1, 1, 64, 64))
    assert shapes(outs) == [(1, 16, 16, 16), (1, 64, 4, 4)]


def test_stem_channels_default_to_base_channels():
    assert ResNet(18, base_channels=16).conv1.out_channels == 16


def test_dilated_last_stage_keeps_resolution():
    model = ResNet(50, base_channels=8, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)).eval()
    conv2 = model.layer4[0].conv2
    assert conv2.dilation == (2, 2) and conv2.padding == (2, 2) and conv2.stride == (1, 1)
    outs = model(torch.rand(1, 3, 64, 64))
    assert shapes(outs)[3] == (1, 256, 4, 4)  # stride 16 instead of 32


def test_pytorch_style_strides_the_3x3_conv_and_caffe_the_first_1x1():
    pytorch = ResNet(50, base_channels=8, style='pytorch')
    caffe = ResNet(50, base_channels=8, style='caffe')
    assert pytorch.layer2[0].conv1.stride == (1, 1) and pytorch.layer2[0].conv2.stride == (2, 2)
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)
    assert shapes(caffe.eval()(torch.rand(1, 3, 32, 32))) == shapes(
        pytorch.eval()(torch.rand(1, 3, 32, 32)))


def test_deep_stem_structure_and_keys():
    model = ResNet(50, deep_stem=True, base_channels=16, stem_channels=32)
    assert not hasattr(model, 'conv1')
    convs = [m for m in model.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 16, (3, 3), (2, 2)), (16, 16, (3, 3), (1, 1)), (16, 32, (3, 3), (1, 1))]
    assert [type(m).__name__ for m in model.stem] == ['Conv2d', 'BatchNorm2d', 'ReLU'] * 3
    keys = model.state_dict()
    assert {'stem.0.weight', 'stem.1.weight', 'stem.3.weight', 'stem.7.running_mean'} <= set(keys)
    outs = model.eval()(torch.rand(1, 3, 64, 64))
    assert shapes(outs)[0] == (1, 64, 16, 16)


def test_avg_down_shortcut_pools_then_unit_stride_conv():
    model = ResNet(50, avg_down=True, base_channels=8)
    pool, conv, norm = model.layer2[0].downsample
    assert isinstance(pool, nn.AvgPool2d)
    assert (pool.kernel_size, pool.stride, pool.ceil_mode, pool.count_include_pad) == (
        2, 2, True, False)
    assert conv.stride == (1, 1) and isinstance(norm, nn.BatchNorm2d)
    assert 'layer2.0.downsample.1.weight' in model.state_dict()
    # ceil_mode keeps odd sizes: 66 -> stem 17 -> layer2 9 on both branches.
    outs = model.eval()(torch.rand(1, 3, 66, 66))
    assert shapes(outs)[1] == (1, 64, 9, 9)


def test_resnet_v1d_is_deep_stem_plus_avg_down():
    model = ResNetV1d(depth=50, base_channels=16)
    assert model.deep_stem and model.avg_down
    keys = set(model.state_dict())
    assert {'stem.0.weight', 'layer2.0.downsample.1.weight', 'layer2.0.downsample.2.weight'} <= keys
    assert 'conv1.weight' not in keys
    assert isinstance(MODELS.build(dict(type='ResNetV1d', depth=18)), ResNetV1d)
    outs = model.eval()(torch.rand(1, 3, 64, 64))
    assert shapes(outs) == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)]


@pytest.mark.parametrize('deep_stem', [False, True])
def test_frozen_stages_freeze_stem_and_first_stages(deep_stem):
    model = ResNet(18, base_channels=8, frozen_stages=2, deep_stem=deep_stem, norm_eval=False)
    model.train()
    stem = [model.stem] if deep_stem else [model.conv1, model.norm1]
    for module in stem + [model.layer1, model.layer2]:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in bn_modules(module))
    assert not (model.stem[1] if deep_stem else model.norm1).training
    for module in (model.layer3, model.layer4):
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in bn_modules(module))


def test_frozen_stages_zero_freezes_only_the_stem():
    model = ResNet(18, base_channels=8, frozen_stages=0, norm_eval=False).train()
    assert not model.conv1.weight.requires_grad and not model.norm1.training
    assert model.layer1[0].conv1.weight.requires_grad and model.layer1[0].bn1.training


def test_norm_eval_keeps_batchnorm_in_eval_and_running_stats_fixed():
    model = ResNet(18, base_channels=8, norm_eval=True).train()
    assert model.training and all(not m.training for m in bn_modules(model))
    before = model.layer1[0].bn1.running_mean.clone()
    model(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(model.layer1[0].bn1.running_mean, before)

    free = ResNet(18, base_channels=8, norm_eval=False).train()
    assert all(m.training for m in bn_modules(free))
    free(torch.rand(2, 3, 32, 32) + 1)
    assert not torch.equal(free.layer1[0].bn1.running_mean, before)


def test_norm_requires_grad_false_freezes_only_norm_parameters():
    model = ResNet(18, base_channels=8, norm_cfg=dict(type='BN', requires_grad=False))
    assert all(not m.weight.requires_grad and not m.bias.requires_grad for m in bn_modules(model))
    assert model.conv1.weight.requires_grad


@pytest.mark.parametrize('depth', [18, 50])
def test_with_cp_gives_equal_gradients_and_checkpoints_every_block(depth, monkeypatch):
    plain = ResNet(depth, base_channels=8).train()
    ckpt = ResNet(depth, base_channels=8, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 32, 32)

    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting_checkpoint(*args, **kwargs):
        calls.append(kwargs.get('use_reentrant'))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting_checkpoint)
    for model in (plain, ckpt):
        sum(o.sum() for o in model(x)).backward()
    assert calls == [False] * sum(ResNet.arch_settings[depth][1])
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)

    calls.clear()
    with torch.no_grad():
        ckpt(x)
    assert calls == []  # nothing to recompute without autograd


@pytest.mark.parametrize('depth,last_norm', [(18, 'bn2'), (50, 'bn3')])
def test_default_init_kaiming_convs_unit_norms_zero_last_norm(depth, last_norm):
    model = ResNet(depth, base_channels=16)
    model.init_weights()
    for block in model.modules():
        if isinstance(block, (BasicBlock, Bottleneck)):
            assert torch.all(getattr(block, last_norm).weight == 0)
            assert torch.all(block.bn1.weight == 1)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    # Kaiming normal, fan_out mode: std = sqrt(2 / (16 * 7 * 7)) = 0.05051.
    assert model.conv1.weight.std().item() == pytest.approx(0.05051, rel=0.1)


def test_zero_init_residual_makes_identity_blocks():
    model = ResNet(50, base_channels=8)
    model.init_weights()
    model.eval()
    x = torch.rand(1, 32, 8, 8)  # non-negative, like every block input
    torch.testing.assert_close(model.layer1[1](x), x)

    no_zero = ResNet(50, base_channels=8, zero_init_residual=False)
    no_zero.init_weights()
    assert torch.all(no_zero.layer1[0].bn3.weight == 1)


def _randomize_bn_stats(model):
    for m in bn_modules(model):
        m.running_mean.uniform_(-0.1, 0.1)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.data.uniform_(0.5, 1.0)
        m.bias.data.uniform_(-0.1, 0.1)


@pytest.mark.slow
def test_pretrained_torchvision_state_dict_matches_torchvision_layer4(tmp_path):
    tv = torchvision.models.resnet50(weights=None)
    _randomize_bn_stats(tv)
    tv.eval()
    path = tmp_path / 'resnet50_tv.pth'
    torch.save({k: v for k, v in tv.state_dict().items() if not k.startswith('fc.')}, path)

    model = ResNet(50, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ours = model(x)[3]
        ref = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(ref))))
    assert ours.shape == (1, 2048, 2, 2)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_pretrained_with_prefix_loads_backbone_of_detector_checkpoint(tmp_path):
    source = ResNet(18, base_channels=8)
    _randomize_bn_stats(source)
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(1)
    path = tmp_path / 'detector.pth'
    torch.save({'meta': {}, 'state_dict': state}, path)

    model = ResNet(18, base_channels=8,
                   init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_pretrained_argument_is_a_deprecated_alias(tmp_path):
    source = ResNet(18, base_channels=8)
    path = tmp_path / 'r18.pth'
    torch.save(source.state_dict(), path)
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = ResNet(18, base_channels=8, pretrained=str(path))
    assert model.init_cfg == dict(type='Pretrained', checkpoint=str(path))
    model.init_weights()
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)


def test_missing_checkpoint_raises_file_not_found_naming_the_path(tmp_path):
    path = str(tmp_path / 'no_such_weights.pth')
    model = ResNet(18, base_channels=8, init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(FileNotFoundError, match='no_such_weights.pth'):
        model.init_weights()


def test_init_cfg_and_pretrained_together_is_an_error():
    with pytest.raises(ValueError, match='init_cfg and pretrained'):
        ResNet(18, pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='a.pth'))
    with pytest.raises(TypeError, match='pretrained must be a str'):
        ResNet(18, pretrained=123)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(depth=20), KeyError, r'Invalid depth 20.*\[18, 34, 50, 101, 152\]'),
    (dict(depth=50, num_stages=0), ValueError, 'num_stages must be in 1..4, got 0'),
    (dict(depth=50, num_stages=5), ValueError, 'num_stages must be in 1..4, got 5'),
    (dict(depth=50, strides=(1, 2, 2)), ValueError, r'strides \(length 3\)'),
    (dict(depth=50, dilations=(1, 1)), ValueError, r'dilations \(length 2\)'),
    (dict(depth=50, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1)), ValueError,
     r'out_indices .* 0..2, got \(0, 1, 2, 3\)'),
    (dict(depth=50, style='tf'), ValueError, "style must be 'pytorch' or 'caffe'"),
    (dict(depth=50, frozen_stages=5), ValueError, 'frozen_stages must be in -1..4'),
    (dict(depth=50, dcn=dict(type='DCN'), stage_with_dcn=(True, )), ValueError,
     r'stage_with_dcn \(length 1\)'),
    (dict(depth=18, dcn=dict(type='DCN'), stage_with_dcn=(False, True, True, True)),
     ValueError, 'BasicBlock .* does not support dcn'),
    (dict(depth=50, plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25),
                                  position='after_conv4')]), ValueError,
     "Unknown plugin position 'after_conv4'"),
    (dict(depth=50, plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25),
                                  position='after_conv3', stages=(True, ))]), ValueError,
     r'plugin stages \(True,\) need one flag per stage'),
    (dict(depth=18, plugins=[dict(cfg=dict(type='ContextBlock', ratio=0.25),
                                  position='after_conv2')]), ValueError,
     'BasicBlock .* does not support plugins'),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResNet(**kwargs)
