"""NASFCOS_FPN: mmdetection's keys and shapes, output sizes, output wiring, init."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.necks import NASFCOS_FPN

IN = [8, 16, 32, 64]
BOTH_INPUT_CONVS = ('c22_1', 'c22_2', 'c42', 'c36', 'c61')
FIRST_INPUT_CONV_ONLY = ('c32', 'c02')


def bn(prefix, c):
    shapes = {f'{prefix}.{p}': (c,) for p in ('weight', 'bias', 'running_mean', 'running_var')}
    shapes[f'{prefix}.num_batches_tracked'] = ()
    return shapes


def test_state_dict_keys_and_shapes():
    # configs/nas_fcos: in_channels=[256, 512, 1024, 2048], start_level=1, num_outs=5
    c = 16
    neck = NASFCOS_FPN(IN, c, num_outs=5, start_level=1)
    expected = {}
    for i, ci in enumerate(IN[1:]):
        expected[f'adapt_convs.{i}.conv.weight'] = (c, ci, 1, 1)  # bias=False
        expected.update(bn(f'adapt_convs.{i}.bn', c))
    for name in BOTH_INPUT_CONVS + FIRST_INPUT_CONV_ONLY:
        # grouped 1x1 conv after BN + ReLU on the 2c-channel concatenation
        expected[f'fpn.{name}.out_conv.conv.weight'] = (c, 2, 1, 1)
        expected.update(bn(f'fpn.{name}.out_conv.bn', 2 * c))
        inputs = (1, 2) if name in BOTH_INPUT_CONVS else (1,)
        for j in inputs:
            expected[f'fpn.{name}.input{j}_conv.conv.weight'] = (c, c, 3, 3)
            expected[f'fpn.{name}.input{j}_conv.conv.bias'] = (c,)
    for i in range(2):
        expected[f'extra_downsamples.{i}.conv.weight'] = (c, c, 3, 3)
        expected[f'extra_downsamples.{i}.conv.bias'] = (c,)
    assert {k: tuple(v.shape) for k, v in neck.state_dict().items()} == expected
    assert list(neck.fpn) == ['c22_1', 'c22_2', 'c32', 'c02', 'c42', 'c36', 'c61']
    assert neck.extra_downsamples[0].order == ('act', 'norm', 'conv')
    assert not neck.extra_downsamples[0].with_activation
    assert neck.extra_downsamples[1].with_activation


@pytest.mark.parametrize('size', [64, 50])
def test_output_shapes_follow_inputs(size):
    neck = NASFCOS_FPN(IN, 16, num_outs=5)
    inputs = [torch.rand(2, c, math.ceil(size / 2**i), math.ceil(size / 2**i))
              for i, c in enumerate(IN)]
    outs = neck(inputs)
    assert isinstance(outs, tuple) and len(outs) == 5
    expected = [tuple(x.shape[2:]) for x in inputs[1:]]
    expected += [(math.ceil(expected[-1][0] / 2),) * 2]
    expected += [(math.ceil(expected[-1][0] / 2),) * 2]
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert all(o.shape[:2] == (2, 16) for o in outs)


def test_output_wiring_by_recomputation():
    """P3 = feature 9 + feature 5 (bilinear), resized to input 1; extras chain on P5."""
    neck = NASFCOS_FPN(IN, 8, num_outs=5).eval()
    inputs = [torch.rand(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(IN)]
    outs = neck(inputs)
    feats = [conv(inputs[i + 1]) for i, conv in enumerate(neck.adapt_convs)]
    for name, cell in neck.fpn.items():
        feats.append(cell(feats[int(name[1])], feats[int(name[2])]))
    p3 = feats[9] + F.interpolate(feats[5], size=feats[9].shape[2:], mode='bilinear')
    p3 = F.interpolate(p3, size=inputs[1].shape[2:], mode='bilinear')
    torch.testing.assert_close(outs[0], p3)
    torch.testing.assert_close(outs[3], neck.extra_downsamples[0](outs[2]))
    torch.testing.assert_close(outs[4], neck.extra_downsamples[1](outs[3]))


def test_init_weights_caffe2_xavier_on_adapt_and_extra_convs():
    neck = NASFCOS_FPN(IN, 8, num_outs=5)
    convs = [m.conv for m in neck.adapt_convs] + [m.conv for m in neck.extra_downsamples]
    for conv in convs:
        torch.nn.init.constant_(conv.weight, 10.0)
    neck.init_weights()
    for conv in convs:
        fan_in = conv.weight[0].numel()
        assert conv.weight.abs().max() <= math.sqrt(3 / fan_in) + 1e-6
        assert conv.bias is None or torch.count_nonzero(conv.bias) == 0


def test_init_cfg_must_be_none_and_level_checks():
    with pytest.raises(AssertionError, match='init_cfg must be None'):
        NASFCOS_FPN(IN, 8, num_outs=5, init_cfg=dict(type='Xavier'))
    with pytest.raises(AssertionError, match=r'num_outs \(2\) must be at least'):
        NASFCOS_FPN(IN, 8, num_outs=2)
