"""ConditionalAttention (hand-computed cases, nn.MultiheadAttention and a per-head reference)
and Conditional DETR's decoder: removed qpos_proj, reference points, spatial queries."""
import math

import pytest
import torch
import torch.nn.functional as F
from helpers_conditional_dab_keys import conditional_attention
from torch import nn

from mmdet_lite.models.layers.transformer import (ConditionalAttention,
                                                  ConditionalDetrTransformerDecoder,
                                                  coordinate_to_encoding)


def shapes_of(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def unprefixed(keys):
    return {k.split('.', 1)[1]: v for k, v in keys.items()}


def identity_attention(cross_attn):
    """One head, 2 channels, every projection the identity without bias."""
    attn = ConditionalAttention(embed_dims=2, num_heads=1, cross_attn=cross_attn)
    for module in attn.modules():
        if isinstance(module, nn.Linear):
            nn.init.eye_(module.weight)
            nn.init.zeros_(module.bias)
    return attn


def test_keys_and_defaults():
    self_attn = ConditionalAttention(embed_dims=16, num_heads=4)
    cross = ConditionalAttention(embed_dims=16, num_heads=4, cross_attn=True)
    assert shapes_of(self_attn) == unprefixed(conditional_attention('x', 16, cross=False))
    assert shapes_of(cross) == unprefixed(conditional_attention('x', 16, cross=True))
    assert 'qpos_sine_proj.weight' in shapes_of(cross)
    assert 'qpos_sine_proj.weight' not in shapes_of(self_attn)
    assert (self_attn.cross_attn, self_attn.keep_query_pos) == (False, False)
    assert torch.count_nonzero(cross.out_proj.bias) == 0  # zeroed at construction


def test_self_attention_by_hand():
    # q = k = v = x = I (2 tokens); scores I / sqrt(2); token 0 attends with weight
    # a = e^(1/sqrt 2) / (e^(1/sqrt 2) + 1) to itself, 1 - a to token 1; plus the residual.
    attn = identity_attention(cross_attn=False)
    x = torch.eye(2)[None]
    out = attn(x, x, query_pos=torch.zeros_like(x))
    a = math.exp(2**-0.5) / (math.exp(2**-0.5) + 1)
    expected = torch.tensor([[[1 + a, 1 - a], [1 - a, 1 + a]]])
    torch.testing.assert_close(out, expected)


def test_cross_attention_by_hand():
    # Query content [1, 0] at position [0, 1], spatial query [0, 1]; keys [1, 0] and [0, 1]
    # at positions [0, 0] and [0, 2]. First layer: positions are added to the contents ->
    # [q | s] = [1, 1, 0, 1]; keys [1, 0, 0, 0] and [0, 3, 0, 2]; scores (1, 5) / sqrt(4).
    attn = identity_attention(cross_attn=True)
    query = torch.tensor([[[1., 0.]]])
    memory = torch.eye(2)[None]
    inputs = dict(query_pos=torch.tensor([[[0., 1.]]]),
                  ref_sine_embed=torch.tensor([[[0., 1.]]]),
                  key_pos=torch.tensor([[[0., 0.], [0., 2.]]]))
    out = attn(query, memory, is_first=True, **inputs)
    w0 = math.exp(0.5) / (math.exp(0.5) + math.exp(2.5))
    torch.testing.assert_close(out, torch.tensor([[[1 + w0, 1 - w0]]]))
    # Later layers: contents only -> [1, 0, 0, 1]; keys [1, 0, 0, 0], [0, 1, 0, 2]; (1, 2) / 2.
    out = attn(query, memory, is_first=False, **inputs)
    w0 = math.exp(0.5) / (math.exp(0.5) + math.exp(1.0))
    torch.testing.assert_close(out, torch.tensor([[[1 + w0, 1 - w0]]]))
    # keep_query_pos: every layer adds the positions, as the first one does.
    attn.keep_query_pos = True
    out = attn(query, memory, is_first=False, **inputs)
    w0 = math.exp(0.5) / (math.exp(0.5) + math.exp(2.5))
    torch.testing.assert_close(out, torch.tensor([[[1 + w0, 1 - w0]]]))


@pytest.mark.filterwarnings('ignore:Support for mismatched key_padding_mask')
def test_self_attention_equals_nn_multihead_attention():
    # With qpos_proj = qcontent_proj (no bias) and kpos_proj = kcontent_proj, the queries and
    # keys are W (x + pos) + b: nn.MultiheadAttention on (x + pos, x + pos, x).
    dims, heads = 8, 4
    attn = ConditionalAttention(dims, heads)
    attn.qpos_proj.weight.data.copy_(attn.qcontent_proj.weight.data)
    attn.kpos_proj.weight.data.copy_(attn.kcontent_proj.weight.data)
    nn.init.zeros_(attn.qpos_proj.bias)
    nn.init.zeros_(attn.kpos_proj.bias)
    nn.init.normal_(attn.out_proj.bias)
    ref = nn.MultiheadAttention(dims, heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attn.qcontent_proj.weight,
                                            attn.kcontent_proj.weight, attn.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([attn.qcontent_proj.bias, attn.kcontent_proj.bias,
                                          attn.v_proj.bias]))
        ref.out_proj.load_state_dict(attn.out_proj.state_dict())
    x, pos = torch.randn(2, 5, dims), torch.randn(2, 5, dims)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])
    bool_mask = torch.rand(5, 5) > 0.7
    bool_mask.fill_diagonal_(False)
    float_mask = torch.randn(5, 5)
    for attn_mask in (None, bool_mask, float_mask):
        out = attn(x, x, query_pos=pos, attn_mask=attn_mask, key_padding_mask=padding)
        expected = x + ref(x + pos, x + pos, x, attn_mask=attn_mask,
                           key_padding_mask=padding)[0]
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def reference_cross_attention(attn, query, memory, query_pos, ref_sine, key_pos, first,
                              padding):
    """Per-head concatenation [content | position] and scaled dot-product attention."""
    batch, num_q, dims = query.shape
    heads, head_dims = attn.num_heads, dims // attn.num_heads

    def heads_of(x):  # [B, N, C] -> [B, h, N, C / h]
        return x.view(batch, x.size(1), heads, head_dims).transpose(1, 2)

    k_pos = attn.kpos_proj(key_pos)
    q = attn.qcontent_proj(query) + (attn.qpos_proj(query_pos) if first else 0)
    k = attn.kcontent_proj(memory) + (k_pos if first else 0)
    q = torch.cat([heads_of(q), heads_of(attn.qpos_sine_proj(ref_sine))], -1)
    k = torch.cat([heads_of(k), heads_of(k_pos)], -1)
    mask = ~padding[:, None, None, :]  # True = may attend
    out = F.scaled_dot_product_attention(q, k, heads_of(attn.v_proj(memory)), attn_mask=mask)
    return query + attn.out_proj(out.transpose(1, 2).reshape(batch, num_q, dims))


@pytest.mark.parametrize('first', [True, False])
def test_cross_attention_equals_per_head_reference(first):
    attn = ConditionalAttention(16, 4, cross_attn=True)
    query, query_pos, ref_sine = (torch.randn(2, 3, 16) for _ in range(3))
    memory, key_pos = torch.randn(2, 7, 16), torch.randn(2, 7, 16)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 4:] = True
    out = attn(query, memory, query_pos=query_pos, ref_sine_embed=ref_sine, key_pos=key_pos,
               key_padding_mask=padding, is_first=first)
    assert out.shape == (2, 3, 16)
    expected = reference_cross_attention(attn, query, memory, query_pos, ref_sine, key_pos,
                                         first, padding)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_forward_attn_shapes_and_averaged_weights():
    attn = ConditionalAttention(8, 2)
    out, weights = attn.forward_attn(torch.randn(3, 4, 16), torch.randn(3, 6, 16),
                                     torch.randn(3, 6, 8),
                                     key_padding_mask=torch.tensor([[0, 0, 0, 0, 1, 1]] * 3))
    assert out.shape == (3, 4, 8) and weights.shape == (3, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert torch.all(weights[..., 4:] == 0)  # padded keys


def test_bad_arguments_and_inputs():
    with pytest.raises(AssertionError, match='batch_first must be True'):
        ConditionalAttention(8, 2, batch_first=False)
    attn = ConditionalAttention(8, 2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(AssertionError, match='key and value lengths differ'):
        attn.forward_attn(x, x, torch.randn(1, 4, 8))
    with pytest.raises(AssertionError, match=r'value channels \(6\) != embed_dims'):
        attn.forward_attn(x, x, torch.randn(1, 3, 6))
    with pytest.raises(RuntimeError, match='attn_mask must be'):
        attn(x, x, query_pos=x, attn_mask=torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(AssertionError, match='key_padding_mask must be'):
        attn(x, x, query_pos=x, key_padding_mask=torch.zeros(1, 4, dtype=torch.bool))


def tiny_decoder(num_layers=3, dims=16, return_intermediate=True):
    attn = dict(embed_dims=dims, num_heads=4)
    return ConditionalDetrTransformerDecoder(
        num_layers=num_layers, return_intermediate=return_intermediate,
        layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=dict(attn, cross_attn=True),
                       ffn_cfg=dict(embed_dims=dims, feedforward_channels=32)))


def test_decoder_keys_and_outputs():
    decoder = tiny_decoder()
    keys = shapes_of(decoder)
    assert 'layers.0.cross_attn.qpos_proj.weight' in keys
    assert not any(k.startswith(f'layers.{i}.cross_attn.qpos_proj') for k in keys
                   for i in (1, 2))
    assert 'layers.1.self_attn.qpos_proj.weight' in keys  # only cross-attention loses it
    assert keys['ref_point_head.layers.1.weight'] == (2, 16)
    assert keys['query_scale.layers.1.weight'] == (16, 16)

    query, query_pos = torch.zeros(2, 5, 16), torch.randn(2, 5, 16)
    memory, memory_pos = torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    hidden, reference = decoder(query, key=memory, query_pos=query_pos, key_pos=memory_pos,
                                key_padding_mask=torch.zeros(2, 9, dtype=torch.bool))
    assert hidden.shape == (3, 2, 5, 16) and reference.shape == (2, 5, 2)
    torch.testing.assert_close(reference, decoder.ref_point_head(query_pos).sigmoid())
    # Every output went through the shared post-norm (LayerNorm: zero mean per query).
    torch.testing.assert_close(hidden.mean(-1), torch.zeros(3, 2, 5), atol=1e-5, rtol=0)
    last, _ = tiny_decoder(return_intermediate=False)(query, key=memory, query_pos=query_pos,
                                                      key_pos=memory_pos)
    assert last.shape == (1, 2, 5, 16)


def test_decoder_spatial_queries_scaled_after_the_first_layer():
    decoder = tiny_decoder(num_layers=2)
    seen = []
    for layer in decoder.layers:
        layer.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append((args[0], kwargs['ref_sine_embed'],
                                                      kwargs['is_first'])),
            with_kwargs=True)
    query_pos = torch.randn(1, 4, 16)
    decoder(torch.zeros(1, 4, 16), key=torch.randn(1, 6, 16), query_pos=query_pos,
            key_pos=torch.randn(1, 6, 16))
    sine = coordinate_to_encoding(decoder.ref_point_head(query_pos).sigmoid(), num_feats=8)
    (_, sine0, first0), (query1, sine1, first1) = seen
    assert (first0, first1) == (True, False)
    torch.testing.assert_close(sine0, sine)
    torch.testing.assert_close(sine1, sine * decoder.query_scale(query1))
