"""PVT / PVTv2 backbones: mmdetection 3.3's registered names, defaults and state_dict keys, the
spatial-reduction attention and MixFFN against straightforward references, the whole backbone
against an independent forward written on the official (whai362/PVT) key layout through
``pvt_convert``, loading an official checkpoint through ``init_cfg``, stride-4..32 maps at
768x768, and mmdetection's argument errors."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from helpers_pvt_effnet_keys import pvt
from helpers_state_dict import shapes_of

from mmdet_lite.models.backbones.pvt import (AbsolutePositionEmbedding, MixFFN,
                                             PyramidVisionTransformer,
                                             PyramidVisionTransformerV2,
                                             SpatialReductionAttention, pvt_convert)
from mmdet_lite.registry import MODELS

EPS = 1e-6  # mmdetection's PVT norm_cfg: LN with eps 1e-6 everywhere


def tiny(v2: bool, **kwargs):
    """A 4-stage PVT with 8 channels per head and one layer per stage."""
    cls = PyramidVisionTransformerV2 if v2 else PyramidVisionTransformer
    cfg = dict(embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
               mlp_ratios=[2, 2, 2, 2], drop_path_rate=0.)
    cfg.update(kwargs)
    return cls(**cfg)


# ---------------------------------------------------------------- registry and defaults


def test_both_versions_are_registered_under_mmdetections_names():
    assert MODELS.get('PyramidVisionTransformer') is PyramidVisionTransformer
    assert MODELS.get('PyramidVisionTransformerV2') is PyramidVisionTransformerV2


def test_constructor_defaults_are_mmdetections():
    defaults = {name: p.default
                for name, p in inspect.signature(PyramidVisionTransformer).parameters.items()}
    assert defaults == dict(
        pretrain_img_size=224, in_channels=3, embed_dims=64, num_stages=4,
        num_layers=[3, 4, 6, 3], num_heads=[1, 2, 5, 8], patch_sizes=[4, 2, 2, 2],
        strides=[4, 2, 2, 2], paddings=[0, 0, 0, 0], sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3), mlp_ratios=[8, 8, 4, 4], qkv_bias=True, drop_rate=0.,
        attn_drop_rate=0., drop_path_rate=0.1, use_abs_pos_embed=True,
        norm_after_stage=False, use_conv_ffn=False, act_cfg=dict(type='GELU'),
        norm_cfg=dict(type='LN', eps=1e-6), pretrained=None, convert_weights=True,
        init_cfg=None)
    sra = inspect.signature(SpatialReductionAttention).parameters
    assert {n: p.default for n, p in sra.items() if n not in ('embed_dims', 'num_heads')} == \
        dict(attn_drop=0., proj_drop=0., dropout_layer=None, batch_first=True, qkv_bias=True,
             norm_cfg=dict(type='LN'), sr_ratio=1, init_cfg=None)
    ffn = inspect.signature(MixFFN).parameters
    assert {n: p.default for n, p in ffn.items()
            if n not in ('embed_dims', 'feedforward_channels')} == \
        dict(act_cfg=dict(type='GELU'), ffn_drop=0., dropout_layer=None, use_conv=False,
             init_cfg=None)


# ---------------------------------------------------------------- state_dict keys


def test_pvt_tiny_state_dict_is_mmdetections():
    model = PyramidVisionTransformer(num_layers=[2, 2, 2, 2])
    expected = pvt('', embed_dims=64, num_layers=(2, 2, 2, 2))
    assert shapes_of(model) == expected
    # Spot checks of the definition: 224 // 4 = 56 -> 3136 positions in stage 1, 7 x 7 in
    # stage 4; stage 4 (sr_ratio 1) has no reduction conv; fc2 is entry 3 without dwconv.
    assert expected['layers.0.1.0.pos_embed'] == (1, 3136, 64)
    assert expected['layers.3.1.0.pos_embed'] == (1, 49, 512)
    assert expected['layers.0.1.1.attn.sr.weight'] == (64, 64, 8, 8)
    assert 'layers.3.1.1.attn.sr.weight' not in expected
    assert expected['layers.2.1.2.ffn.layers.3.weight'] == (320, 1280, 1, 1)
    # 4 patch embeddings x 4, 4 tables, 2 layers x (12 + 4 for sr) in stages 1-3, x 12 in 4.
    assert len(expected) == 16 + 4 + 3 * 2 * 16 + 2 * 12


def test_pvt_v2_b0_state_dict_is_mmdetections():
    model = PyramidVisionTransformerV2(embed_dims=32, num_layers=[2, 2, 2, 2])
    expected = pvt('', embed_dims=32, num_layers=(2, 2, 2, 2), v2=True)
    assert shapes_of(model) == expected
    assert expected['layers.0.0.projection.weight'] == (32, 3, 7, 7)
    assert expected['layers.1.0.projection.weight'] == (64, 32, 3, 3)
    assert expected['layers.0.1.0.ffn.layers.1.weight'] == (256, 1, 3, 3)
    assert expected['layers.3.2.weight'] == (256, )
    assert not any('pos_embed' in k for k in expected)


def test_v2_fixes_its_five_arguments():
    with pytest.raises(TypeError):
        PyramidVisionTransformerV2(patch_sizes=[4, 2, 2, 2])
    with pytest.raises(TypeError):
        PyramidVisionTransformerV2(use_abs_pos_embed=True)


# ---------------------------------------------------------------- layers vs references


def reference_sra(module: SpatialReductionAttention, x, hw, identity):
    """Queries from x; keys/values from LN(conv_sr(x)); scaled_dot_product_attention."""
    batch, length, dims = x.shape
    heads = module.num_heads
    kv_src = x
    if module.sr_ratio > 1:
        grid = x.transpose(1, 2).reshape(batch, dims, *hw)
        grid = F.conv2d(grid, module.sr.weight, module.sr.bias, stride=module.sr_ratio)
        kv_src = F.layer_norm(grid.flatten(2).transpose(1, 2), (dims, ), module.norm.weight,
                              module.norm.bias, module.norm.eps)
    w_q, w_k, w_v = module.attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = module.attn.in_proj_bias.chunk(3)

    def split(t):  # [B, N, C] -> [B, heads, N, C / heads]
        return t.reshape(batch, -1, heads, dims // heads).transpose(1, 2)

    q, k, v = split(x @ w_q.T + b_q), split(kv_src @ w_k.T + b_k), split(kv_src @ w_v.T + b_v)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, dims)
    return identity + out @ module.attn.out_proj.weight.T + module.attn.out_proj.bias


@pytest.mark.parametrize('sr_ratio, hw', [(1, (5, 6)), (2, (6, 8)), (4, (8, 8)), (2, (7, 5))])
def test_spatial_reduction_attention_matches_sdpa_on_reduced_keys(sr_ratio, hw):
    torch.manual_seed(0)
    module = SpatialReductionAttention(16, 4, sr_ratio=sr_ratio).eval()
    if sr_ratio > 1:
        torch.nn.init.normal_(module.norm.weight, 1., 0.2)
        torch.nn.init.normal_(module.norm.bias, 0., 0.2)
    torch.nn.init.normal_(module.attn.in_proj_bias, 0., 0.2)
    x = torch.randn(2, hw[0] * hw[1], 16)
    identity = torch.randn_like(x)
    out = module(x, hw, identity=identity)
    torch.testing.assert_close(out, reference_sra(module, x, hw, identity), rtol=1e-5,
                               atol=1e-5)
    # Without an identity the input is the residual.
    torch.testing.assert_close(module(x, hw), reference_sra(module, x, hw, x), rtol=1e-5,
                               atol=1e-5)
    if sr_ratio > 1:  # keys come from floor(H / sr) x floor(W / sr) cells
        assert module.sr(torch.zeros(1, 16, *hw)).shape[-2:] == (hw[0] // sr_ratio,
                                                                 hw[1] // sr_ratio)


@pytest.mark.parametrize('use_conv', [False, True])
def test_mix_ffn_matches_a_token_reference(use_conv):
    torch.manual_seed(0)
    ffn = MixFFN(8, 24, use_conv=use_conv).eval()
    hw = (3, 5)
    x = torch.randn(2, 15, 8)
    fc1, fc2 = ffn.layers[0], ffn.layers[4 if use_conv else 3]
    hidden = x @ fc1.weight.flatten(1).T + fc1.bias  # a 1x1 conv is a Linear on tokens
    if use_conv:
        dw = ffn.layers[1]
        grid = hidden.transpose(1, 2).reshape(2, 24, *hw)
        hidden = F.conv2d(grid, dw.weight, dw.bias, padding=1, groups=24).flatten(2)
        hidden = hidden.transpose(1, 2)
    expected = x + F.gelu(hidden) @ fc2.weight.flatten(1).T + fc2.bias
    torch.testing.assert_close(ffn(x, hw), expected, rtol=1e-5, atol=1e-5)
    identity = torch.randn_like(x)
    torch.testing.assert_close(ffn(x, hw, identity=identity), expected - x + identity,
                               rtol=1e-5, atol=1e-5)


def test_absolute_position_embedding_resizes_bilinearly():
    torch.manual_seed(0)
    embed = AbsolutePositionEmbedding((4, 6), 3)
    embed.init_weights()
    assert embed.pos_embed.shape == (1, 24, 3) and embed.pos_embed.std() > 0
    x = torch.randn(2, 24, 3)
    torch.testing.assert_close(embed(x, (4, 6)), x + embed.pos_embed)  # same grid: as is
    table = embed.pos_embed.reshape(1, 4, 6, 3).permute(0, 3, 1, 2)
    resized = F.interpolate(table, size=(8, 3), mode='bilinear', align_corners=False)
    x = torch.randn(2, 24, 3)
    torch.testing.assert_close(embed(x, (8, 3)), x + resized.flatten(2).transpose(1, 2))
    # A leading class-token row is ignored: only the last 4 x 6 entries are the table.
    with_cls = torch.cat([torch.full((1, 1, 3), 9.), embed.pos_embed], dim=1)
    torch.testing.assert_close(embed.resize_pos_embed(with_cls, (4, 6)), embed.pos_embed)
    assert AbsolutePositionEmbedding(5, 2).pos_embed.shape == (1, 25, 2)
    with pytest.raises(AssertionError):
        AbsolutePositionEmbedding((1, 2, 3), 2)


# ---------------------------------------------------------------- official layout


def official_state_dict(v2: bool, embed_dims=8, heads=(1, 2, 2, 4), depths=(1, 1, 1, 1),
                        mlp_ratios=(2, 2, 2, 2), sr_ratios=(8, 4, 2, 1), pretrain=224):
    """Random weights under the official whai362/PVT (v1 ``pvt.py`` / ``pvt_v2.py``) names."""
    gen = torch.Generator().manual_seed(1)

    def rand(*shape):
        return torch.randn(*shape, generator=gen) * 0.2

    sd = {}
    in_c, side = 3, pretrain
    for s, (h, depth, ratio, sr) in enumerate(zip(heads, depths, mlp_ratios, sr_ratios), 1):
        dims, k = embed_dims * h, (7 if s == 1 else 3) if v2 else (4 if s == 1 else 2)
        sd[f'patch_embed{s}.proj.weight'] = rand(dims, in_c, k, k)
        sd[f'patch_embed{s}.proj.bias'] = rand(dims)
        sd[f'patch_embed{s}.norm.weight'] = 1 + rand(dims)
        sd[f'patch_embed{s}.norm.bias'] = rand(dims)
        if not v2:
            side //= k
            sd[f'pos_embed{s}'] = rand(1, side * side + (s == 4), dims)  # + cls row
        for j in range(depth):
            p = f'block{s}.{j}'
            for norm in ('norm1', 'norm2'):
                sd[f'{p}.{norm}.weight'], sd[f'{p}.{norm}.bias'] = 1 + rand(dims), rand(dims)
            sd[f'{p}.attn.q.weight'], sd[f'{p}.attn.q.bias'] = rand(dims, dims), rand(dims)
            sd[f'{p}.attn.kv.weight'] = rand(2 * dims, dims)
            sd[f'{p}.attn.kv.bias'] = rand(2 * dims)
            sd[f'{p}.attn.proj.weight'], sd[f'{p}.attn.proj.bias'] = rand(dims, dims), rand(dims)
            if sr > 1:
                sd[f'{p}.attn.sr.weight'] = rand(dims, dims, sr, sr)
                sd[f'{p}.attn.sr.bias'] = rand(dims)
                sd[f'{p}.attn.norm.weight'] = 1 + rand(dims)
                sd[f'{p}.attn.norm.bias'] = rand(dims)
            hidden = dims * ratio
            sd[f'{p}.mlp.fc1.weight'], sd[f'{p}.mlp.fc1.bias'] = rand(hidden, dims), rand(hidden)
            if v2:
                sd[f'{p}.mlp.dwconv.dwconv.weight'] = rand(hidden, 1, 3, 3)
                sd[f'{p}.mlp.dwconv.dwconv.bias'] = rand(hidden)
            sd[f'{p}.mlp.fc2.weight'], sd[f'{p}.mlp.fc2.bias'] = rand(dims, hidden), rand(dims)
        if v2:
            sd[f'norm{s}.weight'], sd[f'norm{s}.bias'] = 1 + rand(dims), rand(dims)
        in_c = dims
    if not v2:
        sd['norm.weight'], sd['norm.bias'] = 1 + rand(in_c), rand(in_c)
        sd['cls_token'] = rand(1, 1, in_c)
    sd['head.weight'], sd['head.bias'] = rand(10, in_c), rand(10)
    return sd


def official_forward(sd, x, v2, heads=(1, 2, 2, 4), depths=(1, 1, 1, 1), sr_ratios=(8, 4, 2, 1)):
    """The stage maps of the official PVT computation, read off the official key names.

    Attention is written out (softmax(q k^T / sqrt(d)) v); v1's stage-4 class token is not
    used (mmdetection's detection backbone has none: only the grid rows of the table).
    """
    def ln(t, name):
        return F.layer_norm(t, t.shape[-1:], sd[f'{name}.weight'], sd[f'{name}.bias'], EPS)

    outs = []
    batch = x.shape[0]
    for s in range(1, 5):
        stride = 4 if s == 1 else 2
        padding = (3 if s == 1 else 1) if v2 else 0
        x = F.conv2d(x, sd[f'patch_embed{s}.proj.weight'], sd[f'patch_embed{s}.proj.bias'],
                     stride=stride, padding=padding)
        height, width = x.shape[-2:]
        dims = x.shape[1]
        x = ln(x.flatten(2).transpose(1, 2), f'patch_embed{s}.norm')
        if not v2:
            table = sd[f'pos_embed{s}']
            if s == 4:
                table = table[:, 1:]
            side = int(math.isqrt(table.shape[1]))
            table = table.reshape(1, side, side, dims).permute(0, 3, 1, 2)
            table = F.interpolate(table, size=(height, width), mode='bilinear')
            x = x + table.flatten(2).transpose(1, 2)
        num_heads, sr = heads[s - 1], sr_ratios[s - 1]
        for j in range(depths[s - 1]):
            p = f'block{s}.{j}'
            h = ln(x, f'{p}.norm1')
            q = h @ sd[f'{p}.attn.q.weight'].T + sd[f'{p}.attn.q.bias']
            src = h
            if sr > 1:
                grid = h.transpose(1, 2).reshape(batch, dims, height, width)
                grid = F.conv2d(grid, sd[f'{p}.attn.sr.weight'], sd[f'{p}.attn.sr.bias'],
                                stride=sr)
                src = ln(grid.flatten(2).transpose(1, 2), f'{p}.attn.norm')
            k, v = (src @ sd[f'{p}.attn.kv.weight'].T + sd[f'{p}.attn.kv.bias']).chunk(2, -1)
            q, k, v = (t.reshape(batch, -1, num_heads, dims // num_heads).transpose(1, 2)
                       for t in (q, k, v))
            weights = (q @ k.transpose(-2, -1) / math.sqrt(dims // num_heads)).softmax(-1)
            attn = (weights @ v).transpose(1, 2).reshape(batch, -1, dims)
            x = x + attn @ sd[f'{p}.attn.proj.weight'].T + sd[f'{p}.attn.proj.bias']
            h = ln(x, f'{p}.norm2') @ sd[f'{p}.mlp.fc1.weight'].T + sd[f'{p}.mlp.fc1.bias']
            if v2:
                grid = h.transpose(1, 2).reshape(batch, -1, height, width)
                grid = F.conv2d(grid, sd[f'{p}.mlp.dwconv.dwconv.weight'],
                                sd[f'{p}.mlp.dwconv.dwconv.bias'], padding=1,
                                groups=grid.shape[1])
                h = grid.flatten(2).transpose(1, 2)
            x = x + F.gelu(h) @ sd[f'{p}.mlp.fc2.weight'].T + sd[f'{p}.mlp.fc2.bias']
        if v2:
            x = ln(x, f'norm{s}')
        x = x.transpose(1, 2).reshape(batch, dims, height, width)
        outs.append(x)
    return outs


@pytest.mark.parametrize('v2, size', [(False, 224), (False, 160), (True, 224), (True, 90)])
def test_converted_official_weights_reproduce_the_official_computation(v2, size):
    sd = official_state_dict(v2)
    model = tiny(v2).eval()
    # Every backbone key is produced, nothing else: strict loading.
    model.load_state_dict(pvt_convert(sd), strict=True)
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        outs = model(x)
    expected = official_forward(sd, x, v2)
    assert len(outs) == 4
    for out, ref in zip(outs, expected):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_pvt_convert_renames_concatenates_and_drops_by_hand():
    sd = official_state_dict(False, heads=(1, 1, 1, 1), depths=(1, 2, 1, 1))
    converted = pvt_convert(sd)
    # v1: block j of a stage is entry j + 1 (entry 0 is the position embedding).
    q, kv = sd['block2.1.attn.q.weight'], sd['block2.1.attn.kv.weight']
    torch.testing.assert_close(converted['layers.1.1.2.attn.attn.in_proj_weight'],
                               torch.cat([q, kv]))
    torch.testing.assert_close(converted['layers.1.1.2.attn.attn.in_proj_bias'],
                               torch.cat([sd['block2.1.attn.q.bias'], sd['block2.1.attn.kv.bias']]))
    assert converted['layers.0.1.1.attn.attn.out_proj.weight'] is sd['block1.0.attn.proj.weight']
    assert converted['layers.0.1.1.ffn.layers.0.weight'].shape == (16, 8, 1, 1)
    torch.testing.assert_close(converted['layers.0.1.1.ffn.layers.3.weight'].flatten(1),
                               sd['block1.0.mlp.fc2.weight'])
    assert converted['layers.0.0.projection.weight'] is sd['patch_embed1.proj.weight']
    assert converted['layers.0.0.norm.bias'] is sd['patch_embed1.norm.bias']
    assert converted['layers.0.1.1.attn.sr.weight'] is sd['block1.0.attn.sr.weight']
    assert converted['layers.0.1.1.attn.norm.weight'] is sd['block1.0.attn.norm.weight']
    assert converted['layers.0.1.1.norm2.weight'] is sd['block1.0.norm2.weight']
    # 224 // 32 = 7: the stage-4 table has 1 + 49 rows and loses the class-token row.
    assert sd['pos_embed4'].shape == (1, 50, 8)
    torch.testing.assert_close(converted['layers.3.1.0.pos_embed'], sd['pos_embed4'][:, 1:])
    assert converted['layers.0.1.0.pos_embed'] is sd['pos_embed1']
    # The classifier parts are dropped; no official name survives.
    assert not any(k.startswith(('head', 'norm', 'cls_token', 'block', 'patch_embed',
                                 'pos_embed')) for k in converted)
    assert not any('.kv.' in k or '.q.' in k for k in converted)


def test_pvt_convert_v2_uses_the_dwconv_slot_and_stage_norms():
    sd = official_state_dict(True)
    converted = pvt_convert(sd)
    assert converted['layers.2.1.0.ffn.layers.1.weight'] is sd['block3.0.mlp.dwconv.dwconv.weight']
    torch.testing.assert_close(converted['layers.2.1.0.ffn.layers.4.weight'].flatten(1),
                               sd['block3.0.mlp.fc2.weight'])
    assert converted['layers.3.2.weight'] is sd['norm4.weight']
    assert 'layers.3.1.0.ffn.layers.3.weight' not in converted
    # Keys it does not know pass through unchanged.
    unknown = torch.ones(1)
    assert pvt_convert({'foo.bar': unknown}) == {'foo.bar': unknown}


def test_init_cfg_checkpoint_loads_official_weights(tmp_path):
    sd = official_state_dict(True)
    path = str(tmp_path / 'pvt_v2_official.pth')
    torch.save({'model': sd}, path)  # official checkpoints keep the weights under 'model'
    model = tiny(True, init_cfg=dict(checkpoint=path))
    model.init_weights()
    own = model.state_dict()
    for key, value in pvt_convert(sd).items():
        torch.testing.assert_close(own[key], value, msg=key)


def test_init_from_scratch_follows_the_official_rules():
    torch.manual_seed(0)
    model = PyramidVisionTransformer(num_layers=[1, 1, 1, 1])
    model.init_weights()
    sr = model.layers[0][1][1].attn.sr  # 64 -> 64, 8 x 8: fan_out 4096
    assert abs(sr.weight.std().item() - math.sqrt(2 / 4096)) < 0.1 * math.sqrt(2 / 4096)
    assert torch.all(sr.bias == 0)
    norm = model.layers[0][1][1].norm1
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    out_proj = model.layers[0][1][1].attn.attn.out_proj
    assert 0.015 < out_proj.weight.std().item() < 0.025 and torch.all(out_proj.bias == 0)
    pos = model.layers[0][1][0].pos_embed
    assert 0.015 < pos.std().item() < 0.025


# ---------------------------------------------------------------- shapes and errors


@pytest.mark.slow
@pytest.mark.parametrize('v2, embed_dims, widths', [
    (False, 64, (64, 128, 320, 512)), (True, 32, (32, 64, 160, 256))])
def test_768_input_gives_stride_4_to_32_maps(v2, embed_dims, widths):
    cls = PyramidVisionTransformerV2 if v2 else PyramidVisionTransformer
    model = cls(embed_dims=embed_dims, num_layers=[2, 2, 2, 2]).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 768, 768))
    assert [tuple(o.shape) for o in outs] == [(1, c, 768 // s, 768 // s)
                                              for c, s in zip(widths, (4, 8, 16, 32))]


def test_odd_sizes_and_out_indices():
    x = torch.randn(1, 3, 65, 70)
    with torch.no_grad():
        # v1: non-overlapping patches floor the grid; v2's padded convs round up.
        v1 = tiny(False, pretrain_img_size=64)(x)
        v2 = tiny(True, out_indices=(1, 3))(x)
    assert [o.shape[-2:] for o in v1] == [(16, 17), (8, 8), (4, 4), (2, 2)]
    assert [tuple(o.shape) for o in v2] == [(1, 16, 9, 9), (1, 32, 3, 3)]


def test_mmdetections_asserts_raise_assertion_errors():
    with pytest.raises(AssertionError):
        tiny(False, num_heads=[1, 2, 2])  # one entry per stage
    with pytest.raises(AssertionError):
        tiny(False, out_indices=(4, ))
    with pytest.raises(AssertionError):
        tiny(False, init_cfg=dict(checkpoint='a.pth'), pretrained='b.pth')
    with pytest.raises(AssertionError):
        tiny(False, pretrain_img_size=(224, 224, 3))
    with pytest.raises(TypeError):
        tiny(False, pretrained=1)
    model = tiny(False, init_cfg=dict(type='Pretrained'))
    with pytest.raises(AssertionError):
        model.init_weights()  # a Pretrained init_cfg without a checkpoint
    with pytest.warns(UserWarning, match='pretrained is deprecated'):
        model = tiny(False, pretrained='ckpt.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='ckpt.pth')
