"""MobileNetV2 (+ InvertedResidual, make_divisible): mmdetection's keys and widths,
out_indices / widen_factor / frozen_stages / norm_eval behaviour, a functional reference of
the block, argument errors."""
import pytest
import torch
import torch.nn.functional as F
from helpers_ssd_keys import inverted_residual_keys, mobilenet_v2_keys
from helpers_state_dict import shapes_of
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import MobileNetV2
from mmdet_lite.models.layers import InvertedResidual
from mmdet_lite.models.utils import make_divisible
from mmdet_lite.registry import MODELS

# Hand-rounded widths (stem, layer1..7, conv2): make_divisible(c * w, 8) and conv2 1280
# unless w > 1. w=0.25: 16*0.25=4 -> 8 (min), 24*0.25=6 -> 8, 64*0.25=16, 96*0.25=24, ...
# w=1.5: 24*1.5=36 -> 40 (half up), 96*1.5=144, conv2 int(1280*1.5)=1920.
WIDTHS = {
    1.0: (32, (16, 24, 32, 64, 96, 160, 320), 1280),
    0.25: (8, (8, 8, 8, 16, 24, 40, 80), 1280),
    1.5: (48, (24, 40, 48, 96, 144, 240, 480), 1920),
}


# ----------------------------------------------------------------------------- make_divisible
@pytest.mark.parametrize('value, divisor, kwargs, expected', [
    (24, 8, {}, 24),  # already a multiple
    (36, 8, {}, 40),  # 36 + 4 = 40: rounds half up
    (35.5, 8, {}, 32),  # 35.5 + 4 -> 32, and 32 >= 0.9 * 35.5 = 31.95
    (35.9, 8, {}, 40),  # 35.9 + 4 -> 32, but 32 < 0.9 * 35.9 = 32.31: one more divisor
    (4, 8, {}, 8),  # never below min_value (= divisor)
    (3, 8, dict(min_value=16), 16),
    (10, 8, {}, 16),  # 10 rounds to 8 < 0.9 * 10: one more divisor
    (10, 8, dict(min_ratio=0.5), 8),
])
def test_make_divisible_by_hand(value, divisor, kwargs, expected):
    assert make_divisible(value, divisor, **kwargs) == expected


# ----------------------------------------------------------------------------- InvertedResidual
def _bn_eval(x, convmodule):
    bn = convmodule.bn
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.,
                        bn.eps)


def _reference_block(block, x, stride):
    """expand 1x1 -> BN -> ReLU6 -> depthwise 3x3 -> BN -> ReLU6 -> 1x1 -> BN (-> + x)."""
    out = x
    if block.with_expand_conv:
        out = F.relu6(_bn_eval(F.conv2d(out, block.expand_conv.conv.weight),
                               block.expand_conv))
    dw = block.depthwise_conv
    out = F.relu6(_bn_eval(F.conv2d(out, dw.conv.weight, stride=stride, padding=1,
                                    groups=out.shape[1]), dw))
    out = _bn_eval(F.conv2d(out, block.linear_conv.conv.weight), block.linear_conv)
    return x + out if block.with_res_shortcut else out


def _randomise_bns(module):
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


@pytest.mark.parametrize('in_c, out_c, mid_c, stride, expand, shortcut', [
    (8, 8, 48, 1, True, True),
    (8, 16, 48, 1, True, False),  # channels change: no shortcut
    (8, 8, 48, 2, True, False),  # stride 2: no shortcut
    (8, 4, 8, 1, False, False),  # no expand conv (MobileNetV2's layer1)
])
def test_inverted_residual_matches_functional_reference(in_c, out_c, mid_c, stride, expand,
                                                        shortcut):
    torch.manual_seed(0)
    block = InvertedResidual(in_c, out_c, mid_c, stride=stride, with_expand_conv=expand,
                             act_cfg=dict(type='ReLU6'))
    _randomise_bns(block)
    block.eval()
    assert block.with_res_shortcut is shortcut
    expected_keys = {k[2:]: v for k, v in
                     inverted_residual_keys('x', in_c, out_c, mid_c, expand).items()}
    assert shapes_of(block) == expected_keys
    x = torch.randn(2, in_c, 9, 9)
    with torch.no_grad():
        out = block(x)
    torch.testing.assert_close(out, _reference_block(block, x, stride))
    assert tuple(out.shape) == (2, out_c, 9 // stride + 9 % stride, 9 // stride + 9 % stride)


def test_inverted_residual_se_and_checkpoint():
    torch.manual_seed(0)
    block = InvertedResidual(8, 8, 16, se_cfg=dict(channels=16, ratio=4))
    assert 'se.conv1.conv.weight' in block.state_dict()
    assert block.state_dict()['se.conv1.conv.weight'].shape == (4, 16, 1, 1)
    cp_block = InvertedResidual(8, 8, 16, se_cfg=dict(channels=16, ratio=4), with_cp=True)
    cp_block.load_state_dict(block.state_dict())
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    x_cp = x.detach().clone().requires_grad_()
    out, out_cp = block(x), cp_block(x_cp)
    torch.testing.assert_close(out, out_cp)
    out.sum().backward()
    out_cp.sum().backward()
    torch.testing.assert_close(x.grad, x_cp.grad)


def test_inverted_residual_argument_errors():
    with pytest.raises(AssertionError, match='stride must be 1 or 2'):
        InvertedResidual(8, 8, 16, stride=3)
    with pytest.raises(AssertionError, match='mid_channels == in_channels'):
        InvertedResidual(8, 8, 16, with_expand_conv=False)
    with pytest.raises(AssertionError, match='se_cfg'):
        InvertedResidual(8, 8, 16, se_cfg=[16])


# ----------------------------------------------------------------------------- MobileNetV2
@pytest.mark.parametrize('widen_factor', [1.0, 0.25, 1.5])
def test_state_dict_keys_and_shapes_equal_mmdetection(widen_factor):
    model = MobileNetV2(widen_factor=widen_factor)
    expected = {k[len('backbone.'):]: v
                for k, v in mobilenet_v2_keys('backbone', WIDTHS[widen_factor]).items()}
    assert shapes_of(model) == expected
    assert model.layers == [f'layer{i}' for i in range(1, 8)] + ['conv2']
    assert model.out_channel == WIDTHS[widen_factor][2]


def test_320_input_shape_trace_of_every_layer():
    model = MobileNetV2(out_indices=tuple(range(8))).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 320, 320))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (16, 160, 160), (24, 80, 80), (32, 40, 40), (64, 20, 20), (96, 20, 20),
        (160, 10, 10), (320, 10, 10), (1280, 10, 10)]


def test_ssdlite_out_indices_and_widen_factor():
    # SSDLite takes layer5 (index 4, stride 16) and conv2 (index 7, stride 32)
    model = MobileNetV2(out_indices=(4, 7), widen_factor=0.25).eval()
    outs = model(torch.rand(2, 3, 64, 64))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 24, 4, 4), (2, 1280, 2, 2)]
    model = MobileNetV2(out_indices=(7, 0), widen_factor=0.25).eval()
    outs = model(torch.rand(1, 3, 32, 32))
    # outputs come in layer order whatever order out_indices lists them in
    assert [o.shape[1] for o in outs] == [8, 1280]


def _requires_grad(module):
    return {p.requires_grad for p in module.parameters()}


def test_frozen_stages_apply_on_train():
    model = MobileNetV2(frozen_stages=2, widen_factor=0.25)
    # as in mmdetection, nothing is frozen until train() is called
    assert _requires_grad(model) == {True}
    assert model.train() is model
    assert _requires_grad(model.conv1) == {False}
    for i in (1, 2):
        layer = getattr(model, f'layer{i}')
        assert _requires_grad(layer) == {False}
        assert not any(m.training for m in layer.modules())
    for name in ('layer3', 'layer7', 'conv2'):
        assert _requires_grad(getattr(model, name)) == {True}
        assert getattr(model, name).training
    # mmdetection quirk: conv1 is frozen but not put in eval mode, its BN stats still move
    assert model.conv1.bn.training
    before = model.conv1.bn.running_mean.clone()
    model(torch.rand(2, 3, 32, 32))
    assert not torch.equal(before, model.conv1.bn.running_mean)
    frozen = dict(model.layer1.named_buffers())
    frozen = {k: v.clone() for k, v in frozen.items()}
    model(torch.rand(2, 3, 32, 32))
    for k, v in model.layer1.named_buffers():
        assert torch.equal(v, frozen[k])


def test_frozen_stages_zero_freezes_only_conv1():
    model = MobileNetV2(frozen_stages=0, widen_factor=0.25).train()
    assert _requires_grad(model.conv1) == {False}
    assert _requires_grad(model.layer1) == {True}


def test_norm_eval_keeps_every_bn_in_eval():
    model = MobileNetV2(norm_eval=True, widen_factor=0.25).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(bn.training for bn in bns)
    assert model.layer3.training  # only the norms
    assert _requires_grad(model) == {True}


def test_defaults_and_init_cfg():
    model = MODELS.build(dict(type='MobileNetV2'))
    assert (model.widen_factor, model.out_indices, model.frozen_stages) == (1., (1, 2, 4, 7), -1)
    assert model.act_cfg == dict(type='ReLU6') and model.norm_cfg == dict(type='BN')
    assert model.init_cfg == [dict(type='Kaiming', layer='Conv2d'),
                              dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
    custom = dict(type='TruncNormal', layer='Conv2d', std=0.03)
    assert MobileNetV2(init_cfg=custom).init_cfg == custom
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = MobileNetV2(widen_factor=0.25, pretrained='mb2.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='mb2.pth')


def test_argument_errors():
    with pytest.raises(ValueError, match='out_indices'):
        MobileNetV2(out_indices=(8, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        MobileNetV2(frozen_stages=8)
    with pytest.raises(AssertionError, match='init_cfg and pretrained'):
        MobileNetV2(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b'))
    with pytest.raises(TypeError, match='pretrained'):
        MobileNetV2(pretrained=3)
