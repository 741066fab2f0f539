"""NASFPN: mmdetection's keys and shapes, output sizes, stage wiring and level checks."""
import pytest
import torch

from mmdet_lite.models.necks import NASFPN
from mmdet_lite.registry import MODELS

CELLS_WITH_CONV = ('gp_64_4', 'sum_44_4', 'sum_43_3', 'sum_34_4', 'sum_55_5', 'sum_77_7',
                   'gp_75_6')


def expected_shapes(in_channels, c, stacks, extra, norm):
    shapes = {}
    for i, ci in enumerate(in_channels):
        shapes[f'lateral_convs.{i}.conv.weight'] = (c, ci, 1, 1)
        if norm:
            for p in ('weight', 'bias', 'running_mean', 'running_var'):
                shapes[f'lateral_convs.{i}.bn.{p}'] = (c,)
            shapes[f'lateral_convs.{i}.bn.num_batches_tracked'] = ()
        else:
            shapes[f'lateral_convs.{i}.conv.bias'] = (c,)
    for i in range(extra):
        shapes[f'extra_downsamples.{i}.0.conv.weight'] = (c, c, 1, 1)
        shapes[f'extra_downsamples.{i}.0.conv.bias'] = (c,)
    for s in range(stacks):
        for name in CELLS_WITH_CONV:
            prefix = f'fpn_stages.{s}.{name}.out_conv'
            shapes[f'{prefix}.conv.weight'] = (c, c, 3, 3)
            shapes[f'{prefix}.conv.bias'] = (c,)  # explicit bias=True even with a norm
    return shapes


def test_state_dict_keys_and_shapes_retinanet_config():
    # configs/nas_fpn: in_channels=[256, 512, 1024, 2048], start_level=1, num_outs=5, 7 stacks
    neck = NASFPN([256, 512, 1024, 2048], 256, num_outs=5, stack_times=7, start_level=1)
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    assert shapes == expected_shapes([512, 1024, 2048], 256, 7, 2, norm=False)
    assert neck.init_cfg == dict(type='Caffe2Xavier', layer='Conv2d')


def test_state_dict_keys_with_norm():
    neck = NASFPN([8, 16, 32], 8, num_outs=5, stack_times=1, norm_cfg=dict(type='BN'))
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    expected = expected_shapes([8, 16, 32], 8, 1, 2, norm=True)
    expected['extra_downsamples.0.0.conv.weight'] = (8, 8, 1, 1)
    for i in range(2):
        del expected[f'extra_downsamples.{i}.0.conv.bias']
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            expected[f'extra_downsamples.{i}.0.bn.{p}'] = (8,)
        expected[f'extra_downsamples.{i}.0.bn.num_batches_tracked'] = ()
    for name in CELLS_WITH_CONV:
        for p in ('weight', 'bias', 'running_mean', 'running_var'):
            expected[f'fpn_stages.0.{name}.out_conv.bn.{p}'] = (8,)
        expected[f'fpn_stages.0.{name}.out_conv.bn.num_batches_tracked'] = ()
    assert shapes == expected


@pytest.mark.parametrize('size,sizes', [(64, [64, 32, 16, 8, 4]), (40, [40, 20, 10, 5, 2])])
def test_output_shapes(size, sizes):
    neck = NASFPN([8, 16, 32, 64], 12, num_outs=5, stack_times=2, start_level=1)
    inputs = [torch.rand(2, c, size * 2 // 2**i, size * 2 // 2**i)
              for i, c in enumerate([8, 16, 32, 64])]
    outs = neck(inputs)
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 12, s, s) for s in sizes]


def test_zero_stages_is_laterals_and_pooled_extras():
    neck = NASFPN([4, 8, 16], 4, num_outs=5, stack_times=0).eval()
    inputs = [torch.rand(1, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate([4, 8, 16])]
    p3, p4, p5, p6, p7 = neck(inputs)
    torch.testing.assert_close(p5, neck.lateral_convs[2](inputs[2]))
    p6_ref = torch.nn.functional.max_pool2d(neck.extra_downsamples[0][0](p5), 2, 2)
    torch.testing.assert_close(p6, p6_ref)
    assert p7.shape[-2:] == (1, 1)


def test_registry_and_errors():
    neck = MODELS.build(dict(type='NASFPN', in_channels=[4, 8, 16], out_channels=4,
                             num_outs=5, stack_times=1))
    assert isinstance(neck, NASFPN) and len(neck.fpn_stages) == 1
    with pytest.raises(AssertionError, match=r'num_outs \(2\) must be at least'):
        NASFPN([4, 8, 16], 4, num_outs=2, stack_times=1)
    with pytest.raises(AssertionError, match='needs 5 levels'):
        NASFPN([4, 8, 16], 4, num_outs=4, stack_times=1)(
            [torch.rand(1, c, 8 // 2**i, 8 // 2**i) for i, c in enumerate([4, 8, 16])])
