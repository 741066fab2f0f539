"""DETR transformer layers: mmcv-compatible parameter names, post-norm data flow, masks."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmdet_lite.models.layers.transformer import (FFN, DetrTransformerDecoder,
                                                  DetrTransformerDecoderLayer,
                                                  DetrTransformerEncoder,
                                                  DetrTransformerEncoderLayer,
                                                  MultiheadAttention)

C = 16


def attn_cfg(**kwargs):
    return dict(embed_dims=C, num_heads=4, dropout=0.0, **kwargs)


def ffn_cfg():
    return dict(embed_dims=C, feedforward_channels=32, num_fcs=2, ffn_drop=0.0)


def encoder(num_layers=2):
    return DetrTransformerEncoder(num_layers, dict(self_attn_cfg=attn_cfg(),
                                                   ffn_cfg=ffn_cfg())).eval()


def decoder(num_layers=3, **kwargs):
    layer = dict(self_attn_cfg=attn_cfg(), cross_attn_cfg=attn_cfg(), ffn_cfg=ffn_cfg())
    return DetrTransformerDecoder(num_layers, layer, **kwargs).eval()


def test_attention_keys_match_mmcv():
    attn = MultiheadAttention(256, 8, dropout=0.1, batch_first=True)
    shapes = {k: tuple(v.shape) for k, v in attn.state_dict().items()}
    assert shapes == {'attn.in_proj_weight': (768, 256), 'attn.in_proj_bias': (768, ),
                      'attn.out_proj.weight': (256, 256), 'attn.out_proj.bias': (256, )}
    # The `dropout` shortcut drops attention weights and the residual branch.
    assert attn.attn.dropout == 0.1 and attn.dropout_layer.p == 0.1


def test_attention_adds_positions_and_residual():
    attn = MultiheadAttention(C, 4, batch_first=True).eval()
    q, q_pos = torch.randn(2, 3, C), torch.randn(2, 3, C)
    k, k_pos = torch.randn(2, 5, C), torch.randn(2, 5, C)
    out = attn(q, key=k, value=k, query_pos=q_pos, key_pos=k_pos)
    expected = q + attn.attn(q + q_pos, k + k_pos, k)[0]
    torch.testing.assert_close(out, expected)


def test_attention_ignores_padded_keys():
    attn = MultiheadAttention(C, 4, batch_first=True).eval()
    q, k = torch.randn(1, 3, C), torch.randn(1, 5, C)
    mask = torch.tensor([[False, False, False, True, True]])
    changed = k.clone()
    changed[:, 3:] = 100.
    torch.testing.assert_close(attn(q, k, k, key_padding_mask=mask),
                               attn(q, changed, changed, key_padding_mask=mask))


def test_attention_heads_must_divide_channels():
    with pytest.raises(ValueError, match='divisible by num_heads'):
        MultiheadAttention(10, 4)


def test_ffn_keys_and_residual():
    ffn = FFN(8, 32, num_fcs=2, ffn_drop=0.1)
    assert {k: tuple(v.shape) for k, v in ffn.state_dict().items()} == {
        'layers.0.0.weight': (32, 8), 'layers.0.0.bias': (32, ),
        'layers.1.weight': (8, 32), 'layers.1.bias': (8, )}
    ffn.eval()
    x = torch.randn(4, 8)
    hidden = F.relu(ffn.layers[0][0](x))
    torch.testing.assert_close(ffn(x), x + ffn.layers[1](hidden))
    no_res = FFN(8, 32, add_identity=False).eval()
    torch.testing.assert_close(no_res(x), no_res.layers[1](F.relu(no_res.layers[0][0](x))))


def test_ffn_needs_two_layers():
    with pytest.raises(ValueError, match='num_fcs must be at least 2'):
        FFN(8, 32, num_fcs=1)


def test_encoder_layer_is_post_norm():
    layer = DetrTransformerEncoderLayer(attn_cfg(), ffn_cfg()).eval()
    x, pos = torch.randn(2, 6, C), torch.randn(2, 6, C)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    h = layer.norms[0](x + layer.self_attn.attn(x + pos, x + pos, x)[0])
    h = layer.norms[1](h + layer.ffn.layers[1](F.relu(layer.ffn.layers[0][0](h))))
    torch.testing.assert_close(layer(x, pos, mask), h)
    assert sorted({k.split('.')[0] for k in layer.state_dict()}) == ['ffn', 'norms',
                                                                      'self_attn']
    assert len(layer.norms) == 2


def test_decoder_layer_order_and_keys():
    layer = DetrTransformerDecoderLayer(attn_cfg(), attn_cfg(), ffn_cfg()).eval()
    q, q_pos = torch.randn(2, 4, C), torch.randn(2, 4, C)
    mem, mem_pos = torch.randn(2, 6, C), torch.randn(2, 6, C)
    h = layer.norms[0](q + layer.self_attn.attn(q + q_pos, q + q_pos, q)[0])
    h = layer.norms[1](h + layer.cross_attn.attn(h + q_pos, mem + mem_pos, mem)[0])
    h = layer.norms[2](h + layer.ffn.layers[1](F.relu(layer.ffn.layers[0][0](h))))
    out = layer(q, key=mem, value=mem, query_pos=q_pos, key_pos=mem_pos)
    torch.testing.assert_close(out, h)
    assert len(layer.norms) == 3
    assert 'cross_attn.attn.in_proj_weight' in layer.state_dict()


def test_batch_first_is_required():
    with pytest.raises(ValueError, match='batch_first=False is not supported'):
        DetrTransformerEncoderLayer(attn_cfg(batch_first=False), ffn_cfg())


def test_encoder_output_ignores_padding():
    enc = encoder()
    feat, pos = torch.randn(1, 6, C), torch.randn(1, 6, C)
    alone = enc(feat, pos, torch.zeros(1, 6, dtype=torch.bool))
    # The same 6 positions plus 3 padded ones holding arbitrary values.
    padded_feat = torch.cat([feat, torch.full((1, 3, C), 7.)], dim=1)
    padded_pos = torch.cat([pos, torch.randn(1, 3, C)], dim=1)
    mask = torch.tensor([[False] * 6 + [True] * 3])
    padded = enc(padded_feat, padded_pos, mask)
    torch.testing.assert_close(padded[:, :6], alone, atol=1e-5, rtol=1e-5)


def test_decoder_returns_every_layer_normalized():
    dec = decoder(num_layers=3)
    q, q_pos = torch.zeros(2, 4, C), torch.randn(2, 4, C)
    mem, mem_pos = torch.randn(2, 6, C), torch.randn(2, 6, C)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    out = dec(q, mem, mem, q_pos, mem_pos, mask)
    assert out.shape == (3, 2, 4, C)
    h = q
    for i, layer in enumerate(dec.layers):
        h = layer(h, key=mem, value=mem, query_pos=q_pos, key_pos=mem_pos,
                  key_padding_mask=mask)
        torch.testing.assert_close(out[i], dec.post_norm(h))
    assert isinstance(dec.post_norm, nn.LayerNorm)

    last_only = decoder(num_layers=3, return_intermediate=False)
    last_only.load_state_dict(dec.state_dict())
    torch.testing.assert_close(last_only(q, mem, mem, q_pos, mem_pos, mask), out[-1:])


def test_encoder_checkpointing_gives_same_outputs_and_gradients():
    plain = DetrTransformerEncoder(2, dict(self_attn_cfg=attn_cfg(), ffn_cfg=ffn_cfg()))
    ckpt = DetrTransformerEncoder(2, dict(self_attn_cfg=attn_cfg(), ffn_cfg=ffn_cfg()),
                                  num_cp=2)
    ckpt.load_state_dict(plain.state_dict())
    feat, pos = torch.randn(1, 5, C), torch.randn(1, 5, C)
    mask = torch.zeros(1, 5, dtype=torch.bool)
    out_plain, out_ckpt = plain(feat, pos, mask), ckpt(feat, pos, mask)
    torch.testing.assert_close(out_ckpt, out_plain)
    out_plain.sum().backward()
    out_ckpt.sum().backward()
    torch.testing.assert_close(ckpt.layers[0].ffn.layers[1].weight.grad,
                               plain.layers[0].ffn.layers[1].weight.grad)
    with pytest.raises(ValueError, match=r'num_cp \(3\) must not exceed num_layers \(2\)'):
        DetrTransformerEncoder(2, dict(self_attn_cfg=attn_cfg(), ffn_cfg=ffn_cfg()), num_cp=3)


def test_default_layer_configs_are_not_shared():
    first = DetrTransformerEncoderLayer()
    assert first.self_attn_cfg['batch_first'] is True
    assert DetrTransformerEncoderLayer().ffn.feedforward_channels == 1024
    first.ffn_cfg['feedforward_channels'] = 8  # editing one layer's copy leaves the default
    assert DetrTransformerEncoderLayer().ffn.feedforward_channels == 1024
