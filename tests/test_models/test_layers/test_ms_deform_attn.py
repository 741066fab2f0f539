"""MultiScaleDeformableAttention: against a loop-and-bilinear reference, gradients, mmcv's
init, keys and registration, masks, reference boxes, torch.compile and torch.export."""
import math
import warnings

import pytest
import torch
from helpers_state_dict import shapes_of
from mmengine.registry import MODELS as MMENGINE_MODELS

from mmdet_lite.models.layers.transformer import (MultiScaleDeformableAttention,
                                                  multi_scale_deformable_attn_pytorch)
from mmdet_lite.registry import MODELS

SHAPES = ((5, 7), (3, 4))  # (h, w) per level
NUM_KEYS = sum(h * w for h, w in SHAPES)


def reference_msda(value, shapes, locations, weights):
    """Loops over batch, queries, heads, levels and points; explicit bilinear sampling with
    align_corners=False (pixel i covers [i, i+1) / size) and zeros outside the map."""
    batch, _, heads, dims = value.shape
    _, queries, _, levels, points, _ = locations.shape
    out = torch.zeros(batch, queries, heads, dims, dtype=value.dtype)
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    for b in range(batch):
        for q in range(queries):
            for m in range(heads):
                for lv, (h, w) in enumerate(shapes):
                    for p in range(points):
                        x = locations[b, q, m, lv, p, 0].item() * w - 0.5
                        y = locations[b, q, m, lv, p, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(dims, dtype=value.dtype)
                        for yy, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
                            for xx, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
                                if 0 <= yy < h and 0 <= xx < w:
                                    sample += wy * wx * value[b, starts[lv] + yy * w + xx, m]
                        out[b, q, m] += weights[b, q, m, lv, p] * sample
    return out.reshape(batch, queries, heads * dims)


def random_inputs(dtype=torch.float32, batch=2, queries=5, heads=2, dims=3, points=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, NUM_KEYS, heads, dims, generator=gen, dtype=dtype)
    # some points fall outside [0, 1]: the zero padding is exercised too
    locations = torch.rand(batch, queries, heads, len(SHAPES), points, 2, generator=gen,
                           dtype=dtype) * 1.2 - 0.1
    weights = torch.rand(batch, queries, heads, len(SHAPES), points, generator=gen, dtype=dtype)
    return value, locations, weights


@pytest.mark.parametrize('as_tensor', [True, False])
def test_core_equals_loop_reference(as_tensor):
    value, locations, weights = random_inputs()
    shapes = torch.tensor(SHAPES) if as_tensor else SHAPES
    out = multi_scale_deformable_attn_pytorch(value, shapes, locations, weights)
    assert out.shape == (2, 5, 6)
    torch.testing.assert_close(out, reference_msda(value, SHAPES, locations, weights),
                               rtol=1e-5, atol=1e-5)


def test_core_gradcheck_fp64():
    value, locations, weights = random_inputs(torch.float64, batch=1, queries=2, heads=2,
                                              dims=2, points=2, seed=3)
    inputs = tuple(t.requires_grad_() for t in (value, locations, weights))
    assert torch.autograd.gradcheck(
        lambda v, loc, wt: multi_scale_deformable_attn_pytorch(v, SHAPES, loc, wt), inputs,
        eps=1e-6, atol=1e-5)


def test_state_dict_keys_and_shapes():
    attn = MultiScaleDeformableAttention()
    assert shapes_of(attn) == {
        'sampling_offsets.weight': (8 * 4 * 4 * 2, 256), 'sampling_offsets.bias': (256, ),
        'attention_weights.weight': (8 * 4 * 4, 256), 'attention_weights.bias': (128, ),
        'value_proj.weight': (256, 256), 'value_proj.bias': (256, ),
        'output_proj.weight': (256, 256), 'output_proj.bias': (256, ),
    }
    half = MultiScaleDeformableAttention(value_proj_ratio=0.5, num_levels=1)
    assert shapes_of(half)['value_proj.weight'] == (128, 256)
    assert shapes_of(half)['output_proj.weight'] == (256, 128)
    assert shapes_of(half)['sampling_offsets.weight'] == (8 * 1 * 4 * 2, 256)


def test_defaults_match_mmcv():
    attn = MultiScaleDeformableAttention()
    assert (attn.embed_dims, attn.num_heads, attn.num_levels, attn.num_points) == (256, 8, 4, 4)
    assert attn.im2col_step == 64 and attn.dropout.p == 0.1
    assert attn.batch_first is False and attn.norm_cfg is None and attn.init_cfg is None


def test_init_weights_is_mmcvs():
    attn = MultiScaleDeformableAttention()
    torch.nn.init.normal_(attn.sampling_offsets.bias)
    attn.init_weights()
    # head k points along angle 45*k degrees, scaled so that max(|x|, |y|) = 1
    directions = [(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)]
    expected = torch.tensor([[[[dx * (i + 1), dy * (i + 1)] for i in range(4)]] * 4
                             for dx, dy in directions], dtype=torch.float32)  # [8, 4, 4, 2]
    torch.testing.assert_close(attn.sampling_offsets.bias.view(8, 4, 4, 2), expected,
                               atol=1e-5, rtol=0)  # float32 cos/sin
    assert torch.all(attn.sampling_offsets.weight == 0)
    assert torch.all(attn.attention_weights.weight == 0)
    assert torch.all(attn.attention_weights.bias == 0)
    bound = math.sqrt(6 / (256 + 256))  # xavier uniform, gain 1
    for proj in (attn.value_proj, attn.output_proj):
        assert torch.all(proj.bias == 0)
        assert proj.weight.abs().max() <= bound
        assert proj.weight.std() > 0.8 * bound / math.sqrt(3)  # uniform std = bound / sqrt(3)


def test_registered_in_ours_and_in_mmengines_root():
    cfg = dict(type='MultiScaleDeformableAttention', embed_dims=32, num_levels=2)
    assert isinstance(MODELS.build(cfg), MultiScaleDeformableAttention)
    assert isinstance(MMENGINE_MODELS.build(cfg), MultiScaleDeformableAttention)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # mmcv-lite warns that mmcv.ops is missing
        from mmcv.cnn.bricks.transformer import build_attention
    built = build_attention(cfg)
    assert isinstance(built, MultiScaleDeformableAttention) and built.num_levels == 2


def identity_attention(levels=1, points=1, **kwargs):
    """One head, C=2, identity projections, no dropout: output = sampled (x, y) value."""
    attn = MultiScaleDeformableAttention(embed_dims=2, num_heads=1, num_levels=levels,
                                         num_points=points, dropout=0., batch_first=True,
                                         **kwargs)
    with torch.no_grad():
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(2))
            proj.bias.zero_()
        attn.sampling_offsets.bias.zero_()
    return attn


def coordinate_value(h, w):
    """[1, h*w, 2]: channel 0 is the column index, channel 1 the row index."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing='ij')
    return torch.stack([xs, ys], -1).view(1, h * w, 2)


def test_point_reference_moves_by_pixels():
    h, w = 6, 8
    attn = identity_attention()
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([1.5, -1.0]))  # pixels (x, y)
    ref = torch.tensor([[[[0.25, 0.5]]]])  # [1, 1, 1, 2]: pixel (2 - 0.5 + 0.5 ...)
    out = attn(torch.zeros(1, 1, 2), value=coordinate_value(h, w), identity=torch.zeros(1, 1, 2),
               reference_points=ref, spatial_shapes=torch.tensor([[h, w]]))
    # A bilinear sample of a linear ramp is exact: pixel x = loc * w - 0.5.
    expected = torch.tensor([0.25 * w - 0.5 + 1.5, 0.5 * h - 0.5 - 1.0])
    torch.testing.assert_close(out.view(2), expected)


def test_box_reference_scales_offsets_by_box_size():
    h, w = 10, 10
    attn = identity_attention(points=2)
    with torch.no_grad():
        # point 0 offset (2, 0) = num_points: reaches the box's right edge; point 1 (0, -1)
        attn.sampling_offsets.bias.copy_(torch.tensor([2., 0., 0., -1.]))
        attn.attention_weights.bias.copy_(torch.tensor([0., -1e4]))  # keep point 0 only
    ref = torch.tensor([[[[0.4, 0.5, 0.2, 0.4]]]])  # (cx, cy, w, h)
    kwargs = dict(value=coordinate_value(h, w), identity=torch.zeros(1, 1, 2),
                  reference_points=ref, spatial_shapes=[(h, w)])
    out = attn(torch.zeros(1, 1, 2), **kwargs)
    torch.testing.assert_close(out.view(2), torch.tensor([(0.4 + 0.1) * w - 0.5, 0.5 * h - 0.5]))
    with torch.no_grad():
        attn.attention_weights.bias.copy_(torch.tensor([-1e4, 0.]))  # point 1 only
    out = attn(torch.zeros(1, 1, 2), **kwargs)
    # offset -1 of 2 points: a quarter of the box height up
    torch.testing.assert_close(out.view(2),
                               torch.tensor([0.4 * w - 0.5, (0.5 - 0.1) * h - 0.5]))


def test_residual_query_pos_and_batch_first():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=2,
                                         num_points=2, dropout=0., batch_first=True).eval()
    query, query_pos = torch.randn(2, 3, 16), torch.randn(2, 3, 16)
    value = torch.randn(2, NUM_KEYS, 16)
    ref = torch.rand(2, 3, 2, 2)
    out = attn(query, value=value, query_pos=query_pos, reference_points=ref,
               spatial_shapes=torch.tensor(SHAPES))
    # Without query_pos, the same result needs query + query_pos as query and query as identity.
    same = attn(query + query_pos, value=value, identity=query, reference_points=ref,
                spatial_shapes=torch.tensor(SHAPES))
    torch.testing.assert_close(out, same)
    # batch_first=False: [N, B, C] in and out, same numbers.
    attn.batch_first = False
    seq = attn(query.transpose(0, 1), value=value.transpose(0, 1),
               query_pos=query_pos.transpose(0, 1), reference_points=ref,
               spatial_shapes=torch.tensor(SHAPES))
    torch.testing.assert_close(seq.transpose(0, 1), out)


def test_self_attention_uses_query_as_value():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dims=8, num_heads=2, num_levels=2, num_points=2,
                                         dropout=0., batch_first=True)
    query = torch.randn(1, NUM_KEYS, 8)
    ref = torch.rand(1, NUM_KEYS, 2, 2)
    kwargs = dict(reference_points=ref, spatial_shapes=SHAPES)
    torch.testing.assert_close(attn(query, **kwargs), attn(query, value=query, **kwargs))


def test_key_padding_mask_zeroes_masked_values():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dims=8, num_heads=2, num_levels=2, num_points=3,
                                         dropout=0., batch_first=True)
    torch.nn.init.uniform_(attn.value_proj.bias, 1., 2.)  # projected padding would be nonzero
    query, value = torch.randn(2, 4, 8), torch.randn(2, NUM_KEYS, 8)
    ref = torch.rand(2, 4, 2, 2)
    mask = torch.zeros(2, NUM_KEYS, dtype=torch.bool)
    mask[0, 20:] = True
    mask[1, ::3] = True
    kwargs = dict(reference_points=ref, spatial_shapes=SHAPES, key_padding_mask=mask)
    out = attn(query, value=value, **kwargs)
    changed = value.masked_fill(mask[..., None], 100.)
    torch.testing.assert_close(attn(query, value=changed, **kwargs), out)
    # and it equals sampling a projected value whose masked rows are 0
    projected = attn.value_proj(value).masked_fill(mask[..., None], 0.).view(2, NUM_KEYS, 2, 4)
    offsets = attn.sampling_offsets(query).view(2, 4, 2, 2, 3, 2)
    normalizer = torch.tensor([[w, h] for h, w in SHAPES], dtype=torch.float32)
    locations = ref[:, :, None, :, None, :] + offsets / normalizer[:, None, :]
    weights = attn.attention_weights(query).view(2, 4, 2, 6).softmax(-1).view(2, 4, 2, 2, 3)
    sampled = reference_msda(projected.detach(), SHAPES, locations.detach(), weights.detach())
    expected = query + attn.output_proj(sampled)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # unmasked: the padding values leak in
    assert not torch.allclose(attn(query, value=changed, reference_points=ref,
                                   spatial_shapes=SHAPES), out)


def test_dropout_only_in_training():
    attn = MultiScaleDeformableAttention(embed_dims=8, num_heads=2, num_levels=1, num_points=1,
                                         dropout=0.5, batch_first=True)
    query, ref = torch.randn(1, 6, 8), torch.rand(1, 6, 1, 2)
    kwargs = dict(reference_points=ref, spatial_shapes=[(2, 3)])
    attn.eval()
    assert torch.equal(attn(query, **kwargs), attn(query, **kwargs))
    attn.train()
    torch.manual_seed(0)
    assert not torch.equal(attn(query, **kwargs), attn.eval()(query, **kwargs))


def test_errors():
    with pytest.raises(ValueError, match='divisible by num_heads'):
        MultiScaleDeformableAttention(embed_dims=10, num_heads=4)
    attn = MultiScaleDeformableAttention(embed_dims=8, num_heads=2, num_levels=1,
                                         batch_first=True)
    query = torch.randn(1, 3, 8)
    with pytest.raises(AssertionError, match=r'cover 6 positions but value has 7'):
        attn(query, value=torch.randn(1, 7, 8), reference_points=torch.rand(1, 3, 1, 2),
             spatial_shapes=torch.tensor([[2, 3]]))
    with pytest.raises(ValueError, match='must be 2 or 4, got 3'):
        attn(query, value=torch.randn(1, 6, 8), reference_points=torch.rand(1, 3, 1, 3),
             spatial_shapes=[(2, 3)])


def test_residual_is_mmcvs_deprecated_name_for_identity():
    attn = identity_attention()
    value = coordinate_value(2, 2)
    kwargs = dict(value=value, reference_points=torch.full((1, 1, 1, 2), 0.25),
                  spatial_shapes=[(2, 2)])
    with pytest.warns(DeprecationWarning, match='identity'):
        out = attn(torch.zeros(1, 1, 2), residual=torch.ones(1, 1, 2), **kwargs)
    torch.testing.assert_close(out.view(2), torch.ones(2))  # sample at pixel (0, 0) is (0, 0)


def _small_attention():
    torch.manual_seed(0)
    return MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=2,
                                         num_points=2, dropout=0., batch_first=True).eval()


class _FixedSize(torch.nn.Module):
    """The attention with its level sizes fixed, as an exported model would hold them."""

    def __init__(self, attn):
        super().__init__()
        self.attn = attn

    def forward(self, query, value, ref):
        return self.attn(query, value=value, reference_points=ref, spatial_shapes=SHAPES)


def test_torch_export_at_fixed_size():
    model = _FixedSize(_small_attention())
    args = (torch.randn(2, 5, 16), torch.randn(2, NUM_KEYS, 16), torch.rand(2, 5, 2, 2))
    exported = torch.export.export(model, args)
    torch.testing.assert_close(exported.module()(*args), model(*args))
    other = (torch.randn(2, 5, 16), torch.randn(2, NUM_KEYS, 16), torch.rand(2, 5, 2, 4))
    with pytest.raises(Exception):
        exported.module()(*other)  # the box-reference variant is another graph


@pytest.mark.slow
def test_torch_compile_matches_eager():
    attn = _small_attention()
    compiled = torch.compile(attn)
    query, value = torch.randn(2, 5, 16), torch.randn(2, NUM_KEYS, 16)
    for ref in (torch.rand(2, 5, 2, 2), torch.rand(2, 5, 2, 4)):
        kwargs = dict(value=value, reference_points=ref, spatial_shapes=torch.tensor(SHAPES))
        torch.testing.assert_close(compiled(query, **kwargs), attn(query, **kwargs),
                                   rtol=1e-5, atol=1e-5)
