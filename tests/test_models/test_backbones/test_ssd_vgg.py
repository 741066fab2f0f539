"""SSDVGG: mmdetection's ``features.N`` layout, a functional reference forward, output sizes
with ceil-mode pooling, init_cfg handling and the deprecated arguments."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers_ssd_keys import ssd_vgg_conv_indices, ssd_vgg_keys
from helpers_state_dict import shapes_of
from mmcv.cnn import VGG

from mmdet_lite.models.backbones import SSDVGG
from mmdet_lite.models.backbones.ssd_vgg import L2Norm as DeprecatedL2Norm
from mmdet_lite.models.necks.ssd_neck import L2Norm
from mmdet_lite.registry import MODELS


@pytest.fixture(scope='module')
def vgg16():
    torch.manual_seed(0)
    model = SSDVGG(depth=16).eval()
    model.init_weights()
    return model


def test_state_dict_keys_and_shapes_equal_mmdetection(vgg16):
    # conv indices of VGG-16 written out: 2, 2, 3, 3, 3 convs, pools at 4, 9, 16, 23,
    # no last pool, pool5 at 30, fc6 at 31, fc7 at 33.
    assert sorted(ssd_vgg_conv_indices(16)) == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26,
                                                 28, 31, 33]
    expected = ssd_vgg_keys('', 16)
    assert len(expected) == 30  # 13 convs + fc6 + fc7, weight and bias each
    assert shapes_of(vgg16) == expected
    assert expected['features.31.weight'] == (1024, 512, 3, 3)
    assert vgg16.features[31].dilation == (6, 6) and vgg16.features[31].padding == (6, 6)
    assert len(vgg16.features) == 35


@pytest.mark.parametrize('depth', [11, 13, 19])
def test_other_depths_keep_the_layout(depth):
    model = SSDVGG(depth=depth, out_feature_indices=())
    assert shapes_of(model) == ssd_vgg_keys('', depth)


def _reference_forward(model, x):
    """SSD's VGG-16 written with torch.nn.functional on the model's weights."""
    feats = model.features
    outs = []
    index = 0
    for stage, num_convs in enumerate((2, 2, 3, 3, 3)):
        for _ in range(num_convs):
            x = F.relu(F.conv2d(x, feats[index].weight, feats[index].bias, padding=1))
            if index + 1 == 22:
                outs.append(x)  # relu4_3
            index += 2
        if stage < 4:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            index += 1
    x = F.max_pool2d(x, 3, 1, padding=1)
    x = F.relu(F.conv2d(x, feats[31].weight, feats[31].bias, padding=6, dilation=6))
    x = F.relu(F.conv2d(x, feats[33].weight, feats[33].bias))
    return outs + [x]


def test_forward_matches_a_functional_reference_and_uses_ceil_mode(vgg16):
    x = torch.rand(1, 3, 100, 100)
    with torch.no_grad():
        outs = vgg16(x)
        expected = _reference_forward(vgg16, x)
    assert isinstance(outs, tuple) and len(outs) == 2
    # 100 -> 50 -> 25 -> 13 (ceil) for conv4_3, -> 7 (ceil) for fc7
    assert tuple(outs[0].shape) == (1, 512, 13, 13)
    assert tuple(outs[1].shape) == (1, 1024, 7, 7)
    for out, ref in zip(outs, expected):
        torch.testing.assert_close(out, ref)


@pytest.mark.slow
def test_ssd300_input_gives_38_and_19(vgg16):
    with torch.no_grad():
        outs = vgg16(torch.rand(1, 3, 300, 300))
    assert [tuple(o.shape) for o in outs] == [(1, 512, 38, 38), (1, 1024, 19, 19)]


def test_one_output_index_returns_a_bare_tensor():
    # VGG-11: 8 convs + ReLUs, 4 stage pools (the last dropped), then the 5 SSD layers
    model = SSDVGG(depth=11, out_feature_indices=(24, ))
    assert len(model.features) == 8 * 2 + 4 + 5
    out = model(torch.rand(1, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape[1] == 1024


def test_train_and_eval_return_the_module():
    model = SSDVGG(depth=11)
    assert model.eval() is model and not model.training
    assert model.train() is model and model.features[0].training


def test_registered_and_builds_from_mmdetection_config():
    cfg = dict(type='SSDVGG', depth=16, with_last_pool=False, ceil_mode=True,
               out_indices=(3, 4), out_feature_indices=(22, 34))
    model = MODELS.build(cfg)
    assert isinstance(model, SSDVGG) and isinstance(model, VGG)  # mmcv's VGG, as mmdetection
    assert model.out_feature_indices == (22, 34)
    # ceil_mode reaches the stage pools; the appended pool5 is 3x3 / 1 with padding 1
    assert model.features[16].ceil_mode and model.features[16].kernel_size == 2
    assert (model.features[30].kernel_size, model.features[30].stride) == (3, 1)


def test_default_init_cfg_and_init_weights_use_mmengine_init():
    model = SSDVGG(depth=11)
    assert model.init_cfg == [dict(type='Kaiming', layer='Conv2d'),
                              dict(type='Constant', val=1, layer='BatchNorm2d'),
                              dict(type='Normal', std=0.01, layer='Linear')]
    # init_weights follows init_cfg (mmengine), not mmcv VGG's own init_weights
    model = SSDVGG(depth=11, init_cfg=dict(type='Constant', layer='Conv2d', val=0.5, bias=0.25))
    model.init_weights()
    assert torch.all(model.features[0].weight == 0.5)
    assert torch.all(model.features[-2].bias == 0.25)


def test_pretrained_is_deprecated_and_exclusive_with_init_cfg():
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = SSDVGG(depth=11, pretrained='vgg.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='vgg.pth')
    with pytest.raises(AssertionError, match='init_cfg and pretrained'):
        SSDVGG(depth=11, pretrained='vgg.pth', init_cfg=dict(type='Pretrained', checkpoint='x'))
    with pytest.raises(TypeError, match='pretrained must be a str or None'):
        SSDVGG(depth=11, pretrained=1)
    with pytest.raises(KeyError):
        SSDVGG(depth=15)


def test_input_size_and_l2_norm_scale_only_warn():
    with pytest.warns(UserWarning) as record:
        model = SSDVGG(depth=11, input_size=300, l2_norm_scale=20.)
    messages = ' '.join(str(w.message) for w in record)
    assert 'input_size is deprecated' in messages and 'moved to SSDNeck' in messages
    assert not hasattr(model, 'l2_norm')


def test_deprecated_l2norm_location_warns_and_behaves_like_the_neck_one():
    with pytest.warns(UserWarning, match='L2Norm in ssd_vgg.py is deprecated'):
        norm = DeprecatedL2Norm(n_dims=2, scale=10.)
    assert isinstance(norm, L2Norm)
    x = torch.tensor([[[[3.]], [[4.]]]])
    torch.testing.assert_close(norm(x), torch.tensor([[[[6.]], [[8.]]]]))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        L2Norm(2)  # the neck's own class does not warn
