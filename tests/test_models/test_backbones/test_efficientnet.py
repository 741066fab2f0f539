"""EfficientNet (+ EdgeResidual, model_scaling): mmdetection 3.3's registered name, defaults,
scaled block tables worked out by hand, state_dict keys (b0, b3), TF-'SAME' blocks against a
functional reference, output strides, frozen stages / norm_eval and argument errors."""
import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from helpers_pvt_effnet_keys import (B0_FINAL, B0_STAGES, B0_STEM, B3_FINAL, B3_STAGES,
                                     B3_STEM, efficientnet)
from helpers_state_dict import shapes_of
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import EfficientNet
from mmdet_lite.models.backbones.efficientnet import EdgeResidual, model_scaling
from mmdet_lite.models.layers import InvertedResidual
from mmdet_lite.registry import MODELS


def test_registered_with_mmdetections_defaults():
    assert MODELS.get('EfficientNet') is EfficientNet
    defaults = {n: p.default for n, p in inspect.signature(EfficientNet).parameters.items()}
    assert defaults == dict(
        arch='b0', drop_path_rate=0., out_indices=(6, ), frozen_stages=0,
        conv_cfg=dict(type='Conv2dAdaptivePadding'), norm_cfg=dict(type='BN', eps=1e-3),
        act_cfg=dict(type='Swish'), norm_eval=False, with_cp=False,
        init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                  dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)])
    edge = {n: p.default for n, p in inspect.signature(EdgeResidual).parameters.items()
            if p.default is not inspect.Parameter.empty}
    assert edge == dict(kernel_size=3, stride=1, se_cfg=None, with_residual=True,
                        conv_cfg=None, norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU'),
                        drop_path_rate=0., with_cp=False, init_cfg=None)


# ---------------------------------------------------------------- model_scaling


def table(stages):
    """Hand tables as (channels per block) lists per stage."""
    return [[out_c for _, out_c, _, _, num in runs for _ in range(num)] for runs in stages]


def test_model_scaling_b0_b3_and_edgetpu_by_hand():
    base = EfficientNet.layer_settings['b']
    before = copy.deepcopy(base)
    b3 = model_scaling(base, EfficientNet.arch_settings['b3'])
    assert base == before  # the class table is not modified
    assert [[blk[1] for blk in stage] for stage in b3] == \
        [[B3_STEM], *table(B3_STAGES), [B3_FINAL]]
    # Strides: only a stage's first block strides (the 136 and 384 runs joined stage 4/5).
    assert [[blk[3] for blk in stage] for stage in b3[1:-1]] == \
        [[1, 1], [2, 1, 1], [2, 1, 1], [2] + [1] * 9, [2] + [1] * 7]
    b0 = model_scaling(base, EfficientNet.arch_settings['b0'])
    assert [[blk[1] for blk in stage] for stage in b0] == \
        [[B0_STEM], *table(B0_STAGES), [B0_FINAL]]
    # EdgeTPU-M, depth 1.1: runs of 1, 2, 4, 5, 4, 2 blocks -> 2, 3, 5, 6, 5, 3 (ceil); the
    # 144-wide run starts at stride 1 and joins the 96-wide stage.
    em = model_scaling(EfficientNet.layer_settings['e'], EfficientNet.arch_settings['em'])
    assert [len(stage) for stage in em] == [1, 2, 3, 5, 11, 3, 1]
    assert [blk[1] for blk in em[4]] == [96] * 6 + [144] * 5


# ---------------------------------------------------------------- state_dict keys


def test_b3_with_the_retinanet_out_indices_has_mmdetections_keys():
    model = EfficientNet(arch='b3', out_indices=(3, 4, 5))
    expected = efficientnet('', B3_STEM, B3_STAGES, B3_FINAL, out_indices=(3, 4, 5))
    assert shapes_of(model) == expected
    assert len(model.layers) == 6  # layers.6 (the 1536 conv) is not built
    # Spot checks: stage 1 has no expand conv (expand ratio 1), SE hidden = in / 4.
    assert 'layers.1.0.expand_conv.conv.weight' not in expected
    assert expected['layers.1.0.se.conv1.conv.weight'] == (10, 40, 1, 1)
    assert expected['layers.5.7.depthwise_conv.conv.weight'] == (2304, 1, 3, 3)
    assert expected['layers.5.7.se.conv1.conv.weight'] == (96, 2304, 1, 1)


def test_b0_default_out_indices_build_the_final_conv():
    model = EfficientNet()
    assert shapes_of(model) == efficientnet('', B0_STEM, B0_STAGES, B0_FINAL, out_indices=(6, ))
    assert model.layers[6].conv.weight.shape == (1280, 320, 1, 1)


def test_out_indices_limit_the_built_stages():
    model = EfficientNet(arch='b0', out_indices=(2, ))
    assert len(model.layers) == 3
    assert shapes_of(model) == efficientnet('', B0_STEM, B0_STAGES, B0_FINAL, out_indices=(2, ))


def test_edgetpu_m_repeated_expand_3_block_quirk():
    model = EfficientNet(arch='em', out_indices=(1, ))
    first, second = model.layers[1]
    assert isinstance(first, EdgeResidual) and isinstance(second, EdgeResidual)
    assert first.conv1.conv.weight.shape == (96, 32, 3, 3)  # 32 * 3
    # The repeated block expands by 4 (not 3) and has no residual, as in mmdetection.
    assert second.conv1.conv.weight.shape == (96, 24, 3, 3)  # 24 * 4
    assert not second.with_residual
    assert not hasattr(first, 'se')
    es = EfficientNet(arch='es', out_indices=(4, ))
    assert [type(b).__name__ for b in es.layers[3]] == ['EdgeResidual'] * 4
    assert [type(b).__name__ for b in es.layers[4]] == ['InvertedResidual'] * 9


# ---------------------------------------------------------------- blocks vs references


def same_pad(x, k, s):
    """TensorFlow 'SAME': ceil(H / s) outputs, the extra padding bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def bn_eval(x, module):
    bn = module.bn
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.,
                        bn.eps)


def conv_bn_act(x, module, stride=1, groups=1, act=True):
    k = module.conv.weight.shape[-1]
    out = bn_eval(F.conv2d(same_pad(x, k, stride), module.conv.weight, stride=stride,
                           groups=groups), module)
    return F.silu(out) if act else out


def se(x, module):
    pooled = x.mean((2, 3), keepdim=True)
    hidden = F.silu(F.conv2d(pooled, module.conv1.conv.weight, module.conv1.conv.bias))
    return x * torch.sigmoid(F.conv2d(hidden, module.conv2.conv.weight, module.conv2.conv.bias))


def randomise(module):
    torch.manual_seed(0)
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return module.eval()


@pytest.mark.parametrize('size', [16, 15])
def test_efficientnet_stride_2_mbconv_matches_a_same_padding_reference(size):
    model = randomise(EfficientNet(arch='b0', out_indices=(2, )))
    block = model.layers[2][0]  # 16 -> 24, k3, stride 2, expand 6, SE
    assert isinstance(block, InvertedResidual)
    x = torch.randn(2, 16, size, size)
    out = conv_bn_act(x, block.expand_conv)
    out = conv_bn_act(out, block.depthwise_conv, stride=2, groups=96)
    out = conv_bn_act(se(out, block.se), block.linear_conv, act=False)
    with torch.no_grad():
        result = block(x)
    assert result.shape == (2, 24, 8, 8)  # ceil(size / 2)
    torch.testing.assert_close(result, out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('stride, with_residual, expected_residual', [
    (1, True, True), (1, False, False), (2, True, False)])
def test_edge_residual_matches_a_reference(stride, with_residual, expected_residual):
    block = randomise(EdgeResidual(8, 8, 24, kernel_size=3, stride=stride,
                                   se_cfg=dict(channels=24, ratio=4,
                                               act_cfg=(dict(type='Swish'),
                                                        dict(type='Sigmoid'))),
                                   with_residual=with_residual,
                                   conv_cfg=dict(type='Conv2dAdaptivePadding'),
                                   act_cfg=dict(type='Swish'), with_expand_conv=True))
    assert block.with_residual is expected_residual
    x = torch.randn(2, 8, 10, 10)
    # The kxk conv keeps the resolution; the 1x1 projection strides (mmdetection's layout).
    out = conv_bn_act(x, block.conv1)
    out = conv_bn_act(se(out, block.se), block.conv2, stride=stride, act=False)
    if expected_residual:
        out = out + x
    with torch.no_grad():
        torch.testing.assert_close(block(x), out, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- forward shapes


def test_b0_every_layer_stride_and_width():
    model = EfficientNet(arch='b0', out_indices=tuple(range(7))).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 65, 64))
    # 'SAME' padding: ceil(H / stride) rows.
    assert [tuple(o.shape) for o in outs] == [
        (1, 32, 33, 32), (1, 16, 33, 32), (1, 24, 17, 16), (1, 40, 9, 8), (1, 112, 5, 4),
        (1, 320, 3, 2), (1, 1280, 3, 2)]


@pytest.mark.slow
def test_b3_retinanet_outputs_at_768():
    model = EfficientNet(arch='b3', out_indices=(3, 4, 5)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 768, 768))
    assert [tuple(o.shape) for o in outs] == [(1, 48, 96, 96), (1, 136, 48, 48),
                                              (1, 384, 24, 24)]


def test_drop_path_rates_span_all_blocks_of_the_architecture():
    model = EfficientNet(arch='b3', drop_path_rate=0.2, out_indices=(3, ))
    # b3 has 26 blocks; the last built one (stage 3, block 2) is block 7 of them.
    assert model.layers[3][2].drop_path.drop_prob == pytest.approx(0.2 * 7 / 25)
    assert isinstance(model.layers[1][0].drop_path, torch.nn.Identity)  # rate 0


# ---------------------------------------------------------------- train modes and errors


def test_frozen_stages_and_norm_eval():
    model = EfficientNet(arch='b0', out_indices=(3, ), frozen_stages=2, norm_eval=True)
    model.train()
    for layer in model.layers[:2]:
        assert not layer.training
        assert not any(p.requires_grad for p in layer.parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())
    assert not model.layers[3][0].expand_conv.bn.training  # norm_eval
    # Quirk kept: norm_eval only touches nn.BatchNorm2d, which SyncBatchNorm is not.
    sync = EfficientNet(arch='b0', out_indices=(1, ), norm_eval=True,
                        norm_cfg=dict(type='SyncBN', eps=1e-3))
    sync.train()
    assert sync.layers[1][0].depthwise_conv.bn.training


def test_argument_errors():
    with pytest.raises(AssertionError, match='b9'):
        EfficientNet(arch='b9')
    with pytest.raises(ValueError, match='out_indices'):
        EfficientNet(out_indices=(7, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        EfficientNet(frozen_stages=8)
    with pytest.raises(AssertionError):
        EdgeResidual(8, 8, 16, stride=3)
    with pytest.raises(AssertionError):
        EdgeResidual(8, 8, 16, se_cfg=[4])
