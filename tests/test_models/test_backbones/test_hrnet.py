"""HRNet: mmdetection 3.3's keys, output shapes, the HRModule exchange against a functional
reference, init and argument checks."""
import pytest
import torch
import torch.nn.functional as F
from helpers import init_weights_quietly
from helpers_hrnet_keys import hrnet, hrnet_extra
from helpers_state_dict import shapes_of
from torch import nn

from mmdet_lite.models.backbones import HRNet
from mmdet_lite.models.backbones.hrnet import HRModule
from mmdet_lite.models.layers.res_layer import BasicBlock, Bottleneck
from mmdet_lite.registry import MODELS


@pytest.fixture(scope='module')
def w18():
    torch.manual_seed(0)
    return HRNet(hrnet_extra(18)).eval()


def test_w18_key_count_is_mmdetections():
    # stem 12, layer1 78, transition1 12, stage2 108, transition2 6, stage3 4 x 186,
    # transition3 6, stage4 3 x 288 (96 BasicBlocks of 12 entries + 16 fuse paths).
    assert len(hrnet('', 18)) == 1830


def test_w18_state_dict_keys_and_shapes(w18):
    assert shapes_of(w18) == hrnet('', 18)


def test_single_scale_output_drops_the_last_modules_lower_fuse_rows():
    model = HRNet(hrnet_extra(18), multiscale_output=False)
    assert shapes_of(model) == hrnet('', 18, multiscale_output=False)
    # Only the last module of stage 4 loses rows 1..3 (16 - 3 paths of 6 entries).
    assert len(hrnet('', 18)) - len(shapes_of(model)) == 13 * 6
    outs = model.eval()(torch.rand(1, 3, 64, 64))
    assert isinstance(outs, list) and [tuple(o.shape) for o in outs] == [(1, 18, 16, 16)]


def test_w18_small_image_branch_widths_and_strides(w18):
    with torch.no_grad():
        outs = w18(torch.rand(2, 3, 64, 96))
    assert isinstance(outs, list)
    assert [tuple(o.shape) for o in outs] == [(2, 18, 16, 24), (2, 36, 8, 12), (2, 72, 4, 6),
                                              (2, 144, 2, 3)]
    # Each branch ends with the exchange's ReLU.
    assert all((o >= 0).all() for o in outs)


@pytest.mark.slow
def test_w18_shape_trace_at_768(w18):
    with torch.no_grad():
        outs = w18(torch.rand(1, 3, 768, 768))
    # 4 branches of 18 / 36 / 72 / 144 channels at strides 4 / 8 / 16 / 32.
    assert [tuple(o.shape) for o in outs] == [(1, 18, 192, 192), (1, 36, 96, 96),
                                              (1, 72, 48, 48), (1, 144, 24, 24)]


def _randomize_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)


def _conv_bn(x, conv, norm, stride):
    y = F.conv2d(x, conv.weight, stride=stride, padding=conv.kernel_size[0] // 2)
    return F.batch_norm(y, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                        training=False, eps=norm.eps)


def test_hr_module_exchange_matches_a_functional_reference():
    torch.manual_seed(0)
    module = HRModule(3, BasicBlock, (1, 1, 1), [4, 8, 16], (4, 8, 16)).eval()
    _randomize_bn(module)
    x = [torch.randn(2, 4, 16, 16), torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    with torch.no_grad():
        out = module([t.clone() for t in x])
        f0, f1, f2 = (branch(t) for branch, t in zip(module.branches, x))
        fl = module.fuse_layers

        def up(t, j, i, scale):  # 1x1 conv + norm at branch j, nearest upsampling
            return F.interpolate(_conv_bn(t, fl[i][j][0], fl[i][j][1], 1),
                                 scale_factor=scale, mode='nearest')

        ref0 = F.relu(f0 + up(f1, 1, 0, 2) + up(f2, 2, 0, 4))
        ref1 = F.relu(_conv_bn(f0, fl[1][0][0][0], fl[1][0][0][1], 2) + f1 + up(f2, 2, 1, 2))
        # Two stride-2 steps from branch 0: ReLU between them, none after the last.
        mid = F.relu(_conv_bn(f0, fl[2][0][0][0], fl[2][0][0][1], 2))
        ref2 = F.relu(_conv_bn(mid, fl[2][0][1][0], fl[2][0][1][1], 2) +
                      _conv_bn(f1, fl[2][1][0][0], fl[2][1][0][1], 2) + f2)
    assert fl[0][0] is None and fl[1][1] is None and fl[2][2] is None
    for got, ref in zip(out, (ref0, ref1, ref2)):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_hr_module_with_bottleneck_branches_exchanges_expanded_widths():
    module = HRModule(2, Bottleneck, (1, 1), [16, 32], (4, 8))
    assert module.in_channels == [16, 32]
    assert tuple(module.fuse_layers[0][1][0].weight.shape) == (16, 32, 1, 1)
    outs = module([torch.rand(1, 16, 8, 8), torch.rand(1, 32, 4, 4)])
    assert [tuple(o.shape) for o in outs] == [(1, 16, 8, 8), (1, 32, 4, 4)]


def test_single_branch_module_has_no_exchange():
    module = HRModule(1, BasicBlock, (2, ), [8], (8, ))
    assert module.fuse_layers is None
    x = torch.rand(1, 8, 6, 6)
    torch.testing.assert_close(module([x])[0], module.branches[0](x))


@pytest.mark.parametrize('bad', ['num_blocks', 'num_channels', 'in_channels'])
def test_hr_module_rejects_per_branch_lists_of_the_wrong_length(bad):
    args = dict(num_blocks=(1, 1), in_channels=[4, 8], num_channels=(4, 8))
    args[bad] = args[bad][:1]
    with pytest.raises(ValueError, match=bad):
        HRModule(2, BasicBlock, **args)


def test_extra_missing_a_stage_is_an_assertion_error():
    extra = hrnet_extra(18)
    del extra['stage3']
    with pytest.raises(AssertionError, match='stage3'):
        HRNet(extra)


def test_extra_lengths_must_match_num_branches():
    extra = hrnet_extra(18)
    extra['stage2'] = dict(extra['stage2'], num_blocks=(4, ))
    with pytest.raises(AssertionError, match='stage2'):
        HRNet(extra)


def test_pretrained_and_init_cfg_together_is_an_assertion_error():
    with pytest.raises(AssertionError, match='pretrained'):
        HRNet(hrnet_extra(18), pretrained='a.pth',
              init_cfg=dict(type='Pretrained', checkpoint='a.pth'))
    with pytest.raises(TypeError, match='pretrained'):
        HRNet(hrnet_extra(18), pretrained=1)


def test_deprecated_pretrained_becomes_a_pretrained_init_cfg():
    with pytest.warns(UserWarning, match='deprecated'):
        model = HRNet(hrnet_extra(18), pretrained='hrnet.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='hrnet.pth')


def test_defaults_and_default_init_cfg_are_mmdetections():
    model = MODELS.build(dict(type='HRNet', extra=hrnet_extra(18)))
    assert model.norm_eval and not model.with_cp and not model.zero_init_residual
    assert model.norm_cfg == dict(type='BN') and model.conv_cfg is None
    assert model.init_cfg == [dict(type='Kaiming', layer='Conv2d'),
                              dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]


def test_zero_init_residual_has_no_effect_as_in_mmdetection():
    # mmdetection's zero-init condition can never hold (BaseModule always sets init_cfg), so
    # the residual norms start at 1 like every other norm.
    model = HRNet(hrnet_extra(18), zero_init_residual=True)
    init_weights_quietly(model)
    assert torch.all(model.layer1[0].bn3.weight == 1)
    assert torch.all(model.stage4[2].branches[3][3].bn2.weight == 1)


@pytest.mark.slow
def test_imagenet_style_checkpoint_loads_through_init_cfg(tmp_path, w18):
    # An ImageNet HRNet checkpoint holds the classification head too; Pretrained loads the
    # backbone's keys and ignores the rest.
    state = {k: v.clone() for k, v in w18.state_dict().items()}
    state['classifier.weight'] = torch.zeros(1000, 2048)
    torch.save({'state_dict': state}, tmp_path / 'hrnetv2_w18.pth')
    torch.manual_seed(1)
    model = HRNet(hrnet_extra(18), init_cfg=dict(type='Pretrained',
                                                 checkpoint=str(tmp_path / 'hrnetv2_w18.pth')))
    init_weights_quietly(model)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_norm_eval_keeps_batchnorms_in_eval_mode():
    model = HRNet(hrnet_extra(18)).train()
    assert model.training and not model.stage3[0].fuse_layers[0][1][1].training
    model = HRNet(hrnet_extra(18), norm_eval=False).train()
    assert model.stage3[0].fuse_layers[0][1][1].training


def test_group_norm_layers_take_gn_names():
    gn = dict(type='GN', num_groups=2, requires_grad=True)
    keys = shapes_of(HRNet(hrnet_extra(18), norm_cfg=gn))
    assert keys['gn1.weight'] == (64, ) and keys['gn2.weight'] == (64, )
    assert 'bn1.weight' not in keys and 'layer1.0.gn3.weight' in keys
    # Norms inside Sequentials keep their index: no running stats with GN.
    assert keys['stage2.0.fuse_layers.0.1.1.weight'] == (18, )
    assert 'stage2.0.fuse_layers.0.1.1.running_mean' not in keys


def test_checkpointed_blocks_give_the_same_output_and_gradients():
    torch.manual_seed(0)
    plain = HRNet(hrnet_extra(18)).train()
    checkpointed = HRNet(hrnet_extra(18), with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 64, 64)
    outs = [sum(o.sum() for o in model(x)) for model in (plain, checkpointed)]
    for out in outs:
        out.backward()
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(plain.conv1.weight.grad, checkpointed.conv1.weight.grad)
