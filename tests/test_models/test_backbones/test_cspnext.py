"""CSPNeXt (RTMDet backbone): mmdetection 3.3's keys and shapes, defaults, output strides,
freezing, norm_eval, argument errors, init and loading an mmpretrain ImageNet checkpoint."""
import inspect
import math
from pathlib import PurePosixPath

import numpy as np
import pytest
import torch
from helpers_csp_keys import cspnext
from helpers_state_dict import shapes_of
from mmengine.logging import HistoryBuffer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# Importing mmdet_lite.engine.checkpoint routes local checkpoints (init_cfg 'Pretrained'
# included) through the weights-only loader.
from mmdet_lite.engine.checkpoint import UntrustedCheckpointError
from mmdet_lite.models.backbones import CSPNeXt
from mmdet_lite.models.backbones import cspnext as cspnext_module
from mmdet_lite.registry import MODELS

# Small enough for fast forwards: channels 8 (stem), 16, 32, 64, 128 (P5) or 96, 128 (P6).
SMALL = dict(deepen_factor=0.167, widen_factor=0.125)


def shapes(outs):
    return [tuple(o.shape) for o in outs]


def bn_modules(module):
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def randomize(model):
    """Random weights and BN statistics, unlike any fresh init."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
        for m in bn_modules(model):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(7)


def test_signature_defaults_match_mmdetection():
    params = inspect.signature(CSPNeXt).parameters
    assert list(params) == [
        'arch', 'deepen_factor', 'widen_factor', 'out_indices', 'frozen_stages', 'use_depthwise',
        'expand_ratio', 'arch_ovewrite', 'spp_kernel_sizes', 'channel_attention', 'conv_cfg',
        'norm_cfg', 'act_cfg', 'norm_eval', 'init_cfg'
    ]
    defaults = {k: p.default for k, p in params.items()}
    assert defaults == dict(
        arch='P5', deepen_factor=1.0, widen_factor=1.0, out_indices=(2, 3, 4), frozen_stages=-1,
        use_depthwise=False, expand_ratio=0.5, arch_ovewrite=None, spp_kernel_sizes=(5, 9, 13),
        channel_attention=True, conv_cfg=None, norm_cfg=dict(type='BN', momentum=0.03, eps=0.001),
        act_cfg=dict(type='SiLU'), norm_eval=False,
        init_cfg=dict(type='Kaiming', layer='Conv2d', a=math.sqrt(5), distribution='uniform',
                      mode='fan_in', nonlinearity='leaky_relu'))
    assert CSPNeXt.arch_settings['P5'][1] == [128, 256, 6, True, False]
    assert CSPNeXt.arch_settings['P6'][3] == [512, 768, 3, True, False]


def test_registry_and_module_path():
    model = MODELS.build(dict(type='CSPNeXt', **SMALL))
    assert type(model) is CSPNeXt and cspnext_module.CSPNeXt is CSPNeXt
    assert model.layers == ['stem', 'stage1', 'stage2', 'stage3', 'stage4']
    assert isinstance(model.stem, nn.Sequential) and isinstance(model.stage4, nn.Sequential)


@pytest.mark.parametrize('name,kwargs', [
    ('tiny', dict(deepen_factor=0.167, widen_factor=0.375)),
    ('s', dict(deepen_factor=0.33, widen_factor=0.5)),
    ('p6', dict(arch='P6', deepen_factor=0.33, widen_factor=0.25)),
    ('no_attention', dict(channel_attention=False, expand_ratio=0.25, **SMALL)),
    ('depthwise', dict(use_depthwise=True, **SMALL)),
])
def test_keys_and_shapes_match_mmdetection(name, kwargs):
    assert shapes_of(CSPNeXt(**kwargs)) == cspnext(**kwargs)


def test_tiny_keys_by_hand():
    keys = shapes_of(CSPNeXt(deepen_factor=0.167, widen_factor=0.375))
    assert keys['stem.0.conv.weight'] == (12, 3, 3, 3)  # int(64 * 0.375 // 2)
    assert keys['stem.2.conv.weight'] == (24, 12, 3, 3)
    assert keys['stage1.0.conv.weight'] == (48, 24, 3, 3)
    assert keys['stage1.1.main_conv.conv.weight'] == (24, 48, 1, 1)
    assert keys['stage1.1.blocks.0.conv2.depthwise_conv.conv.weight'] == (24, 1, 5, 5)
    assert keys['stage1.1.attention.fc.bias'] == (48, )
    assert keys['stage4.1.conv1.conv.weight'] == (192, 384, 1, 1)  # SPP
    assert keys['stage4.1.conv2.conv.weight'] == (384, 768, 1, 1)
    assert keys['stage4.2.final_conv.bn.num_batches_tracked'] == ()
    # round(6 * 0.167) = 1 block; s has round(6 * 0.33) = 2
    assert 'stage2.1.blocks.1.conv1.conv.weight' not in keys
    assert 'stage2.1.blocks.1.conv1.conv.weight' in shapes_of(CSPNeXt(deepen_factor=0.33,
                                                                      widen_factor=0.5))


def test_arch_ovewrite_replaces_the_table():
    rows = [[16, 32, 1, True, False], [32, 48, 2, False, True]]
    model = CSPNeXt(arch_ovewrite=rows, out_indices=(1, 2), spp_kernel_sizes=(3, 5))
    assert shapes_of(model) == cspnext(arch_ovewrite=rows, spp_kernel_sizes=(3, 5))
    assert model.layers == ['stem', 'stage1', 'stage2']
    assert shapes(model.eval()(torch.rand(1, 3, 32, 32))) == [(1, 32, 8, 8), (1, 48, 4, 4)]


@pytest.mark.parametrize('arch,out_indices,expected', [
    ('P5', (2, 3, 4), [(2, 32, 8, 8), (2, 64, 4, 4), (2, 128, 2, 2)]),
    ('P5', (0, 1), [(2, 8, 32, 32), (2, 16, 16, 16)]),
    ('P5', (4, 2), [(2, 32, 8, 8), (2, 128, 2, 2)]),  # always in layer order
    ('P6', (2, 3, 4, 5), [(2, 32, 8, 8), (2, 64, 4, 4), (2, 96, 2, 2), (2, 128, 1, 1)]),
])
def test_output_shapes_and_strides(arch, out_indices, expected):
    model = CSPNeXt(arch=arch, out_indices=out_indices, **SMALL).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 64, 64))
    assert isinstance(outs, tuple)
    assert shapes(outs) == expected


def test_frozen_stages_after_train():
    model = CSPNeXt(frozen_stages=2, **SMALL)
    # As in mmdetection, freezing happens in train(), not at construction.
    assert all(p.requires_grad for p in model.parameters())
    assert model.train() is model
    for name in ['stem', 'stage1', 'stage2']:
        layer = getattr(model, name)
        assert not any(p.requires_grad for p in layer.parameters()), name
        assert not any(m.training for m in bn_modules(layer)), name
    for name in ['stage3', 'stage4']:
        layer = getattr(model, name)
        assert all(p.requires_grad for p in layer.parameters()), name
        assert all(m.training for m in bn_modules(layer)), name
    # The frozen BN statistics stay put through a training-mode forward.
    frozen_mean = model.stage2[0].bn.running_mean.clone()
    trained_mean = model.stage3[0].bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(model.stage2[0].bn.running_mean, frozen_mean)
    assert not torch.equal(model.stage3[0].bn.running_mean, trained_mean)


def test_norm_eval_keeps_bn_statistics_in_train_mode():
    model = CSPNeXt(norm_eval=True, **SMALL).train()
    assert model.training and all(not m.training for m in bn_modules(model))
    before = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    model(torch.rand(2, 3, 64, 64))
    for key, value in before.items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)
    plain = CSPNeXt(**SMALL).train()
    assert all(m.training for m in bn_modules(plain))


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(out_indices=(5, )), AssertionError, r'out_indices must be in 0\.\.4'),
    (dict(frozen_stages=5), ValueError, r'frozen_stages must be in range\(-1, 5\)'),
    (dict(frozen_stages=-2), ValueError, 'frozen_stages'),
    (dict(arch='P7'), KeyError, 'P7'),
    (dict(arch_ovewrite=[[64, 128, 1, True, True]], out_indices=(2, )), AssertionError,
     r'0\.\.1'),
])
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        CSPNeXt(**kwargs)


def test_p6_accepts_index_5():
    assert CSPNeXt(arch='P6', out_indices=(5, ), frozen_stages=5, **SMALL).layers[-1] == 'stage5'


def test_init_weights_is_torch_default_conv_init_with_zero_biases():
    model = CSPNeXt(**SMALL)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]

    def within_kaiming_uniform_bound(conv):
        fan_in = conv.weight[0].numel()
        return conv.weight.abs().max() <= 1 / math.sqrt(fan_in) + 1e-6

    # ConvModule's own construction-time init (kaiming normal, fan_out) leaves the bound.
    assert not all(within_kaiming_uniform_bound(c) for c in convs)
    model.init_weights()
    assert all(within_kaiming_uniform_bound(c) for c in convs)
    big = model.stage4[0].conv.weight  # fan_in 64 * 9
    assert abs(big.std().item() * math.sqrt(3 * 64 * 9) - 1) < 0.05
    # Kaiming init zeroes conv biases: only the attention convs have one.
    biases = [c.bias for c in convs if c.bias is not None]
    assert len(biases) == 4 and all(torch.count_nonzero(b) == 0 for b in biases)
    for bn in bn_modules(model):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def mmpretrain_checkpoint(source, path, **meta_extra):
    """An mmpretrain (mmengine Runner) ImageNet checkpoint of ``source`` as the backbone."""
    state = {f'backbone.{k}': v.clone() for k, v in source.state_dict().items()}
    state['head.fc.weight'] = torch.rand(1000, 128)
    state['head.fc.bias'] = torch.rand(1000)
    meta = dict(epoch=600, iter=3_000_000, seed=np.int64(1234), lr=np.float64(0.004),
                experiment_name='cspnext-tiny_8xb256-rsb-a1-600e_in1k_20221111_000000',
                time='20221111_000000', mmengine_version='0.3.0',
                cfg="model = dict(type='ImageClassifier', backbone=dict(type='CSPNeXt'))",
                dataset_meta=dict(classes=('tench', 'goldfish')),
                hook_msgs=dict(last_ckpt='work_dirs/epoch_600.pth'), **meta_extra)
    buffer = HistoryBuffer()
    buffer.update(0.5)
    message_hub = dict(log_scalars={'train/loss': buffer}, runtime_info=dict(epoch=600),
                       resumed_keys=dict(epoch=True))
    torch.save(dict(meta=meta, state_dict=state, message_hub=message_hub), path)


def test_pretrained_mmpretrain_checkpoint_loads_every_backbone_weight(tmp_path):
    source = CSPNeXt(**SMALL)
    randomize(source)
    path = tmp_path / 'cspnext-tiny_imagenet_600e.pth'
    mmpretrain_checkpoint(source, path)

    model = CSPNeXt(**SMALL, init_cfg=dict(type='Pretrained', prefix='backbone.',
                                           checkpoint=str(path)))
    expected = source.state_dict()
    assert not torch.equal(model.state_dict()['stem.0.conv.weight'],
                           expected['stem.0.conv.weight'])
    model.init_weights()
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)


def test_pretrained_checkpoint_goes_through_the_weights_only_loader(tmp_path):
    source = CSPNeXt(**SMALL)
    path = tmp_path / 'untrusted.pth'
    # a pathlib object in meta is not on the allow-list: the whole file is refused
    mmpretrain_checkpoint(source, path, work_dir=PurePosixPath('work_dirs/cspnext'))
    model = CSPNeXt(**SMALL, init_cfg=dict(type='Pretrained', prefix='backbone.',
                                           checkpoint=str(path)))
    with pytest.raises(UntrustedCheckpointError, match='pathlib.PurePosixPath'):
        model.init_weights()
