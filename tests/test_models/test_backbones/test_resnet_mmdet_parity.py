"""ResNet/ResNeXt initialisation, train-mode flags and argument checks as mmdetection 3.3's,
its quirks included: no zero-init residual for ResNeXt, Kaiming-initialised DCN offset
convs, conv1 left in train mode by frozen_stages, asserts that are AssertionErrors."""
import math

import pytest
import torch
from torch import nn

from mmdet_lite.models.backbones import ResNet, ResNeXt
from mmdet_lite.models.layers import DeformConv2dPack, ModulatedDeformConv2dPack


def _dcn_layers(model, cls):
    return [m for m in model.modules() if isinstance(m, cls)]


# ---- zero-init residual -------------------------------------------------------------

def test_resnet_blocks_get_the_zero_init_config_resnext_blocks_none():
    resnet = ResNet(50, base_channels=8)
    assert resnet.layer1[0].init_cfg == dict(type='Constant', val=0,
                                             override=dict(name='norm3'))
    assert ResNet(18, base_channels=8).layer1[0].init_cfg == dict(
        type='Constant', val=0, override=dict(name='norm2'))
    resnext = ResNeXt(depth=50, groups=4, base_channels=16)
    assert resnext.init_cfg == [dict(type='Kaiming', layer='Conv2d'),
                                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
    assert all(block.init_cfg is None for block in resnext.layer1)


def test_resnext_residual_norms_start_at_one_resnet_ones_at_zero():
    resnext = ResNeXt(depth=50, groups=4, base_channels=16)
    resnext.init_weights()
    for layer in (resnext.layer1, resnext.layer2, resnext.layer3, resnext.layer4):
        for block in layer:
            assert torch.all(block.bn3.weight == 1) and torch.all(block.bn3.bias == 0)
    resnet = ResNet(50, base_channels=8)
    resnet.init_weights()
    assert all(torch.all(block.bn3.weight == 0) for block in resnet.layer2)
    assert all(torch.all(block.bn2.weight == 1) for block in resnet.layer2)


# ---- DCN offsets inside a ResNet ----------------------------------------------------

def test_dcn_offset_convs_end_kaiming_initialised():
    model = ResNet(50, base_channels=16, dcn=dict(type='DCN', deform_groups=1),
                   stage_with_dcn=(False, True, True, True))
    layers = _dcn_layers(model, DeformConv2dPack)
    assert len(layers) == 4 + 6 + 3
    assert all(torch.all(m.conv_offset.weight == 0) for m in layers)  # as built
    model.init_weights()
    for m in layers:
        assert torch.all(m.conv_offset.bias == 0)
        assert not hasattr(m, 'is_init')  # the marker is gone again
    # Kaiming normal, mode fan_out: std = sqrt(2 / (18 * 3 * 3)) = 0.1111 for every layer
    weights = torch.cat([m.conv_offset.weight.flatten() for m in layers])
    assert weights.numel() > 50000
    assert weights.std().item() == pytest.approx(math.sqrt(2 / 162), rel=0.03)
    assert abs(weights.mean().item()) < 0.005


def test_dcnv2_offsets_end_at_zero():
    # mmcv's ModulatedDeformConv2dPack has init_weights: mmengine calls it after the Kaiming
    model = ResNet(50, base_channels=8, dcn=dict(type='DCNv2', deform_groups=1),
                   stage_with_dcn=(False, False, True, True))
    model.init_weights()
    layers = _dcn_layers(model, ModulatedDeformConv2dPack)
    assert len(layers) == 6 + 3
    assert all(torch.all(m.conv_offset.weight == 0) and torch.all(m.conv_offset.bias == 0)
               for m in layers)


def test_without_the_default_init_cfg_dcn_offsets_stay_zero(tmp_path):
    source = ResNet(50, base_channels=8)
    path = tmp_path / 'plain.pth'
    torch.save(source.state_dict(), path)
    model = ResNet(50, base_channels=8, dcn=dict(type='DCN'),
                   stage_with_dcn=(False, False, False, True),
                   init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    layers = _dcn_layers(model, DeformConv2dPack)
    assert len(layers) == 3
    assert all(torch.all(m.conv_offset.weight == 0) for m in layers)
    torch.testing.assert_close(model.layer4[0].conv2.weight, source.layer4[0].conv2.weight)


# ---- frozen_stages and train mode ----------------------------------------------------

def test_frozen_stem_puts_norm1_in_eval_but_leaves_conv1_in_train_mode():
    model = ResNet(18, base_channels=8, frozen_stages=0, norm_eval=False).train()
    assert model.conv1.training and not model.norm1.training
    assert not model.conv1.weight.requires_grad and not model.norm1.weight.requires_grad
    assert model.layer1.training and model.layer1[0].conv1.weight.requires_grad
    model.eval().train()  # train() re-applies the freezing
    assert model.conv1.training and not model.norm1.training


def test_frozen_stages_put_whole_stages_and_deep_stem_in_eval_mode():
    model = ResNet(18, base_channels=8, frozen_stages=1, deep_stem=True, norm_eval=False)
    model.train()
    assert all(not m.training for m in model.stem.modules())
    assert all(not m.training for m in model.layer1.modules())
    assert all(not p.requires_grad for p in model.layer1.parameters())
    assert model.layer2.training and model.layer2[0].conv1.training


def test_frozen_stages_below_minus_one_freeze_nothing():
    model = ResNet(18, base_channels=8, frozen_stages=-3, norm_eval=False).train()
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


# ---- argument checks -----------------------------------------------------------------

@pytest.mark.parametrize('kwargs,match', [
    (dict(num_stages=0), 'num_stages must be in 1..4, got 0'),
    (dict(num_stages=5), 'num_stages must be in 1..4, got 5'),
    (dict(strides=(1, 2, 2)), r'strides \(length 3\)'),
    (dict(dilations=(1, 1, 1, 1, 1)), r'dilations \(length 5\)'),
    (dict(out_indices=(0, 4)), r'out_indices .* got \(0, 4\)'),
    (dict(style='tf'), "style must be 'pytorch' or 'caffe'"),
    (dict(dcn=dict(type='DCN'), stage_with_dcn=(True, )), r'stage_with_dcn \(length 1\)'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='a.pth')),
     'init_cfg and pretrained'),
])
def test_mmdetection_asserts_raise_assertion_errors(kwargs, match):
    with pytest.raises(AssertionError, match=match):
        ResNet(50, base_channels=8, **kwargs)


def test_negative_out_indices_are_accepted_and_select_nothing():
    model = ResNet(18, base_channels=8, out_indices=(-1, 3)).eval()
    outs = model(torch.rand(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 1, 1)]


def test_pretrained_with_a_falsy_init_cfg_is_accepted(tmp_path):
    # mmdetection asserts `not (init_cfg and pretrained)`: an empty init_cfg passes
    source = ResNet(18, base_channels=8)
    path = str(tmp_path / 'r18.pth')
    torch.save(source.state_dict(), path)
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = ResNet(18, base_channels=8, pretrained=path, init_cfg=[])
    model.init_weights()
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    assert isinstance(model.conv1, nn.Conv2d)
