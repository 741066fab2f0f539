"""AdaptivePadding, PatchEmbed, PatchMerging: padding amounts, shapes, state_dict keys, the
unfold feature order (checked against slicing by hand) and argument errors."""
import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.layers import AdaptivePadding, PatchEmbed, PatchMerging
from mmdet_lite.models.layers.transformer import patch_embed as patch_embed_module


@pytest.mark.parametrize('size,expected', [((15, 17), (16, 32)), ((16, 17), (16, 32)),
                                           ((16, 16), (16, 16)), ((1, 33), (16, 48))])
def test_adaptive_padding_corner_pads_bottom_right_to_whole_windows(size, expected):
    pad = AdaptivePadding(kernel_size=16, stride=16, padding='corner')
    x = torch.rand(1, 1, *size) + 1  # strictly positive: padded zeros are identifiable
    out = pad(x)
    assert tuple(out.shape[-2:]) == expected
    assert torch.equal(out[..., :size[0], :size[1]], x)
    assert out[..., size[0]:, :].abs().sum() == 0 and out[..., :, size[1]:].abs().sum() == 0


def test_adaptive_padding_same_splits_the_padding_smaller_half_first():
    # kernel 3, stride 2, dilation 2 on 10: ceil(10/2)=5 windows need 4*2 + 2*2 + 1 = 13,
    # pad 3 = 1 (top/left) + 2 (bottom/right). On 7: 4 windows need 6 + 4 + 1 = 11, pad 4.
    pad = AdaptivePadding(kernel_size=3, stride=2, dilation=2, padding='same')
    assert pad.get_pad_shape((10, 7)) == (3, 4)
    x = torch.rand(1, 2, 10, 7) + 1
    out = pad(x)
    assert out.shape == (1, 2, 13, 11)
    assert torch.equal(out[:, :, 1:11, 2:9], x)
    assert out[:, :, 0].abs().sum() == 0 and out[:, :, 11:].abs().sum() == 0
    assert out[..., :2].abs().sum() == 0 and out[..., 9:].abs().sum() == 0


def test_adaptive_padding_rejects_unknown_mode():
    with pytest.raises(AssertionError, match="'corner'"):
        AdaptivePadding(padding='valid')


def test_patch_embed_keys_shapes_and_conv_equivalence():
    embed = PatchEmbed(in_channels=3, embed_dims=8, kernel_size=4, stride=4,
                       norm_cfg=dict(type='LN'))
    assert {k: tuple(v.shape) for k, v in embed.state_dict().items()} == {
        'projection.weight': (8, 3, 4, 4), 'projection.bias': (8, ),
        'norm.weight': (8, ), 'norm.bias': (8, )}
    x = torch.randn(2, 3, 13, 10)  # padded to 16 x 12 (bottom/right)
    tokens, hw = embed(x)
    assert hw == (4, 3) and tokens.shape == (2, 12, 8)
    ref = F.conv2d(F.pad(x, (0, 2, 0, 3)), embed.projection.weight, embed.projection.bias,
                   stride=4)
    ref = F.layer_norm(ref.flatten(2).transpose(1, 2), (8, ), embed.norm.weight,
                       embed.norm.bias)
    torch.testing.assert_close(tokens, ref)


def test_patch_embed_defaults_and_init_out_size():
    embed = PatchEmbed()  # mmdetection: embed_dims 768, kernel 16, stride 16, no norm
    assert embed.projection.weight.shape == (768, 3, 16, 16) and embed.norm is None
    assert embed.init_out_size is None
    sized = PatchEmbed(embed_dims=4, kernel_size=4, stride=4, input_size=(30, 17))
    assert sized.init_input_size == (30, 17)
    assert sized.init_out_size == (8, 5)  # ceil(30/4), ceil(17/4) after corner padding
    fixed = PatchEmbed(embed_dims=4, kernel_size=3, stride=2, padding=1, input_size=9)
    assert fixed.adap_padding is None and fixed.init_out_size == (5, 5)  # (9+2-3)//2+1
    assert PatchEmbed(embed_dims=4, kernel_size=5, stride=None).projection.stride == (5, 5)


def official_merge(x, hw):
    """Swin's original merging input: the four 2x2 neighbours as channel blocks."""
    b, _, c = x.shape
    grid = x.view(b, *hw, c)
    parts = [grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2], grid[:, 1::2, 1::2]]
    return torch.cat(parts, dim=-1).view(b, -1, 4 * c)


def test_patch_merging_unfold_order_is_channel_major():
    merge = PatchMerging(in_channels=3, out_channels=5, norm_cfg=None)
    assert {k: tuple(v.shape) for k, v in merge.state_dict().items()} == {
        'reduction.weight': (5, 12)}
    x = torch.randn(2, 4 * 6, 3)
    out, hw = merge(x, (4, 6))
    assert hw == (2, 3) and out.shape == (2, 6, 5)
    # Feature c * 4 + k' holds channel c of kernel position k' = (0,0), (0,1), (1,0), (1,1);
    # the official blocks are ordered (0,0), (1,0), (0,1), (1,1).
    official = official_merge(x, (4, 6)).view(2, 6, 4, 3)[:, :, [0, 2, 1, 3]]
    unfold_order = official.transpose(2, 3).reshape(2, 6, 12)
    torch.testing.assert_close(out, unfold_order @ merge.reduction.weight.T)


def test_patch_merging_pads_odd_maps_and_applies_norm():
    merge = PatchMerging(in_channels=2, out_channels=4)
    assert merge.norm.normalized_shape == (8, ) and merge.reduction.bias is None
    x = torch.randn(1, 5 * 3, 2)
    out, hw = merge(x, (5, 3))
    assert hw == (3, 2) and out.shape == (1, 6, 4)
    padded = F.pad(x.view(1, 5, 3, 2), (0, 0, 0, 1, 0, 1)).view(1, 24, 2)
    official = official_merge(padded, (6, 4)).view(1, 6, 4, 2)[:, :, [0, 2, 1, 3]]
    feats = official.transpose(2, 3).reshape(1, 6, 8)
    ref = merge.reduction(F.layer_norm(feats, (8, ), merge.norm.weight, merge.norm.bias))
    torch.testing.assert_close(out, ref)


def test_patch_merging_stride_defaults_to_kernel_and_checks_input():
    merge = PatchMerging(in_channels=2, out_channels=2, kernel_size=3)
    assert merge.sampler.stride == (3, 3)
    with pytest.raises(AssertionError, match='wrong size'):
        merge(torch.randn(1, 10, 2), (3, 4))
    with pytest.raises(AssertionError, match='Sequence'):
        merge(torch.randn(1, 12, 2), 12)
    assert issubclass(patch_embed_module.PatchArgumentError, ValueError)
