"""Deformable DETR's encoder and decoder: keys, reference points by hand, the layers'
composition, box refinement in the decoder, checkpointing, bad configs."""
import pytest
import torch
from helpers_detr_keys import ffn, layer_norm, ms_deform_attn, multihead_attn
from torch import nn

from mmdet_lite.models.layers.transformer import (DeformableDetrTransformerDecoder,
                                                  DeformableDetrTransformerEncoder,
                                                  DeformableDetrTransformerEncoderLayer)
from mmdet_lite.models.layers.transformer.ms_deform_attn import \
    MultiScaleDeformableAttention

DIMS = 16
MSDA = dict(embed_dims=DIMS, num_heads=2, num_levels=2, num_points=2, dropout=0.,
            batch_first=True)
FFN_CFG = dict(embed_dims=DIMS, feedforward_channels=32, ffn_drop=0.)
SHAPES = torch.tensor([[4, 6], [2, 3]])  # N = 24 + 6 = 30
START = torch.tensor([0, 24])


def encoder(num_layers=2, num_cp=-1):
    return DeformableDetrTransformerEncoder(
        num_layers=num_layers, num_cp=num_cp,
        layer_cfg=dict(self_attn_cfg=MSDA, ffn_cfg=FFN_CFG))


def decoder(num_layers=2, return_intermediate=True):
    return DeformableDetrTransformerDecoder(
        num_layers=num_layers, return_intermediate=return_intermediate, post_norm_cfg=None,
        layer_cfg=dict(self_attn_cfg=dict(embed_dims=DIMS, num_heads=2, dropout=0.),
                       cross_attn_cfg=MSDA, ffn_cfg=FFN_CFG))


def test_state_dict_keys_of_mmdetection_layers():
    enc = DeformableDetrTransformerEncoder(
        num_layers=1, layer_cfg=dict(self_attn_cfg=dict(embed_dims=256, batch_first=True),
                                     ffn_cfg=dict(embed_dims=256, feedforward_channels=1024)))
    assert isinstance(enc.layers[0].self_attn, MultiScaleDeformableAttention)
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == {
        **ms_deform_attn('layers.0.self_attn'), **ffn('layers.0.ffn'),
        **layer_norm('layers.0.norms.0', 256), **layer_norm('layers.0.norms.1', 256)}
    dec = DeformableDetrTransformerDecoder(
        num_layers=1, post_norm_cfg=None,
        layer_cfg=dict(self_attn_cfg=dict(embed_dims=256, num_heads=8, batch_first=True),
                       cross_attn_cfg=dict(embed_dims=256, batch_first=True),
                       ffn_cfg=dict(embed_dims=256, feedforward_channels=1024)))
    assert isinstance(dec.layers[0].cross_attn, MultiScaleDeformableAttention)
    assert {k: tuple(v.shape) for k, v in dec.state_dict().items()} == {
        **multihead_attn('layers.0.self_attn'), **ms_deform_attn('layers.0.cross_attn'),
        **ffn('layers.0.ffn'), **layer_norm('layers.0.norms.0', 256),
        **layer_norm('layers.0.norms.1', 256), **layer_norm('layers.0.norms.2', 256)}
    assert dec.embed_dims == enc.embed_dims == 256


def test_encoder_reference_points_by_hand():
    # Image 0 unpadded; image 1 valid on half the width and all the height of both levels.
    valid_ratios = torch.tensor([[[1., 1.], [1., 1.]], [[.5, 1.], [.5, 1.]]])
    points = DeformableDetrTransformerEncoder.get_encoder_reference_points(
        torch.tensor([[2, 2], [1, 2]]), valid_ratios, device='cpu')
    assert points.shape == (2, 6, 2, 2)  # [B, N, levels, (x, y)]
    # Image 0: level 0 centres at .25/.75, level 1 at x .25/.75, y .5; same on both levels.
    centres0 = torch.tensor([[.25, .25], [.75, .25], [.25, .75], [.75, .75], [.25, .5],
                             [.75, .5]])
    torch.testing.assert_close(points[0], centres0[:, None].expand(6, 2, 2))
    # Image 1: x / (0.5 * w) relative to the valid area, then x 0.5 back onto each level:
    # the points are the positions' own centres on the padded maps.
    torch.testing.assert_close(points[1], centres0[:, None].expand(6, 2, 2))
    # Different valid ratios per level: level 1 (1 x 1, half valid) has its centre at
    # (0.5 / 0.5) = 1 of the valid image; on level 0 (all valid) that is 1, on level 1 0.5.
    ratios = torch.tensor([[[1., 1.], [.5, .5]]])
    points = DeformableDetrTransformerEncoder.get_encoder_reference_points(
        torch.tensor([[1, 1], [1, 1]]), ratios, device='cpu')
    torch.testing.assert_close(points[0, 0], torch.tensor([[.5, .5], [.25, .25]]))
    torch.testing.assert_close(points[0, 1], torch.tensor([[1., 1.], [.5, .5]]))


def test_encoder_layer_is_attention_norm_ffn_norm():
    layer = DeformableDetrTransformerEncoderLayer(self_attn_cfg=MSDA, ffn_cfg=FFN_CFG)
    query, pos = torch.randn(2, 30, DIMS), torch.randn(2, 30, DIMS)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    mask[1, 20:24] = True
    refs = torch.rand(2, 30, 2, 2)
    out = layer(query, pos, mask, spatial_shapes=SHAPES, level_start_index=START,
                reference_points=refs, valid_ratios=torch.ones(2, 2, 2))
    # The features are the values (without positions) and the residual.
    attn = layer.self_attn(query, value=query, query_pos=pos, key_padding_mask=mask,
                           reference_points=refs, spatial_shapes=SHAPES,
                           level_start_index=START)
    expected = layer.norms[1](layer.ffn(layer.norms[0](attn)))
    torch.testing.assert_close(out, expected)


def test_encoder_checkpointing_gives_the_same_output_and_gradients():
    plain = encoder().train()
    checkpointed = encoder(num_cp=2).train()
    checkpointed.load_state_dict(plain.state_dict())
    inputs = dict(query_pos=torch.randn(1, 30, DIMS), key_padding_mask=None,
                  spatial_shapes=SHAPES, level_start_index=START,
                  valid_ratios=torch.ones(1, 2, 2))
    query = torch.randn(1, 30, DIMS)
    out_plain = plain(query, **inputs)
    out_cp = checkpointed(query, **inputs)
    torch.testing.assert_close(out_cp, out_plain)
    out_plain.sum().backward()
    out_cp.sum().backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    with pytest.raises(ValueError, match='num_cp'):
        encoder(num_cp=3)


class ConstantBranch(nn.Module):
    """A box branch that predicts the same logits for every query."""

    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values)

    def forward(self, x):
        return self.values.expand(*x.shape[:-1], 4).clone()


def decoder_inputs(reference_points):
    return dict(query=torch.randn(2, 3, DIMS), query_pos=torch.randn(2, 3, DIMS),
                value=torch.randn(2, 30, DIMS), key_padding_mask=None,
                reference_points=reference_points, spatial_shapes=SHAPES,
                level_start_index=START, valid_ratios=torch.ones(2, 2, 2))


def test_decoder_refines_points_then_boxes():
    dec = decoder()
    points = torch.tensor([.5, .25]).expand(2, 3, 2)
    branches = nn.ModuleList([ConstantBranch([1., -1., 0., 2.]),
                              ConstantBranch([-1., 0., 1., 0.])])
    states, refs = dec(**decoder_inputs(points), reg_branches=branches)
    assert states.shape == (2, 2, 3, DIMS) and refs.shape == (2, 2, 3, 4)
    # Layer 0: the point's logits (0, log 1/3) move by (1, -1); w, h are the branch's own.
    first = torch.sigmoid(torch.tensor([1., -1. + torch.log(torch.tensor(1 / 3)), 0., 2.]))
    torch.testing.assert_close(refs[0], first.expand(2, 3, 4))
    # Layer 1: the box's logits move by (-1, 0, 1, 0).
    second = torch.sigmoid(torch.logit(first) + torch.tensor([-1., 0., 1., 0.]))
    torch.testing.assert_close(refs[1], second.expand(2, 3, 4))
    # Without refinement the points pass through unchanged.
    _, refs = dec(**decoder_inputs(points))
    torch.testing.assert_close(refs, points.expand(2, 2, 3, 2))
    last, last_refs = decoder(return_intermediate=False)(**decoder_inputs(points))
    assert last.shape == (2, 3, DIMS) and last_refs.shape == (2, 3, 2)


def test_decoder_scales_references_to_each_level_by_the_valid_ratios():
    dec = decoder(num_layers=1)
    seen = []
    dec.layers[0].cross_attn.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs['reference_points']),
        with_kwargs=True)
    boxes = torch.tensor([.5, .5, .2, .4]).expand(2, 3, 4)
    inputs = decoder_inputs(boxes)
    inputs['valid_ratios'] = torch.tensor([[[1., 1.], [1., 1.]], [[.5, .8], [.25, 1.]]])
    dec(**inputs)
    assert seen[0].shape == (2, 3, 2, 4)
    torch.testing.assert_close(seen[0][1, 0], torch.tensor([[.25, .4, .1, .32],
                                                            [.125, .5, .05, .4]]))


def test_bad_configs_and_references():
    with pytest.raises(ValueError, match='post_norm_cfg=None'):
        DeformableDetrTransformerDecoder(
            num_layers=1, layer_cfg=dict(self_attn_cfg=dict(embed_dims=DIMS, num_heads=2),
                                         cross_attn_cfg=MSDA, ffn_cfg=FFN_CFG))
    with pytest.raises(ValueError, match='batch_first=False'):
        DeformableDetrTransformerEncoderLayer(self_attn_cfg={**MSDA, 'batch_first': False})
    with pytest.raises(ValueError, match='reference_points must end with 2'):
        decoder()(**decoder_inputs(torch.rand(2, 3, 3)))
