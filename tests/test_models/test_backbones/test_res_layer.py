"""Residual blocks, ResLayer and ResNet plugins (mmcv's ContextBlock, GeneralizedAttention,
NonLocal2d and a user-registered plugin) at every position."""
import pytest
import torch
from torch import nn

from mmdet_lite.models.backbones import ResNet
from mmdet_lite.models.layers import BasicBlock, Bottleneck, ResLayer
from mmdet_lite.registry import MODELS


@MODELS.register_module(force=True)
class RecordingPlugin(nn.Module):
    """Test plugin: remembers its input and adds a constant."""
    _abbr_ = 'recorder'

    def __init__(self, in_channels: int, offset: float = 0.0) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.offset = offset
        self.last_input = None

    def forward(self, x):
        self.last_input = x.detach().clone()
        return x + self.offset


def test_basic_block_shapes_and_keys():
    down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    block = BasicBlock(8, 16, stride=2, downsample=down).eval()
    assert block(torch.rand(1, 8, 10, 10)).shape == (1, 16, 5, 5)
    assert block.norm1 is block.bn1 and block.norm2 is block.bn2
    assert set(block.state_dict()) >= {'conv1.weight', 'bn1.weight', 'conv2.weight',
                                       'downsample.0.weight', 'downsample.1.running_mean'}


def test_bottleneck_shapes_keys_and_identity_shortcut():
    block = Bottleneck(16, 4).eval()
    assert block.downsample is None
    x = torch.rand(2, 16, 6, 6)
    assert block(x).shape == (2, 16, 6, 6)
    assert block.norm3 is block.bn3
    # A zero last norm turns the block into relu(x) = x for non-negative x.
    nn.init.zeros_(block.bn3.weight)
    torch.testing.assert_close(block(x), x)


def test_block_rejects_unknown_style():
    with pytest.raises(ValueError, match="style must be 'pytorch' or 'caffe'"):
        Bottleneck(16, 4, style='tf')


def test_res_layer_downsamples_first_block_only():
    layer = ResLayer(Bottleneck, inplanes=16, planes=8, num_blocks=3, stride=2)
    assert len(layer) == 3
    assert layer[0].downsample is not None and layer[1].downsample is None
    assert layer[0].downsample[0].stride == (2, 2)
    assert layer.eval()(torch.rand(1, 16, 8, 8)).shape == (1, 32, 4, 4)


def test_res_layer_without_shape_change_has_no_shortcut_conv():
    layer = ResLayer(BasicBlock, inplanes=8, planes=8, num_blocks=2)
    assert all(block.downsample is None for block in layer)


def test_res_layer_downsample_last_for_hourglass():
    layer = ResLayer(BasicBlock, inplanes=8, planes=16, num_blocks=3, stride=2,
                     downsample_first=False)
    assert [b.downsample is not None for b in layer] == [False, False, True]
    assert layer.eval()(torch.rand(1, 8, 8, 8)).shape == (1, 16, 4, 4)


def _plugin(cfg, position, stages=None):
    spec = dict(cfg=cfg, position=position)
    if stages is not None:
        spec['stages'] = stages
    return spec


@pytest.mark.parametrize('cfg,position,name,channels', [
    (dict(type='ContextBlock', ratio=1. / 4), 'after_conv3', 'context_block', (64, 128)),
    (dict(type='GeneralizedAttention', spatial_range=-1, num_heads=2, attention_type='0010',
          kv_stride=2), 'after_conv2', 'gen_attention_block', (16, 32)),
    (dict(type='NonLocal2d', reduction=2), 'after_conv1', 'nonlocal_block', (16, 32)),
])
def test_mmcv_plugins_at_each_position(cfg, position, name, channels):
    stages = (False, True, True, False)
    model = ResNet(50, base_channels=8, plugins=[_plugin(cfg, position, stages)]).eval()
    keys = set(model.state_dict())
    assert not any(k.startswith(f'layer1.0.{name}') for k in keys)
    assert not any(k.startswith(f'layer4.0.{name}') for k in keys)
    for stage, in_channels in zip((2, 3), channels):
        plugin = getattr(getattr(model, f'layer{stage}')[0], name)
        assert plugin.in_channels == in_channels
        assert any(k.startswith(f'layer{stage}.0.{name}.') for k in keys)
    outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 16), (1, 64, 8, 8), (1, 128, 4, 4),
                                             (1, 256, 2, 2)]


def test_plugin_without_stages_goes_to_every_stage():
    model = ResNet(50, base_channels=8, num_stages=2, strides=(1, 2), dilations=(1, 1),
                   out_indices=(1, ),
                   plugins=[_plugin(dict(type='ContextBlock', ratio=0.25), 'after_conv3')])
    assert all(hasattr(block, 'context_block') for layer in (model.layer1, model.layer2)
               for block in layer)


@pytest.mark.parametrize('position,channels', [('after_conv1', 8), ('after_conv2', 8),
                                               ('after_conv3', 32)])
def test_user_registered_plugins_chain_in_order(position, channels):
    plugins = [
        _plugin(dict(type='RecordingPlugin', offset=1.0, postfix='_a'), position),
        _plugin(dict(type='RecordingPlugin', offset=10.0, postfix='_b'), position),
    ]
    model = ResNet(50, base_channels=8, num_stages=1, strides=(1, ), dilations=(1, ),
                   out_indices=(0, ), plugins=plugins).eval()
    block = model.layer1[0]
    assert getattr(block, f'{position}_plugin_names') == ['recorder_a', 'recorder_b']
    model(torch.rand(1, 3, 32, 32))
    first, second = block.recorder_a.last_input, block.recorder_b.last_input
    assert first.shape == (1, channels, 8, 8)
    torch.testing.assert_close(second, first + 1.0)  # the second sees the first's output


def test_plugin_changes_block_output():
    block = Bottleneck(16, 4, plugins=[_plugin(dict(type='RecordingPlugin', offset=5.0),
                                               'after_conv3')]).eval()
    nn.init.constant_(block.bn3.bias, 10.0)  # keeps every pre-ReLU sum positive
    plain = Bottleneck(16, 4).eval()
    plain.load_state_dict(block.state_dict())
    x = torch.rand(1, 16, 4, 4)
    assert torch.all(plain(x) > 0)
    torch.testing.assert_close(block(x), plain(x) + 5.0)


def test_duplicate_plugin_names_need_a_postfix():
    cfg = dict(type='ContextBlock', ratio=0.25)
    with pytest.raises(ValueError, match="Duplicate plugin name 'context_block'"):
        Bottleneck(16, 4, plugins=[_plugin(cfg, 'after_conv3'), _plugin(cfg, 'after_conv3')])


def test_plugin_spec_must_have_a_cfg_dict():
    with pytest.raises(TypeError, match="dict 'cfg'"):
        ResNet(50, plugins=[dict(position='after_conv3')])
