"""FPN_CARAFE: mmdetection's keys and shapes for each upsampler, output sizes, wiring, init."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict

from mmdet_lite.models.layers import CARAFEPack
from mmdet_lite.models.necks import FPN_CARAFE

IN = [8, 16, 32, 64]


def feats(size=32, batch=1, extra_w=0):
    return [torch.rand(batch, c, math.ceil(size / 2**i), math.ceil((size + extra_w) / 2**i))
            for i, c in enumerate(IN)]


def conv_shapes(prefix, c_out, c_in, k):
    return {f'{prefix}.conv.weight': (c_out, c_in, k, k), f'{prefix}.conv.bias': (c_out,)}


def test_state_dict_keys_and_shapes_default_carafe():
    # configs/carafe: in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5
    c = 16
    neck = FPN_CARAFE(IN, c, num_outs=5)
    expected = {}
    for i, ci in enumerate(IN):
        expected.update(conv_shapes(f'lateral_convs.{i}', c, ci, 1))
        expected.update(conv_shapes(f'fpn_convs.{i}', c, c, 3))
    expected.update(conv_shapes('lateral_convs.4', c, IN[-1], 3))  # stride-2 extra lateral
    expected.update(conv_shapes('fpn_convs.4', c, c, 3))
    for i in range(4):  # 3 within the pyramid + 1 for the extra level
        expected[f'upsample_modules.{i}.channel_compressor.weight'] = (64, c, 1, 1)
        expected[f'upsample_modules.{i}.channel_compressor.bias'] = (64,)
        expected[f'upsample_modules.{i}.content_encoder.weight'] = (5 * 5 * 4, 64, 3, 3)
        expected[f'upsample_modules.{i}.content_encoder.bias'] = (100,)
    assert {k: tuple(v.shape) for k, v in neck.state_dict().items()} == expected
    assert all(isinstance(m, CARAFEPack) for m in neck.upsample_modules)
    assert neck.lateral_convs[4].conv.stride == (2, 2)


def test_norm_cfg_drops_biases_and_order():
    neck = FPN_CARAFE(IN, 8, num_outs=4, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'),
                      order=('act', 'conv', 'norm'), upsample_cfg=dict(type='nearest'))
    keys = set(neck.state_dict())
    assert not any(k.endswith('conv.bias') for k in keys)
    assert {'lateral_convs.0.bn.weight', 'fpn_convs.3.bn.running_var'} <= keys
    assert not any(k.startswith('upsample_modules') for k in keys)  # nn.Upsample: no params
    assert neck.lateral_convs[0].order == ('act', 'conv', 'norm')


@pytest.mark.parametrize('upsample_cfg,extra_keys', [
    (ConfigDict(type='deconv', upsample_kernel=4), {'upsample_modules.0.weight': (8, 8, 4, 4),
                                                    'upsample_modules.0.bias': (8,)}),
    (ConfigDict(type='pixel_shuffle', upsample_kernel=3),
     {'upsample_modules.0.upsample_conv.weight': (32, 8, 3, 3),
      'upsample_modules.0.upsample_conv.bias': (32,)}),
    (dict(type='bilinear'), {}),
])
def test_other_upsamplers(upsample_cfg, extra_keys):
    neck = FPN_CARAFE(IN, 8, num_outs=5, upsample_cfg=upsample_cfg)
    shapes = {k: tuple(v.shape) for k, v in neck.state_dict().items()}
    for k, v in extra_keys.items():
        assert shapes[k] == v
    assert len(neck.upsample_modules) == 4
    outs = neck(feats(32, batch=2))
    assert [tuple(o.shape) for o in outs] == [(2, 8, s, s) for s in (32, 16, 8, 4, 2)]


@pytest.mark.parametrize('kwargs,sizes', [
    (dict(num_outs=5), [(33, 36), (17, 18), (9, 9), (5, 5), (3, 3)]),
    (dict(num_outs=6, start_level=1), [(17, 18), (9, 9), (5, 5), (3, 3), (2, 2), (1, 1)]),
    (dict(num_outs=2, end_level=1), [(33, 36), (17, 18)]),
])
def test_output_shapes_odd_sizes_are_cropped(kwargs, sizes):
    neck = FPN_CARAFE(IN, 8, upsample_cfg=dict(type='carafe', compressed_channels=4),
                      **kwargs)
    outs = neck(feats(33, extra_w=3))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape[2:]) for o in outs] == sizes


def test_top_down_wiring_with_nearest_upsampler():
    neck = FPN_CARAFE(IN, 8, num_outs=5, upsample_cfg=dict(type='nearest')).eval()
    inputs = feats(32)
    outs = neck(inputs)
    lat = [conv(x) for conv, x in zip(neck.lateral_convs, inputs)]
    lat.append(neck.lateral_convs[4](inputs[3]))  # first extra lateral reads the last input
    for i in range(4, 0, -1):
        lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], scale_factor=2, mode='nearest')
    for out, conv, x in zip(outs, neck.fpn_convs, lat):
        torch.testing.assert_close(out, conv(x))


def test_init_weights():
    neck = FPN_CARAFE(IN, 8, num_outs=5)
    for p in neck.parameters():
        torch.nn.init.constant_(p, 3.0)
    neck.init_weights()
    for m in neck.lateral_convs:
        w = m.conv.weight
        rf = w[0, 0].numel()
        assert w.abs().max() <= math.sqrt(6 / ((w.shape[0] + w.shape[1]) * rf)) + 1e-6
        assert torch.count_nonzero(m.conv.bias) == 0
    for m in neck.upsample_modules:  # CARAFEPack's own init comes last
        assert m.content_encoder.weight.std() < 0.01


def test_argument_errors():
    with pytest.raises(AssertionError, match='init_cfg must be None'):
        FPN_CARAFE(IN, 8, num_outs=4, init_cfg=dict(type='Xavier'))
    with pytest.raises(AssertionError, match='order must be one of'):
        FPN_CARAFE(IN, 8, num_outs=4, order=('norm', 'conv', 'act'))
    with pytest.raises(AssertionError, match='upsample_cfg type must be one of'):
        FPN_CARAFE(IN, 8, num_outs=4, upsample_cfg=dict(type='bicubic'))
    with pytest.raises(AssertionError, match='needs a positive int upsample_kernel'):
        FPN_CARAFE(IN, 8, num_outs=4, upsample_cfg=dict(type='deconv'))
    with pytest.raises(AssertionError, match=r'num_outs \(5\) must equal'):
        FPN_CARAFE(IN, 8, num_outs=5, end_level=2)
