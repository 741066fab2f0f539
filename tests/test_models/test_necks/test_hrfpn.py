"""HRFPN: mmdetection's keys and shapes, output sizes, fusion and pooling by recomputation."""
import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.necks import HRFPN

IN = [4, 8, 16, 32]  # HRNetV2p-W18 is [18, 36, 72, 144]


def branches(size=32, batch=1, requires_grad=False):
    return [torch.rand(batch, c, size // 2**i, size // 2**i, requires_grad=requires_grad)
            for i, c in enumerate(IN)]


def test_state_dict_keys_and_shapes():
    neck = HRFPN(IN, 16)
    expected = {'reduction_conv.conv.weight': (16, sum(IN), 1, 1),
                'reduction_conv.conv.bias': (16,)}
    for i in range(5):
        expected[f'fpn_convs.{i}.conv.weight'] = (16, 16, 3, 3)
        expected[f'fpn_convs.{i}.conv.bias'] = (16,)
    assert {k: tuple(v.shape) for k, v in neck.state_dict().items()} == expected
    assert neck.init_cfg == dict(type='Caffe2Xavier', layer='Conv2d')
    # norm_cfg is accepted but, as in mmdetection, not used by the convs.
    assert set(HRFPN(IN, 16, norm_cfg=dict(type='BN')).state_dict()) == set(expected)


@pytest.mark.parametrize('kwargs,sizes', [
    (dict(), [32, 16, 8, 4, 2]),
    (dict(num_outs=3, stride=2), [16, 8, 4]),
])
def test_output_shapes(kwargs, sizes):
    outs = HRFPN(IN, 16, **kwargs)(branches(batch=2))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 16, s, s) for s in sizes]


@pytest.mark.parametrize('pooling_type,pool', [('AVG', F.avg_pool2d), ('MAX', F.max_pool2d)])
def test_fusion_and_pooling(pooling_type, pool):
    neck = HRFPN(IN, 8, num_outs=3, pooling_type=pooling_type).eval()
    inputs = branches()
    up = [inputs[0]] + [F.interpolate(x, scale_factor=2**i, mode='bilinear',
                                      align_corners=False) for i, x in enumerate(inputs) if i]
    fused = neck.reduction_conv(torch.cat(up, 1))
    outs = neck(inputs)
    torch.testing.assert_close(outs[0], neck.fpn_convs[0](fused))
    torch.testing.assert_close(outs[2], neck.fpn_convs[2](pool(fused, 4, 4)))


def test_with_cp_same_values_and_gradients():
    neck = HRFPN(IN, 8, num_outs=2)
    cp = HRFPN(IN, 8, num_outs=2, with_cp=True)
    cp.load_state_dict(neck.state_dict())
    inputs = branches(requires_grad=True)
    a, b = neck(inputs), cp(inputs)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    sum(o.sum() for o in b).backward()
    assert cp.reduction_conv.conv.weight.grad is not None


def test_wrong_number_of_inputs():
    with pytest.raises(AssertionError, match='expects 4 input maps'):
        HRFPN(IN, 8)(branches()[:3])
