"""SSH neck: mmdetection 3.3's keys and shapes, the concatenation order, argument checks."""
import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import conv_bn, shapes_of

from mmdet_lite.models.necks import SSH
from mmdet_lite.registry import MODELS


def ssh_module_keys(prefix, in_c, out_c):
    q = out_c // 4
    return {
        **conv_bn(f'{prefix}.conv3x3', in_c, out_c // 2, 3),
        **conv_bn(f'{prefix}.context_module.conv5x5_1', in_c, q, 3),
        **conv_bn(f'{prefix}.context_module.conv5x5_2', q, q, 3),
        **conv_bn(f'{prefix}.context_module.conv7x7_2', q, q, 3),
        **conv_bn(f'{prefix}.context_module.conv7x7_3', q, q, 3),
    }


def test_keys_and_shapes():
    neck = MODELS.build(dict(type='SSH', num_scales=2, in_channels=[8, 16],
                             out_channels=[16, 32]))
    assert shapes_of(neck) == {**ssh_module_keys('ssh_module0', 8, 16),
                               **ssh_module_keys('ssh_module1', 16, 32)}
    outs = neck([torch.rand(2, 8, 12, 10), torch.rand(2, 16, 6, 5)])
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 12, 10), (2, 32, 6, 5)]
    assert all(o.min() >= 0 for o in outs)
    assert neck.init_cfg == dict(type='Xavier', layer='Conv2d', distribution='uniform')


def test_branches_and_order():
    neck = SSH(1, [4], [8]).eval()
    m = neck.ssh_module0
    ctx = m.context_module
    x = torch.randn(1, 4, 7, 7)
    # conv5x5_1 has ReLU; conv5x5_2, conv7x7_3 and conv3x3 have none before the final ReLU.
    assert ctx.conv5x5_1.with_activation and ctx.conv7x7_2.with_activation
    assert not (m.conv3x3.with_activation or ctx.conv5x5_2.with_activation
                or ctx.conv7x7_3.with_activation)
    shared = ctx.conv5x5_1(x)
    expected = F.relu(torch.cat([m.conv3x3(x), ctx.conv5x5_2(shared),
                                 ctx.conv7x7_3(ctx.conv7x7_2(shared))], dim=1))
    torch.testing.assert_close(neck([x])[0], expected)


def test_argument_and_input_checks():
    with pytest.raises(AssertionError, match='must be equal'):
        SSH(2, [4], [8])
    with pytest.raises(AssertionError, match='divisible by 4'):
        SSH(1, [4], [6])
    with pytest.raises(AssertionError, match='expects 2 input levels'):
        SSH(2, [4, 4], [8, 8])([torch.rand(1, 4, 4, 4)])
