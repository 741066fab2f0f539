"""CARAFE reassembly against a per-pixel loop; CARAFEPack keys, kernels and registration."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn import build_upsample_layer
from mmengine.registry import MODELS as MMENGINE_MODELS

from mmdet_lite.models.layers import CARAFE, CARAFEPack, carafe
from mmdet_lite.registry import MODELS


def naive_carafe(feat, masks, k, groups, s):
    """Literal reading of the CARAFE definition, one output element at a time."""
    n, c, h, w = feat.shape
    out = torch.zeros(n, c, h * s, w * s, dtype=feat.dtype)
    r = (k - 1) // 2
    per_group = c // groups
    for b in range(n):
        for ch in range(c):
            g = ch // per_group
            for oy in range(h * s):
                for ox in range(w * s):
                    cy, cx = oy // s, ox // s
                    acc = 0.0
                    for dy in range(k):
                        for dx in range(k):
                            iy, ix = cy + dy - r, cx + dx - r
                            if 0 <= iy < h and 0 <= ix < w:
                                acc += (masks[b, g * k * k + dy * k + dx, oy, ox] *
                                        feat[b, ch, iy, ix])
                    out[b, ch, oy, ox] = acc
    return out


@pytest.mark.parametrize('k,groups,s,c,h,w', [
    (5, 1, 2, 2, 3, 4),
    (3, 2, 2, 4, 4, 3),
    (1, 1, 3, 2, 2, 2),
    (5, 4, 2, 8, 3, 3),  # kernel wider than the input: most taps fall outside
    (3, 1, 1, 3, 4, 5),
])
def test_carafe_matches_naive_loop(k, groups, s, c, h, w):
    g = torch.Generator().manual_seed(k * 100 + groups * 10 + s)
    feat = torch.randn(2, c, h, w, generator=g, dtype=torch.float64)
    masks = torch.randn(2, k * k * groups, h * s, w * s, generator=g, dtype=torch.float64)
    ours = carafe(feat, masks, k, groups, s)
    assert ours.shape == (2, c, h * s, w * s)
    torch.testing.assert_close(ours, naive_carafe(feat, masks, k, groups, s))
    torch.testing.assert_close(CARAFE(k, groups, s)(feat, masks), ours)


def test_carafe_gradients_match_naive_loop():
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(1, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    masks = torch.randn(1, 18, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(1, 4, 6, 6, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((carafe(feat, masks, 3, 2, 2) * weights).sum(), (feat, masks))
    ref = torch.autograd.grad((naive_carafe(feat, masks, 3, 2, 2) * weights).sum(),
                              (feat, masks))
    for ours, theirs in zip(grads, ref):
        torch.testing.assert_close(ours, theirs)


def test_uniform_kernel_is_box_filter_then_nearest_upsample():
    """Hand-checkable: k=3 kernels of 1/9 average the 3x3 zero-padded neighbourhood."""
    feat = torch.arange(1., 5.).view(1, 1, 2, 2)  # [[1, 2], [3, 4]]
    masks = torch.full((1, 9, 4, 4), 1 / 9)
    out = carafe(feat, masks, 3, 1, 2)
    # Every 3x3 window around a pixel of a 2x2 map holds all four values: sum 10.
    torch.testing.assert_close(out, torch.full((1, 1, 4, 4), 10 / 9))
    # A kernel picking only the centre tap is nearest upsampling.
    centre = torch.zeros(1, 9, 4, 4)
    centre[:, 4] = 1
    torch.testing.assert_close(carafe(feat, centre, 3, 1, 2),
                               F.interpolate(feat, scale_factor=2, mode='nearest'))


def test_carafe_bad_inputs_are_assertion_errors():
    feat = torch.rand(1, 4, 3, 3)
    with pytest.raises(AssertionError, match='masks must have shape'):
        carafe(feat, torch.rand(1, 25, 5, 6), 5, 1, 2)
    with pytest.raises(AssertionError, match='divisible by group_size'):
        carafe(torch.rand(1, 3, 3, 3), torch.rand(1, 18, 6, 6), 3, 2, 2)
    with pytest.raises(AssertionError, match='kernel_size must be odd'):
        carafe(feat, torch.rand(1, 16, 6, 6), 4, 1, 2)
    with pytest.raises(AssertionError, match='must be an int'):
        CARAFE(5.0, 1, 2)


def test_carafe_pack_keys_shapes_and_forward():
    pack = CARAFEPack(16, 2, up_kernel=5, up_group=1, encoder_kernel=3, compressed_channels=8)
    shapes = {k: tuple(v.shape) for k, v in pack.state_dict().items()}
    assert shapes == {
        'channel_compressor.weight': (8, 16, 1, 1),
        'channel_compressor.bias': (8,),
        'content_encoder.weight': (5 * 5 * 1 * 2 * 2, 8, 3, 3),
        'content_encoder.bias': (100,),
    }
    x = torch.rand(2, 16, 5, 7)
    out = pack(x)
    assert out.shape == (2, 16, 10, 14)
    # Recompute with the documented steps: pixel shuffle, softmax over the 25 taps, carafe.
    raw = pack.content_encoder(pack.channel_compressor(x))
    kernels = F.pixel_shuffle(raw, 2).softmax(dim=1)
    torch.testing.assert_close(out, carafe(x, kernels, 5, 1, 2))


def test_carafe_pack_grouped_normalizer_and_defaults():
    pack = CARAFEPack(8, 2, up_group=2, compressed_channels=4)
    assert (pack.up_kernel, pack.encoder_kernel, pack.encoder_dilation) == (5, 3, 1)
    assert CARAFEPack(8, 2).compressed_channels == 64
    mask = pack.kernel_normalizer(torch.randn(1, 25 * 2 * 4, 3, 3))
    assert mask.shape == (1, 50, 6, 6)
    sums = mask.view(1, 2, 25, 6, 6).sum(dim=2)  # each group's kernel sums to 1
    torch.testing.assert_close(sums, torch.ones_like(sums))
    # Dilated encoder keeps the size.
    dilated = CARAFEPack(8, 2, encoder_kernel=3, encoder_dilation=2, compressed_channels=4)
    assert dilated.content_encoder.padding == (2, 2)
    assert dilated(torch.rand(1, 8, 4, 4)).shape == (1, 8, 8, 8)


def test_carafe_pack_init():
    pack = CARAFEPack(16, 2, compressed_channels=8)
    torch.nn.init.constant_(pack.content_encoder.weight, 5.0)
    torch.nn.init.constant_(pack.channel_compressor.bias, 5.0)
    pack.init_weights()
    assert pack.content_encoder.weight.std() < 0.01  # normal, std 0.001
    assert torch.count_nonzero(pack.content_encoder.bias) == 0
    assert torch.count_nonzero(pack.channel_compressor.bias) == 0
    fan = 16 + 8
    assert pack.channel_compressor.weight.abs().max() <= (6 / fan) ** 0.5


def test_registered_as_carafe_for_build_upsample_layer():
    assert MODELS.get('carafe') is CARAFEPack
    assert MMENGINE_MODELS.get('carafe') is CARAFEPack
    up = build_upsample_layer(dict(type='carafe', channels=4, scale_factor=2,
                                   compressed_channels=4))
    assert isinstance(up, CARAFEPack)
    assert up(torch.rand(1, 4, 3, 3)).shape == (1, 4, 6, 6)
