"""DyHead: mmdetection 3.3's keys and shapes, init, and the block against plain convs at
zero offsets."""
import pytest
import torch
import torch.nn.functional as F
from helpers_state_dict import conv_bias, shapes_of
from torchvision.ops import deform_conv2d

from mmdet_lite.models.layers import DyReLU, ModulatedDeformConv2d
from mmdet_lite.models.necks import DyHead
from mmdet_lite.registry import MODELS


def dyhead_block_keys(prefix, in_c, out_c):
    """From mmdetection's DyHeadBlock: three DyDCNv2 (conv without bias + GN), the offset
    conv (27 = 3 x 3 x (dy, dx, mask)), the scale attention's 1x1 conv, DyReLU (ratio 4)."""
    keys = {}
    for name in ('spatial_conv_high', 'spatial_conv_mid', 'spatial_conv_low'):
        keys[f'{prefix}.{name}.conv.weight'] = (out_c, in_c, 3, 3)
        keys[f'{prefix}.{name}.norm.weight'] = (out_c, )
        keys[f'{prefix}.{name}.norm.bias'] = (out_c, )
    keys[f'{prefix}.spatial_conv_offset.weight'] = (27, in_c, 3, 3)
    keys[f'{prefix}.spatial_conv_offset.bias'] = (27, )
    keys[f'{prefix}.scale_attn_module.1.weight'] = (1, out_c, 1, 1)
    keys[f'{prefix}.scale_attn_module.1.bias'] = (1, )
    keys.update(conv_bias(f'{prefix}.task_attn_module.conv1', out_c, out_c // 4, 1))
    keys.update(conv_bias(f'{prefix}.task_attn_module.conv2', out_c // 4, 4 * out_c, 1))
    return keys


def levels(channels=16, sizes=(16, 8, 4), batch=2):
    return [torch.rand(batch, channels, s, s) for s in sizes]


def test_keys_and_shapes():
    neck = MODELS.build(dict(type='DyHead', in_channels=8, out_channels=16, num_blocks=2))
    assert shapes_of(neck) == {**dyhead_block_keys('dyhead_blocks.0', 8, 16),
                               **dyhead_block_keys('dyhead_blocks.1', 16, 16)}
    outs = neck(levels(channels=8, sizes=(16, 8, 4)))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(2, 16, 16, 16), (2, 16, 8, 8), (2, 16, 4, 4)]
    block = neck.dyhead_blocks[0]
    assert type(block.spatial_conv_mid.conv) is ModulatedDeformConv2d
    assert block.spatial_conv_low.conv.stride == (2, 2)
    assert block.spatial_conv_mid.norm.num_groups == 16
    assert isinstance(block.task_attn_module, DyReLU)


def test_defaults_and_init():
    neck = DyHead(16, 16)
    assert neck.num_blocks == 6 and len(neck.dyhead_blocks) == 6
    block = neck.dyhead_blocks[0]
    assert torch.count_nonzero(block.spatial_conv_offset.weight) == 0
    assert torch.count_nonzero(block.spatial_conv_offset.bias) == 0
    # Plain convs N(0, 0.01) with zero bias; the deformable convs keep mmcv's uniform init.
    w = block.task_attn_module.conv2.conv.weight
    assert 0.005 < w.std() < 0.015 and torch.count_nonzero(block.scale_attn_module[1].bias) == 0
    assert block.spatial_conv_mid.conv.weight.abs().max() <= 1 / (16 * 9)**0.5
    assert DyHead(16, 16, zero_init_offset=False).dyhead_blocks[0].spatial_conv_offset.weight \
        .abs().sum() > 0


def test_init_cfg_is_refused():
    with pytest.raises(AssertionError, match='init_cfg'):
        DyHead(16, 16, init_cfg=dict(type='Normal', layer='Conv2d'))


def test_block_equals_plain_convs_at_zero_offsets():
    # Zero offsets sample the regular grid and the mask is sigmoid(0) = 0.5 everywhere, so
    # each DyDCNv2 is GN(0.5 * conv(x)); recompute the block with F.conv2d.
    neck = DyHead(16, 16, num_blocks=1).eval()
    block = neck.dyhead_blocks[0]
    x = levels(sizes=(8, 4), batch=1)

    def dcn(module, feat, stride=1):
        return module.norm(0.5 * F.conv2d(feat, module.conv.weight, stride=stride, padding=1))

    def scaled(feat):
        return feat * block.scale_attn_module(feat)

    mid0 = dcn(block.spatial_conv_mid, x[0])
    high = F.interpolate(dcn(block.spatial_conv_high, x[1]), size=(8, 8), mode='bilinear',
                         align_corners=True)
    out0 = block.task_attn_module((scaled(mid0) + scaled(high)) / 2)
    mid1 = dcn(block.spatial_conv_mid, x[1])
    low = dcn(block.spatial_conv_low, x[0], stride=2)
    out1 = block.task_attn_module((scaled(mid1) + scaled(low)) / 2)
    outs = neck(x)
    torch.testing.assert_close(outs[0], out0, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outs[1], out1, rtol=1e-4, atol=1e-5)


def test_coarser_level_reuses_the_cropped_offsets():
    # Offsets and masks vary over the map; the coarser neighbour's DCN must use this level's
    # prediction cropped to the neighbour's size, not a prediction from the neighbour.
    neck = DyHead(16, 16, num_blocks=1).eval()
    block = neck.dyhead_blocks[0]
    torch.nn.init.normal_(block.spatial_conv_offset.weight, std=0.2)
    x = levels(sizes=(8, 4), batch=1)
    conv = block.spatial_conv_high

    def high_from(pred):
        crop = pred[:, :, :4, :4]
        feat = deform_conv2d(x[1], crop[:, :18], conv.conv.weight, padding=1,
                             mask=crop[:, 18:].sigmoid())
        return F.interpolate(conv.norm(feat), size=(8, 8), mode='bilinear',
                             align_corners=True)

    with torch.no_grad():
        pred0 = block.spatial_conv_offset(x[0])
        mid = block.spatial_conv_mid.norm(
            deform_conv2d(x[0], pred0[:, :18], block.spatial_conv_mid.conv.weight, padding=1,
                          mask=pred0[:, 18:].sigmoid()))

        def level0(high):
            return block.task_attn_module(
                (mid * block.scale_attn_module(mid) + high * block.scale_attn_module(high)) / 2)

        expected = level0(high_from(pred0))
        recomputed = level0(high_from(block.spatial_conv_offset(x[1])))
        out = neck(x)[0]
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out, recomputed, rtol=1e-4, atol=1e-5)


def test_inputs_must_be_a_sequence():
    with pytest.raises(AssertionError, match='list or tuple'):
        DyHead(16, 16, num_blocks=1)(torch.rand(1, 16, 4, 4))
