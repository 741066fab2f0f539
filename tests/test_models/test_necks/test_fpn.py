"""FPN: output shapes for every extra-level mode, level ranges, norms, keys and init."""
import math

import pytest
import torch

from mmdet_lite.models.necks import FPN
from mmdet_lite.registry import MODELS

IN_CHANNELS = [8, 16, 32, 64]
OUT = 12


def pyramid(h: int, w: int, channels=IN_CHANNELS, batch: int = 1):
    """Maps of a strided backbone (strides 4..32) for an h x w image, sizes rounded up."""
    feats = []
    for i, c in enumerate(channels):
        stride = 4 * 2**i
        feats.append(torch.rand(batch, c, math.ceil(h / stride), math.ceil(w / stride)))
    return feats


def sizes(outs):
    return [tuple(o.shape[2:]) for o in outs]


def test_default_max_pool_extra_levels():
    neck = FPN(IN_CHANNELS, OUT, num_outs=5)
    outs = neck(pyramid(64, 64, batch=2))
    assert len(outs) == 5
    assert all(o.shape[:2] == (2, OUT) for o in outs)
    assert sizes(outs) == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    # Max-pool with kernel 1 stride 2 is plain subsampling of the last output.
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])
    assert len(neck.fpn_convs) == 4  # no extra conv parameters


@pytest.mark.parametrize('mode', [True, 'on_input', 'on_lateral', 'on_output'])
@pytest.mark.parametrize('relu_before', [False, True])
def test_extra_conv_modes(mode, relu_before):
    neck = FPN(IN_CHANNELS, OUT, num_outs=6, add_extra_convs=mode,
               relu_before_extra_convs=relu_before)
    outs = neck(pyramid(64, 64))
    assert sizes(outs) == [(16, 16), (8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert all(o.shape[1] == OUT for o in outs)
    assert len(neck.fpn_convs) == 6
    first_extra_in = IN_CHANNELS[-1] if mode in (True, 'on_input') else OUT
    assert neck.fpn_convs[4].conv.in_channels == first_extra_in
    assert neck.fpn_convs[4].conv.stride == (2, 2)
    assert neck.fpn_convs[5].conv.in_channels == OUT


def test_true_means_on_input():
    assert FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs=True).add_extra_convs == 'on_input'


def test_extra_conv_source_is_used():
    """Each mode feeds its own tensor to the first extra conv; check by recomputing it."""
    inputs = pyramid(64, 64)
    for mode in ('on_input', 'on_lateral', 'on_output'):
        neck = FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs=mode).eval()
        outs = neck(inputs)
        lateral = neck.lateral_convs[3](inputs[3])  # coarsest lateral gets no top-down add
        source = {'on_input': inputs[3], 'on_lateral': lateral, 'on_output': outs[3]}[mode]
        torch.testing.assert_close(outs[4], neck.fpn_convs[4](source))


def test_relu_before_extra_convs_applies_from_second_extra_level():
    inputs = pyramid(128, 128)
    neck = FPN(IN_CHANNELS, OUT, num_outs=6, add_extra_convs='on_output',
               relu_before_extra_convs=True)
    outs = neck(inputs)
    torch.testing.assert_close(outs[5], neck.fpn_convs[5](torch.relu(outs[4])))
    torch.testing.assert_close(outs[4], neck.fpn_convs[4](outs[3]))


def test_top_down_path_hand_computed():
    """Identity laterals/outputs turn the FPN into sums of upsampled coarser inputs."""
    neck = FPN([1, 1], 1, num_outs=2)
    for conv in list(neck.lateral_convs) + list(neck.fpn_convs):
        torch.nn.init.zeros_(conv.conv.weight)
        torch.nn.init.zeros_(conv.conv.bias)
        k = conv.conv.kernel_size[0] // 2
        conv.conv.weight.data[0, 0, k, k] = 1.0
    fine = torch.zeros(1, 1, 4, 4)
    coarse = torch.tensor([[[[1., 2.], [3., 4.]]]])
    outs = neck([fine, coarse])
    expected = torch.tensor([[1., 1., 2., 2.], [1., 1., 2., 2.],
                             [3., 3., 4., 4.], [3., 3., 4., 4.]])
    torch.testing.assert_close(outs[0][0, 0], expected)
    torch.testing.assert_close(outs[1], coarse)


@pytest.mark.parametrize('add_extra_convs', [False, 'on_input'])
def test_odd_input_sizes(add_extra_convs):
    # A 257x385 image through strides 4..32 gives 65x97, 33x49, 17x25, 9x13 maps.
    inputs = pyramid(257, 385)
    assert sizes(inputs) == [(65, 97), (33, 49), (17, 25), (9, 13)]
    neck = FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs=add_extra_convs)
    outs = neck(inputs)
    assert sizes(outs) == [(65, 97), (33, 49), (17, 25), (9, 13), (5, 7)]


def test_upsample_cfg_scale_factor():
    neck = FPN(IN_CHANNELS, OUT, num_outs=4, upsample_cfg=dict(scale_factor=2, mode='nearest'))
    assert sizes(neck(pyramid(64, 64))) == [(16, 16), (8, 8), (4, 4), (2, 2)]


@pytest.mark.parametrize('start_level,end_level,num_outs,expected', [
    (1, -1, 3, [(8, 8), (4, 4), (2, 2)]),
    (1, -1, 5, [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]),
    (0, 2, 3, [(16, 16), (8, 8), (4, 4)]),
    (1, 2, 2, [(8, 8), (4, 4)]),
    (0, 3, 4, [(16, 16), (8, 8), (4, 4), (2, 2)]),  # end_level = last input, like -1
])
def test_start_and_end_level(start_level, end_level, num_outs, expected):
    neck = FPN(IN_CHANNELS, OUT, num_outs=num_outs, start_level=start_level,
               end_level=end_level)
    assert sizes(neck(pyramid(64, 64))) == expected
    last = len(IN_CHANNELS) if end_level in (-1, 3) else end_level + 1
    assert neck.backbone_end_level == last
    assert [m.conv.in_channels for m in neck.lateral_convs] == IN_CHANNELS[start_level:last]


def test_start_level_with_extra_convs_on_input():
    neck = FPN(IN_CHANNELS, OUT, num_outs=5, start_level=1, add_extra_convs='on_input')
    assert sizes(neck(pyramid(64, 64))) == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert neck.fpn_convs[3].conv.in_channels == IN_CHANNELS[-1]


def test_norm_cfg_and_no_norm_on_lateral():
    bn = dict(type='BN', requires_grad=True)
    neck = FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs='on_output', norm_cfg=bn)
    assert all(m.with_norm and m.conv.bias is None for m in neck.lateral_convs)
    assert all(m.with_norm for m in neck.fpn_convs)
    assert sizes(neck(pyramid(64, 64, batch=2)))[-1] == (1, 1)

    neck = FPN(IN_CHANNELS, OUT, num_outs=5, norm_cfg=bn, no_norm_on_lateral=True)
    assert not any(m.with_norm for m in neck.lateral_convs)
    assert all(m.conv.bias is not None for m in neck.lateral_convs)
    assert all(m.with_norm for m in neck.fpn_convs)
    assert 'lateral_convs.0.bn.weight' not in neck.state_dict()
    assert 'fpn_convs.0.bn.running_mean' in neck.state_dict()


def test_state_dict_keys_match_mmdet():
    neck = FPN([256, 512, 1024, 2048], 256, num_outs=5, add_extra_convs='on_input')
    keys = set(neck.state_dict())
    expected = {f'lateral_convs.{i}.conv.{p}' for i in range(4) for p in ('weight', 'bias')}
    expected |= {f'fpn_convs.{i}.conv.{p}' for i in range(5) for p in ('weight', 'bias')}
    assert keys == expected
    assert neck.state_dict()['fpn_convs.4.conv.weight'].shape == (256, 2048, 3, 3)
    assert neck.state_dict()['lateral_convs.3.conv.weight'].shape == (256, 2048, 1, 1)


def test_xavier_init_applied():
    neck = FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs='on_input')
    convs = list(neck.lateral_convs) + list(neck.fpn_convs)
    for m in convs:  # values no initializer produces, so a skipped conv shows up
        torch.nn.init.constant_(m.conv.weight, 10.0)
        torch.nn.init.constant_(m.conv.bias, 1.0)
    neck.init_weights()
    for m in convs:
        w = m.conv.weight
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert w.abs().max() <= bound + 1e-6
        assert torch.count_nonzero(m.conv.bias) == 0


def test_build_from_registry():
    neck = MODELS.build(dict(type='FPN', in_channels=IN_CHANNELS, out_channels=OUT,
                             num_outs=5, add_extra_convs='on_output'))
    direct = FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs='on_output')
    assert type(neck) is FPN and neck.add_extra_convs == 'on_output'
    # The config's arguments all reached the module: same parameters, same outputs.
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(neck) == shapes(direct)
    assert 'fpn_convs.4.conv.weight' in shapes(neck)  # the extra conv level
    direct.load_state_dict(neck.state_dict())
    feats = pyramid(64, 64)
    for ours, theirs in zip(neck(feats), direct(feats)):
        torch.testing.assert_close(ours, theirs)


def test_bad_arguments_are_assertion_errors():
    """mmdetection asserts these; ours name the argument and are AssertionErrors too."""
    with pytest.raises(AssertionError, match=r"add_extra_convs.*'on_input', 'on_lateral', "
                                             r"'on_output'.*'on_top'"):
        FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs='on_top')
    with pytest.raises(AssertionError, match='add_extra_convs must be a bool or a str'):
        FPN(IN_CHANNELS, OUT, num_outs=5, add_extra_convs=1)
    with pytest.raises(AssertionError, match=r'num_outs \(3\) must be at least .*\(4 '):
        FPN(IN_CHANNELS, OUT, num_outs=3)
    with pytest.raises(AssertionError, match=r'num_outs \(4\) must equal .*\(3, '):
        FPN(IN_CHANNELS, OUT, num_outs=4, end_level=2)
    with pytest.raises(AssertionError, match=r'end_level must be -1 or less than .*\(4\)'):
        FPN(IN_CHANNELS, OUT, num_outs=4, end_level=7)
    with pytest.raises(AssertionError, match='in_channels must be a list'):
        FPN(256, OUT, num_outs=4)
    # Still ValueError/TypeError for callers that catch those.
    with pytest.raises(ValueError):
        FPN(IN_CHANNELS, OUT, num_outs=3)
    with pytest.raises(TypeError):
        FPN(256, OUT, num_outs=4)


@pytest.mark.parametrize('start_level,end_level,num_outs', [
    (0, 0, 1), (0, 1, 2), (1, 1, 1), (2, 2, 1), (1, 2, 2), (0, 2, 3),
])
def test_end_level_with_explicit_num_outs(start_level, end_level, num_outs):
    """Every range mmdetection accepts: num_outs == end_level - start_level + 1."""
    neck = FPN(IN_CHANNELS, OUT, num_outs=num_outs, start_level=start_level,
               end_level=end_level)
    assert neck.backbone_end_level == end_level + 1
    outs = neck(pyramid(64, 64))
    assert len(outs) == num_outs
    assert sizes(outs) == [(16 // 2**i, 16 // 2**i) for i in range(start_level, end_level + 1)]
    # A truncated pyramid gets no extra convs even when asked for them.
    neck = FPN(IN_CHANNELS, OUT, num_outs=num_outs, start_level=start_level,
               end_level=end_level, add_extra_convs='on_input')
    assert len(neck.fpn_convs) == num_outs


def test_end_level_last_input_allows_extra_levels():
    neck = FPN(IN_CHANNELS, OUT, num_outs=6, start_level=1, end_level=3,
               add_extra_convs='on_output')
    assert neck.backbone_end_level == 4
    assert sizes(neck(pyramid(64, 64))) == [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1), (1, 1)]


def test_wrong_number_of_inputs():
    neck = FPN(IN_CHANNELS, OUT, num_outs=5)
    with pytest.raises(AssertionError, match=r'expects 4 input maps .* got 3'):
        neck(pyramid(64, 64)[:3])
