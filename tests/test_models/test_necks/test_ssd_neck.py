"""SSDNeck: mmdetection's keys and shapes (SSD300), output sizes, L2Norm by hand, init."""
import pytest
import torch

from mmdet_lite.models.necks import SSDNeck
from mmdet_lite.models.necks.ssd_neck import L2Norm

# configs/_base_/models/ssd300.py
SSD300 = dict(in_channels=(512, 1024), out_channels=(512, 1024, 512, 256, 256, 256),
              level_strides=(2, 2, 1, 1), level_paddings=(1, 1, 0, 0), l2_norm_scale=20)


def test_ssd300_state_dict_keys_and_shapes():
    neck = SSDNeck(**SSD300)
    expected = {'l2_norm.weight': (512,)}
    # (input channels, output channels) of each extra level
    for i, (c_in, c_out) in enumerate([(1024, 512), (512, 256), (256, 256), (256, 256)]):
        expected[f'extra_layers.{i}.0.conv.weight'] = (c_out // 2, c_in, 1, 1)
        expected[f'extra_layers.{i}.0.conv.bias'] = (c_out // 2,)
        expected[f'extra_layers.{i}.1.conv.weight'] = (c_out, c_out // 2, 3, 3)
        expected[f'extra_layers.{i}.1.conv.bias'] = (c_out,)
    assert {k: tuple(v.shape) for k, v in neck.state_dict().items()} == expected


def test_ssd300_output_shapes():
    neck = SSDNeck(**SSD300)
    outs = neck([torch.rand(1, 512, 38, 38), torch.rand(1, 1024, 19, 19)])
    assert isinstance(outs, tuple)
    assert [tuple(o.shape[1:]) for o in outs] == [
        (512, 38, 38), (1024, 19, 19), (512, 10, 10), (256, 5, 5), (256, 3, 3), (256, 1, 1)]


def test_l2_norm_by_hand_and_passthrough():
    norm = L2Norm(2, scale=10.)
    x = torch.tensor([[[[3.]], [[4.]]]])  # one pixel, channel vector (3, 4), norm 5
    torch.testing.assert_close(norm(x), torch.tensor([[[[6.]], [[8.]]]]))
    assert norm(x.half()).dtype == torch.float16
    neck = SSDNeck([2, 4], [2, 4, 8], [2], [1], l2_norm_scale=10.)
    neck.l2_norm.load_state_dict(norm.state_dict())
    inputs = [x.expand(1, 2, 3, 3).contiguous(), torch.rand(1, 4, 3, 3)]
    outs = neck(inputs)
    torch.testing.assert_close(outs[0], norm(inputs[0]))
    assert outs[1] is inputs[1]  # later inputs pass through unchanged
    torch.testing.assert_close(outs[2], neck.extra_layers[0](inputs[1]))


def test_init_cfg_and_init_weights():
    neck = SSDNeck([4, 8], [4, 8, 8], [2], [1], l2_norm_scale=7.)
    assert neck.init_cfg == [
        dict(type='Xavier', distribution='uniform', layer='Conv2d'),
        dict(type='Constant', val=1, layer='BatchNorm2d'),
        dict(type='Constant', val=7., override=dict(name='l2_norm'))]
    torch.nn.init.constant_(neck.l2_norm.weight, 0.)
    neck.init_weights()
    torch.testing.assert_close(neck.l2_norm.weight, torch.full((4,), 7.))
    assert not hasattr(SSDNeck([4, 8], [4, 8, 8], [2], [1], l2_norm_scale=None), 'l2_norm')


def test_depthwise_and_last_kernel_size():
    neck = SSDNeck([4, 8], [4, 8, 16, 16], [2, 1], [1, 0], l2_norm_scale=None,
                   last_kernel_size=2, use_depthwise=True, norm_cfg=dict(type='BN'))
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    assert shapes['extra_layers.0.1.depthwise_conv.conv.weight'] == (8, 1, 3, 3)
    assert shapes['extra_layers.0.1.pointwise_conv.conv.weight'] == (16, 8, 1, 1)
    assert shapes['extra_layers.1.1.depthwise_conv.conv.weight'] == (8, 1, 2, 2)
    assert 'extra_layers.0.0.bn.running_mean' in shapes
    outs = neck([torch.rand(2, 4, 8, 8), torch.rand(2, 8, 4, 4)])
    assert [tuple(o.shape[1:]) for o in outs] == [(4, 8, 8), (8, 4, 4), (16, 2, 2), (16, 1, 1)]


def test_argument_errors():
    with pytest.raises(AssertionError, match='must be longer than in_channels'):
        SSDNeck([4, 8], [4, 8], [], [])
    with pytest.raises(AssertionError, match='one entry per extra level'):
        SSDNeck([4, 8], [4, 8, 16], [2, 2], [1, 1])
    with pytest.raises(AssertionError, match='as long as level_strides'):
        SSDNeck([4, 8], [4, 8, 16], [2], [1, 1])
    with pytest.raises(AssertionError, match='must start with in_channels'):
        SSDNeck([4, 8], [4, 16, 16], [2], [1])
