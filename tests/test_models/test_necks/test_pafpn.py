"""PAFPN: mmdetection's keys and shapes, the bottom-up path by hand, extra levels."""
import pytest
import torch

from mmdet_lite.models.necks import FPN, PAFPN
from mmdet_lite.registry import MODELS


def feats(channels=(8, 16, 32, 64), size=32, batch=1):
    return [torch.rand(batch, c, size // 2**i, size // 2**i) for i, c in enumerate(channels)]


def test_state_dict_keys_and_shapes():
    neck = PAFPN([256, 512, 1024, 2048], 256, num_outs=5)
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    expected = {}
    for i, c in enumerate([256, 512, 1024, 2048]):
        expected[f'lateral_convs.{i}.conv.weight'] = (256, c, 1, 1)
        expected[f'lateral_convs.{i}.conv.bias'] = (256,)
        expected[f'fpn_convs.{i}.conv.weight'] = (256, 256, 3, 3)
        expected[f'fpn_convs.{i}.conv.bias'] = (256,)
    for i in range(3):  # one per used level above start_level
        for name in ('downsample_convs', 'pafpn_convs'):
            expected[f'{name}.{i}.conv.weight'] = (256, 256, 3, 3)
            expected[f'{name}.{i}.conv.bias'] = (256,)
    assert shapes == expected
    assert all(m.conv.stride == (2, 2) for m in neck.downsample_convs)
    assert neck.init_cfg == dict(type='Xavier', layer='Conv2d', distribution='uniform')


def test_bottom_up_path_hand_computed():
    """Identity-like convs: the outputs are the FPN sums plus downsampled finer outputs."""
    neck = PAFPN([1, 1], 1, num_outs=2)
    convs = [*neck.lateral_convs, *neck.fpn_convs, *neck.pafpn_convs]
    for m in convs + list(neck.downsample_convs):
        torch.nn.init.zeros_(m.conv.weight)
        torch.nn.init.zeros_(m.conv.bias)
    for m in convs:  # centre tap 1: identity
        k = m.conv.kernel_size[0] // 2
        m.conv.weight.data[0, 0, k, k] = 1.0
    # stride-2 3x3 with only the centre tap: picks pixels (0, 0), (0, 2), (2, 0), (2, 2).
    neck.downsample_convs[0].conv.weight.data[0, 0, 1, 1] = 1.0
    fine = torch.arange(16.).view(1, 1, 4, 4)
    coarse = torch.tensor([[[[100., 200.], [300., 400.]]]])
    out_fine, out_coarse = neck([fine, coarse])
    top_down = fine + coarse.repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(out_fine, top_down)
    torch.testing.assert_close(out_coarse, coarse + top_down[:, :, ::2, ::2])


@pytest.mark.parametrize('kwargs,sizes', [
    (dict(num_outs=5), [32, 16, 8, 4, 2]),
    (dict(num_outs=5, add_extra_convs='on_output'), [32, 16, 8, 4, 2]),
    (dict(num_outs=6, start_level=1, add_extra_convs='on_input'), [16, 8, 4, 2, 1, 1]),
    (dict(num_outs=3, end_level=2), [32, 16, 8]),
])
def test_output_shapes(kwargs, sizes):
    neck = PAFPN([8, 16, 32, 64], 12, **kwargs)
    outs = neck(feats(batch=2))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 12, s, s) for s in sizes]


def test_on_output_reads_pafpn_output_and_shares_fpn_weights():
    inputs = feats()
    neck = PAFPN([8, 16, 32, 64], 12, num_outs=5, add_extra_convs='on_output').eval()
    outs = neck(inputs)
    torch.testing.assert_close(outs[4], neck.fpn_convs[4](outs[3]))
    # Without the bottom-up modules the same weights give FPN's outputs on the top-down part.
    fpn = FPN([8, 16, 32, 64], 12, num_outs=5, add_extra_convs='on_output').eval()
    fpn.load_state_dict(neck.state_dict(), strict=False)
    torch.testing.assert_close(fpn(inputs)[0], outs[0])  # the finest level is not re-aggregated


def test_registry_and_argument_errors():
    neck = MODELS.build(dict(type='PAFPN', in_channels=[8, 16], out_channels=4, num_outs=2))
    assert isinstance(neck, PAFPN)
    with pytest.raises(AssertionError, match=r'num_outs \(3\) must equal'):
        PAFPN([8, 16, 32], 4, num_outs=3, end_level=1)
    with pytest.raises(AssertionError, match='expects 2 input maps'):
        neck(feats((8,)))
