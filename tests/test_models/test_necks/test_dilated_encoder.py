"""DilatedEncoder (YOLOF): mmdetection 3.3's keys and shapes, dilations, init, data flow."""
import inspect

import pytest
import torch
from helpers_state_dict import bn, conv_bn, shapes_of

from mmdet_lite.models.necks import DilatedEncoder
from mmdet_lite.registry import MODELS


def test_keys_and_shapes():
    neck = MODELS.build(dict(type='DilatedEncoder', in_channels=32, out_channels=16,
                             block_mid_channels=4, num_residual_blocks=4,
                             block_dilations=[2, 4, 6, 8]))
    expected = {
        'lateral_conv.weight': (16, 32, 1, 1),
        'lateral_conv.bias': (16, ),
        **bn('lateral_norm', 16),
        'fpn_conv.weight': (16, 16, 3, 3),
        'fpn_conv.bias': (16, ),
        **bn('fpn_norm', 16),
    }
    for i in range(4):
        block = f'dilated_encoder_blocks.{i}'
        expected.update(conv_bn(f'{block}.conv1', 16, 4, 1))
        expected.update(conv_bn(f'{block}.conv2', 4, 4, 3))
        expected.update(conv_bn(f'{block}.conv3', 4, 16, 1))
    assert shapes_of(neck) == expected
    for block, d in zip(neck.dilated_encoder_blocks, [2, 4, 6, 8]):
        assert block.conv2.conv.dilation == (d, d) and block.conv2.conv.padding == (d, d)

    feats = [torch.rand(2, 8, 16, 16), torch.rand(2, 32, 5, 7)]
    outs = neck(feats)
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == (2, 16, 5, 7)


def test_block_dilations_has_no_default():
    params = inspect.signature(DilatedEncoder.__init__).parameters
    assert params['block_dilations'].default is inspect.Parameter.empty


def test_forward_is_projection_then_residual_blocks():
    neck = DilatedEncoder(8, 8, 2, 2, [1, 3]).eval()
    x = torch.rand(1, 8, 9, 9)
    out = neck.fpn_norm(neck.fpn_conv(neck.lateral_norm(neck.lateral_conv(x))))
    for block in neck.dilated_encoder_blocks:
        out = block.conv3(block.conv2(block.conv1(out))) + out
    torch.testing.assert_close(neck([x])[0], out)


def test_residual_block_is_identity_when_its_last_bn_is_zero():
    neck = DilatedEncoder(4, 4, 2, 1, [2]).eval()
    block = neck.dilated_encoder_blocks[0]
    torch.nn.init.zeros_(block.conv3.bn.weight)  # conv3 -> BN -> ReLU(0) = 0
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(block(x), x)


def test_init_weights():
    neck = DilatedEncoder(8, 8, 4, 2, [2, 4])
    for p in neck.parameters():
        torch.nn.init.constant_(p, 5.0)
    neck.init_weights()
    assert torch.count_nonzero(neck.lateral_conv.bias) == 0  # caffe2 Xavier, bias 0
    bound = (3.0 / 8)**0.5  # kaiming_uniform a=1: sqrt(3 / fan_in), fan_in = 8
    assert neck.lateral_conv.weight.abs().max() <= bound
    for norm in (neck.lateral_norm, neck.fpn_norm, neck.dilated_encoder_blocks[1].conv2.bn):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    w = neck.dilated_encoder_blocks[0].conv2.conv.weight
    assert w.abs().max() < 0.1 and 0.003 < w.std() < 0.02  # N(0, 0.01)


def test_reads_only_the_last_level():
    neck = DilatedEncoder(8, 8, 2, 1, [2]).eval()
    x = torch.rand(1, 8, 4, 4)
    torch.testing.assert_close(neck([torch.rand(1, 3, 8, 8), x])[0], neck((x, ))[0])
    with pytest.raises(IndexError):
        DilatedEncoder(8, 8, 2, 2, [2])
