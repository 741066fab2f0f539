"""SPPBottleneck: keys, defaults, and the pooling sizes on a single spike."""
import pytest
import torch
from helpers_state_dict import conv_bn, shapes_of
from torch import nn

from mmdet_lite.models.layers import SPPBottleneck


def test_keys_and_default_kernel_sizes():
    spp = SPPBottleneck(16, 24)
    assert [(p.kernel_size, p.stride, p.padding) for p in spp.poolings] == [(5, 1, 2), (9, 1, 4),
                                                                            (13, 1, 6)]
    # conv1 halves the channels; conv2 reads the input and three pooled copies: 4 * 8.
    assert shapes_of(spp) == {**conv_bn('conv1', 16, 8, 1), **conv_bn('conv2', 32, 24, 1)}
    assert spp.conv1.bn.momentum == 0.03 and spp.conv1.bn.eps == 0.001
    assert type(spp.conv1.activate).__name__ == 'Swish'


@pytest.mark.parametrize('kernel_sizes', [(5, 9, 13), (3, 7)])
def test_pooling_sizes_on_a_spike(kernel_sizes):
    spp = SPPBottleneck(2, 4, kernel_sizes=kernel_sizes)
    spp.conv1 = nn.Identity()  # look at the concatenation itself
    spp.conv2 = nn.Identity()
    x = torch.zeros(1, 2, 21, 21)
    x[0, :, 10, 10] = 1.0
    out = spp(x)
    assert out.shape == (1, 2 * (len(kernel_sizes) + 1), 21, 21)
    torch.testing.assert_close(out[:, :2], x)
    for i, k in enumerate(kernel_sizes, start=1):
        pooled = out[0, 2 * i]
        # A stride-1 max pool of kernel k spreads the spike over the k x k square around it.
        assert pooled.sum() == k * k
        r = k // 2
        assert torch.all(pooled[10 - r:10 + r + 1, 10 - r:10 + r + 1] == 1)


def test_forward_shape_keeps_size():
    spp = SPPBottleneck(8, 6)
    assert spp(torch.rand(2, 8, 11, 7)).shape == (2, 6, 11, 7)


@pytest.mark.parametrize('kernel_sizes', [(5, 9, 13), (3, 7), (5, 9, 9), (13, 9, 5), (3, 9)])
def test_fast_pyramid_equals_the_parallel_pools(kernel_sizes):
    """The chained pools (used for odd increasing kernels) give exactly the parallel ones,
    borders included; other kernel lists run the modules themselves."""
    torch.manual_seed(0)
    spp = SPPBottleneck(6, 4, kernel_sizes=kernel_sizes)
    spp.conv1 = nn.Identity()
    spp.conv2 = nn.Identity()
    x = torch.randn(2, 3, 13, 10)  # odd, non-square, smaller than the largest window
    expected = torch.cat([x] + [nn.functional.max_pool2d(x, k, 1, k // 2)
                                for k in kernel_sizes], dim=1)
    assert torch.equal(spp(x), expected)


def test_replaced_poolings_are_run_as_given():
    spp = SPPBottleneck(4, 4, kernel_sizes=(5, 9))
    spp.conv1 = nn.Identity()
    spp.conv2 = nn.Identity()
    spp.poolings[1] = nn.AvgPool2d(3, stride=1, padding=1)
    x = torch.randn(1, 2, 8, 8)
    assert torch.equal(spp(x)[:, 4:], spp.poolings[1](x))


def test_training_gradients_are_the_parallel_pools_even_with_tied_maxima():
    """With gradients on, the pools run as mmdetection's (the chained backward breaks ties
    in a window differently); under no_grad the chained path gives the same values."""
    spp = SPPBottleneck(4, 4)
    spp.conv1 = nn.Identity()
    spp.conv2 = nn.Identity()
    x = (torch.rand(1, 2, 12, 12) > 0.5).float().requires_grad_()  # many tied maxima
    weights = torch.rand(1, 8, 12, 12)
    (spp(x) * weights).sum().backward()
    ref_x = x.detach().clone().requires_grad_()
    ref = torch.cat([ref_x] + [nn.functional.max_pool2d(ref_x, k, 1, k // 2)
                               for k in (5, 9, 13)], dim=1)
    (ref * weights).sum().backward()
    assert torch.equal(x.grad, ref_x.grad)
    with torch.no_grad():
        assert torch.equal(spp(x), ref)
