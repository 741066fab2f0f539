"""Darknet-53 (YOLOv3 backbone) and its ResBlock: mmdetection 3.3's defaults, keys and shapes,
the shape trace at 768x768, the residual block against a plain reference, freezing,
norm_eval, init config and argument errors."""
import inspect

import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import shapes_of
from helpers_yolo_keys import darknet53
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.backbones import Darknet
from mmdet_lite.models.backbones.darknet import ResBlock
from mmdet_lite.registry import MODELS


def meta_darknet(**kwargs) -> Darknet:
    """Darknet-53 without allocating or initializing its 40M weights (structure tests)."""
    with torch.device('meta'):
        return Darknet(**kwargs)


def test_signature_defaults_match_mmdetection():
    params = inspect.signature(Darknet).parameters
    assert list(params) == ['depth', 'out_indices', 'frozen_stages', 'conv_cfg', 'norm_cfg',
                            'act_cfg', 'norm_eval', 'pretrained', 'init_cfg']
    assert {k: p.default for k, p in params.items()} == dict(
        depth=53, out_indices=(3, 4, 5), frozen_stages=-1, conv_cfg=None,
        norm_cfg=dict(type='BN', requires_grad=True),
        act_cfg=dict(type='LeakyReLU', negative_slope=0.1), norm_eval=True, pretrained=None,
        init_cfg=None)
    assert Darknet.arch_settings == {
        53: ((1, 2, 8, 8, 4), ((32, 64), (64, 128), (128, 256), (256, 512), (512, 1024)))}
    res = inspect.signature(ResBlock).parameters
    assert list(res) == ['in_channels', 'conv_cfg', 'norm_cfg', 'act_cfg', 'init_cfg']


def test_registered_and_default_init_cfg():
    with torch.device('meta'):
        model = MODELS.build(dict(type='Darknet'))
    assert type(model) is Darknet
    assert model.init_cfg == [dict(type='Kaiming', layer='Conv2d'),
                              dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
    given = dict(type='Pretrained', checkpoint='darknet53.pth')
    assert meta_darknet(init_cfg=given).init_cfg == given


def test_state_dict_keys_and_shapes_match_mmdetection():
    with torch.device('meta'):
        model = Darknet()
    expected = darknet53('')
    # 52 convs (the stem, 5 stride-2 convs, 2 per residual block: 1+2+8+8+4 = 23 blocks),
    # each with 1 weight + 5 BN entries; the 53rd layer of the name is the classifier.
    assert len(expected) == (1 + 5 + 2 * 23) * 6
    assert shapes_of(model) == expected
    assert model.cr_blocks == ['conv1'] + [f'conv_res_block{i}' for i in range(1, 6)]
    act = model.conv_res_block3.res7.conv2.activate
    assert isinstance(act, torch.nn.LeakyReLU) and act.negative_slope == 0.1


def test_shape_trace_at_768():
    """Default out_indices (3, 4, 5): strides 8/16/32 with 256/512/1024 channels; every layer
    when all six are asked for (shapes only, on the meta device)."""
    with torch.device('meta'):
        model = Darknet().eval()
        outs = model(torch.empty(1, 3, 768, 768))
        assert [tuple(o.shape) for o in outs] == [(1, 256, 96, 96), (1, 512, 48, 48),
                                                  (1, 1024, 24, 24)]
        all_layers = Darknet(out_indices=(0, 1, 2, 3, 4, 5)).eval()
        outs = all_layers(torch.empty(1, 3, 768, 768))
    assert [tuple(o.shape) for o in outs] == [
        (1, 32, 768, 768), (1, 64, 384, 384), (1, 128, 192, 192), (1, 256, 96, 96),
        (1, 512, 48, 48), (1, 1024, 24, 24)]


@pytest.mark.slow
def test_real_forward_small_image_and_out_indices_order():
    torch.manual_seed(0)
    model = Darknet(out_indices=(5, 1)).eval()  # outputs come in layer order, not this order
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 32, 32), (2, 1024, 2, 2)]
    assert all(torch.isfinite(o).all() for o in outs)


def conv_bn_leaky(x, module):
    """Reference of an eval-mode ConvModule: conv (no bias), BN with running stats, LReLU."""
    conv, bn = module.conv, module.bn
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding)
    y = (y - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
    y = y * bn.weight[:, None, None] + bn.bias[:, None, None]
    return F.leaky_relu(y, 0.1)


def test_res_block_is_two_convs_plus_identity():
    torch.manual_seed(0)
    block = ResBlock(8).eval()
    for bn in (block.conv1.bn, block.conv2.bn):  # non-trivial statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 5, 5)
    assert block.conv1.conv.weight.shape == (4, 8, 1, 1)
    assert block.conv2.conv.weight.shape == (8, 4, 3, 3)
    expected = conv_bn_leaky(conv_bn_leaky(x, block.conv1), block.conv2) + x
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_stage_is_stride2_conv_then_res_blocks():
    stage = Darknet.make_conv_res_block(16, 32, 3)
    assert [name for name, _ in stage.named_children()] == ['conv', 'res0', 'res1', 'res2']
    assert stage.conv.conv.stride == (2, 2) and stage.conv.conv.kernel_size == (3, 3)
    assert stage(torch.rand(1, 16, 8, 8)).shape == (1, 32, 4, 4)


def test_frozen_stages_freeze_the_first_layers_only():
    model = meta_darknet(frozen_stages=2, norm_eval=False)
    # As mmdetection: frozen in train(), not at construction.
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    for name in ('conv1', 'conv_res_block1'):
        layer = getattr(model, name)
        assert not any(p.requires_grad for p in layer.parameters())
        assert not any(m.training for m in layer.modules())
    for name in ('conv_res_block2', 'conv_res_block5'):
        layer = getattr(model, name)
        assert all(p.requires_grad for p in layer.parameters())
        assert all(m.training for m in layer.modules())
    unfrozen = meta_darknet(frozen_stages=-1, norm_eval=False).train()
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_norm_eval_keeps_bn_in_eval_mode():
    model = meta_darknet().train()  # norm_eval defaults to True
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert len(bns) == 52 and not any(bn.training for bn in bns)
    assert model.training and model.conv1.conv.training
    model = meta_darknet(norm_eval=False).train()
    assert all(m.training for m in model.modules() if isinstance(m, _BatchNorm))
    assert model.train() is model


def test_errors_and_pretrained():
    with pytest.raises(KeyError, match='invalid depth'):
        meta_darknet(depth=21)
    with pytest.raises(AssertionError, match='even'):
        ResBlock(7)
    with pytest.raises(AssertionError, match='init_cfg and pretrained'):
        meta_darknet(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth'))
    with pytest.raises(TypeError, match='pretrained'):
        meta_darknet(pretrained=3)
    with pytest.warns(UserWarning, match='deprecated'):
        model = meta_darknet(pretrained='darknet53.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='darknet53.pth')
