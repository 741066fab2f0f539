"""DAB-DETR's encoder (scaled positions) and decoder (anchor refinement, spatial queries,
query_scale types, point queries) checked against formulas written out here."""
import pytest
import torch
from torch import nn

from mmdet_lite.models.layers.transformer import (MLP, DABDetrTransformerDecoder,
                                                  DABDetrTransformerEncoder,
                                                  coordinate_to_encoding, inverse_sigmoid)

DIMS = 16


def decoder_cfg(num_layers=3, **kwargs):
    attn = dict(embed_dims=DIMS, num_heads=4)
    return dict(num_layers=num_layers,
                layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=dict(attn, cross_attn=True),
                               ffn_cfg=dict(embed_dims=DIMS, feedforward_channels=32)),
                **kwargs)


def record_layer_inputs(decoder):
    """Each layer's (query, kwargs) as the decoder calls it."""
    seen = []
    for layer in decoder.layers:
        layer.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append((args[0], kwargs)), with_kwargs=True)
    return seen


def record_layer_outputs(decoder):
    outputs = []
    for layer in decoder.layers:
        layer.register_forward_hook(lambda module, args, out: outputs.append(out))
    return outputs


def run(decoder, reg_branches, batch=2, num_q=5, num_k=7, query_pos=None):
    query_pos = torch.randn(batch, num_q, decoder.query_dim) if query_pos is None \
        else query_pos
    return query_pos, decoder(torch.zeros(batch, num_q, DIMS), torch.randn(batch, num_k, DIMS),
                              query_pos=query_pos, key_pos=torch.randn(batch, num_k, DIMS),
                              reg_branches=reg_branches,
                              key_padding_mask=torch.zeros(batch, num_k, dtype=torch.bool))


def test_encoder_scales_each_layers_positions():
    encoder = DABDetrTransformerEncoder(
        num_layers=2, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=DIMS, num_heads=4),
            ffn_cfg=dict(embed_dims=DIMS, feedforward_channels=32, act_cfg=dict(type='PReLU'))))
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()
            if k.startswith('query_scale')} == {
                'query_scale.layers.0.weight': (DIMS, DIMS), 'query_scale.layers.0.bias': (DIMS, ),
                'query_scale.layers.1.weight': (DIMS, DIMS), 'query_scale.layers.1.bias': (DIMS, )}
    seen = []
    for layer in encoder.layers:
        layer.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append((args[0], kwargs['query_pos'])),
            with_kwargs=True)
    feat, pos = torch.randn(2, 6, DIMS), torch.randn(2, 6, DIMS)
    memory = encoder(feat, pos, torch.zeros(2, 6, dtype=torch.bool))
    assert memory.shape == (2, 6, DIMS)
    for query, layer_pos in seen:
        torch.testing.assert_close(layer_pos, pos * encoder.query_scale(query))
    torch.testing.assert_close(seen[0][0], feat)


def test_decoder_keys_per_option():
    def keys(**kwargs):
        return {k: tuple(v.shape) for k, v in
                DABDetrTransformerDecoder(**decoder_cfg(**kwargs)).state_dict().items()
                if not k.startswith('layers.')}

    base = keys()
    assert base['ref_point_head.layers.0.weight'] == (DIMS, 2 * DIMS)  # 4 coords x DIMS/2
    assert base['ref_anchor_head.layers.1.weight'] == (2, DIMS)
    assert base['query_scale.layers.1.weight'] == (DIMS, DIMS)
    assert keys(query_scale_type='cond_scalar')['query_scale.layers.1.weight'] == (1, DIMS)
    assert keys(query_scale_type='fix_elewise')['query_scale.weight'] == (3, DIMS)
    points = keys(query_dim=2, with_modulated_hw_attn=False)
    assert points['ref_point_head.layers.0.weight'] == (DIMS, DIMS)
    assert not any(k.startswith('ref_anchor_head') for k in points)
    assert not any(k.startswith('ref_anchor_head') for k in keys(with_modulated_hw_attn=False))


def test_later_layers_drop_qpos_proj_unless_keep_query_pos():
    decoder = DABDetrTransformerDecoder(**decoder_cfg())
    assert decoder.layers[0].cross_attn.qpos_proj is not None
    assert all(layer.cross_attn.qpos_proj is None for layer in decoder.layers[1:])
    cfg = decoder_cfg()
    cfg['layer_cfg']['cross_attn_cfg']['keep_query_pos'] = True
    decoder = DABDetrTransformerDecoder(**cfg)
    assert decoder.keep_query_pos
    assert all(layer.cross_attn.qpos_proj is not None for layer in decoder.layers)


def test_zero_box_branch_keeps_the_anchors():
    decoder = DABDetrTransformerDecoder(**decoder_cfg())
    zero = MLP(DIMS, DIMS, 4, 3)
    nn.init.zeros_(zero.layers[-1].weight)
    nn.init.zeros_(zero.layers[-1].bias)
    query_pos, (hidden, references) = run(decoder, zero)
    assert hidden.shape == (3, 2, 5, DIMS) and references.shape == (3, 2, 5, 4)
    anchors = query_pos.sigmoid()
    for layer_refs in references:
        torch.testing.assert_close(layer_refs, anchors, atol=1e-5, rtol=0)


def test_anchors_refined_after_every_layer_and_fed_to_the_next():
    decoder = DABDetrTransformerDecoder(**decoder_cfg())
    reg = MLP(DIMS, DIMS, 4, 3)
    inputs, outputs = record_layer_inputs(decoder), record_layer_outputs(decoder)
    query_pos, (hidden, references) = run(decoder, reg)
    anchors = query_pos.sigmoid()
    torch.testing.assert_close(references[0], anchors)
    for i in range(3):
        query, kwargs = inputs[i]
        # Query positions: the MLP of the anchors' sine encodings (y, x, w, h; DIMS/2 each).
        sine = coordinate_to_encoding(anchors, num_feats=DIMS // 2)
        torch.testing.assert_close(kwargs['query_pos'], decoder.ref_point_head(sine))
        # Spatial query: the y, x parts, scaled (not in the first layer), then modulated by
        # predicted h / anchor h (y part) and predicted w / anchor w (x part).
        scale = 1 if i == 0 else decoder.query_scale(query)
        spatial = sine[..., :DIMS] * scale
        hw = decoder.ref_anchor_head(query).sigmoid()
        expected = torch.cat([spatial[..., :DIMS // 2] * (hw[..., 1:] / anchors[..., 3:]),
                              spatial[..., DIMS // 2:] * (hw[..., :1] / anchors[..., 2:3])], -1)
        torch.testing.assert_close(kwargs['ref_sine_embed'], expected)
        assert kwargs['is_first'] == (i == 0)
        anchors = (reg(outputs[i]) + inverse_sigmoid(anchors)).sigmoid()
        if i < 2:
            torch.testing.assert_close(references[i + 1], anchors)
    torch.testing.assert_close(hidden[-1], decoder.post_norm(outputs[-1]))


def test_refined_anchors_are_detached_between_layers():
    decoder = DABDetrTransformerDecoder(**decoder_cfg(num_layers=2))
    query_pos = torch.randn(1, 3, 4, requires_grad=True)
    reg = MLP(DIMS, DIMS, 4, 3)
    _, (hidden, references) = run(decoder, reg, batch=1, num_q=3, query_pos=query_pos)
    # The second layer's anchors depend on reg only through the value, not the graph.
    grad = torch.autograd.grad(references[1].sum(), reg.layers[-1].bias, allow_unused=True)[0]
    assert grad is not None  # the refinement that produced them is trained
    grad_hidden = torch.autograd.grad(hidden[1].sum(), reg.layers[-1].bias, allow_unused=True)
    assert grad_hidden[0] is None  # but the next layer's input anchors are detached


def test_fix_elewise_scale_and_point_queries():
    decoder = DABDetrTransformerDecoder(**decoder_cfg(query_scale_type='fix_elewise',
                                                      with_modulated_hw_attn=False))
    inputs = record_layer_inputs(decoder)
    query_pos, _ = run(decoder, MLP(DIMS, DIMS, 4, 3))
    sine = coordinate_to_encoding(query_pos.sigmoid(), num_feats=DIMS // 2)
    torch.testing.assert_close(inputs[0][1]['ref_sine_embed'],
                               sine[..., :DIMS] * decoder.query_scale.weight[0])

    points = DABDetrTransformerDecoder(**decoder_cfg(query_dim=2, with_modulated_hw_attn=False))
    _, (hidden, references) = run(points, MLP(DIMS, DIMS, 4, 3))
    assert hidden.shape == (3, 2, 5, DIMS) and references.shape == (3, 2, 5, 2)
    last, refs = DABDetrTransformerDecoder(**decoder_cfg(return_intermediate=False))(
        torch.zeros(1, 2, DIMS), torch.randn(1, 4, DIMS), query_pos=torch.randn(1, 2, 4),
        key_pos=torch.randn(1, 4, DIMS), reg_branches=MLP(DIMS, DIMS, 4, 3))
    assert last.shape == (1, 1, 2, DIMS) and refs.shape == (3, 1, 2, 4)


def test_bad_arguments():
    with pytest.raises(AssertionError, match='query_dim must be 4'):
        DABDetrTransformerDecoder(**decoder_cfg(query_dim=3))
    with pytest.raises(AssertionError, match='query_scale_type must be one of'):
        DABDetrTransformerDecoder(**decoder_cfg(query_scale_type='elewise'))
    # As mmdetection, point queries with modulated attention build but cannot run.
    decoder = DABDetrTransformerDecoder(**decoder_cfg(query_dim=2))
    with pytest.raises(AssertionError, match='with_modulated_hw_attn needs anchor boxes'):
        run(decoder, MLP(DIMS, DIMS, 4, 3))
