"""Shared DETR-family helpers (mmdetection's names): hand-computed values and bad input."""
import math

import pytest
import torch

from mmdet_lite.models.layers import SinePositionalEncoding
from mmdet_lite.models.layers.transformer.utils import (FFN, MLP, MultiheadAttention,
                                                        coordinate_to_encoding,
                                                        inverse_sigmoid, nchw_to_nlc,
                                                        nlc_to_nchw)


def test_old_import_path_of_the_bricks_still_works():
    from mmdet_lite.models.layers.transformer import bricks
    assert FFN is bricks.FFN and MultiheadAttention is bricks.MultiheadAttention


def test_inverse_sigmoid_by_hand():
    x = torch.tensor([0.5, 0.75, 0.1, 0.0, 1.0, 1.5, -0.5])
    expected = torch.tensor([
        0.0,  # log(0.5 / 0.5)
        math.log(3.0),  # log(0.75 / 0.25)
        math.log(1 / 9),  # log(0.1 / 0.9)
        math.log(1e-5),  # 0 -> log(eps / 1)
        -math.log(1e-5),  # 1 -> log(1 / eps)
        -math.log(1e-5),  # clamped to 1 first
        math.log(1e-5),  # clamped to 0 first
    ])
    torch.testing.assert_close(inverse_sigmoid(x), expected)
    torch.testing.assert_close(inverse_sigmoid(torch.tensor([0.0]), eps=0.01),
                               torch.tensor([math.log(0.01)]))
    # The inverse of sigmoid away from the clamps.
    logits = torch.tensor([-3.0, -0.2, 0.0, 2.5])
    torch.testing.assert_close(inverse_sigmoid(logits.sigmoid()), logits, atol=1e-5, rtol=0)


def test_coordinate_to_encoding_points_by_hand():
    # num_feats=2: dim_t = [1, 1]; (x, y) = (0.25, 0.5) * 2pi = (pi/2, pi).
    # Output: y encoding (sin, cos) then x encoding.
    pos = coordinate_to_encoding(torch.tensor([[[0.25, 0.5]]]), num_feats=2)
    assert pos.shape == (1, 1, 4)
    torch.testing.assert_close(pos[0, 0], torch.tensor([0., -1., 1., 0.]), atol=1e-6, rtol=0)


def test_coordinate_to_encoding_boxes_by_hand():
    # num_feats=4, temperature 100: dim_t = [1, 1, 10, 10]; scale 1 keeps the values.
    cx, cy, w, h = 0.25, 0.5, 0.125, 1.0
    pos = coordinate_to_encoding(torch.tensor([[[cx, cy, w, h]]]), num_feats=4,
                                 temperature=100, scale=1.0)
    assert pos.shape == (1, 1, 16)

    def enc(v):
        return [math.sin(v), math.cos(v), math.sin(v / 10), math.cos(v / 10)]

    expected = torch.tensor(enc(cy) + enc(cx) + enc(w) + enc(h))  # y, x, w, h
    torch.testing.assert_close(pos[0, 0], expected)


def test_coordinate_to_encoding_matches_the_feature_map_encoding():
    # A query at a pixel's normalized (x, y) gets that pixel's SinePositionalEncoding.
    pe = SinePositionalEncoding(num_feats=8, normalize=True, eps=0.)
    height, width = 3, 4
    feat_pos = pe(torch.zeros(1, height, width, dtype=torch.bool))  # [1, 16, 3, 4]
    row, col = 1, 2
    coords = torch.tensor([[[(col + 1) / width, (row + 1) / height]]])
    torch.testing.assert_close(coordinate_to_encoding(coords, num_feats=8)[0, 0],
                               feat_pos[0, :, row, col], atol=1e-6, rtol=0)


def test_coordinate_to_encoding_needs_points_or_boxes():
    with pytest.raises(ValueError, match='must be 2 .* or 4'):
        coordinate_to_encoding(torch.zeros(1, 5, 3))


def test_mlp_by_hand():
    mlp = MLP(input_dim=2, hidden_dim=3, output_dim=1, num_layers=2)
    assert {k: tuple(v.shape) for k, v in mlp.state_dict().items()} == {
        'layers.0.weight': (3, 2), 'layers.0.bias': (3, ),
        'layers.1.weight': (1, 3), 'layers.1.bias': (1, )}
    with torch.no_grad():
        mlp.layers[0].weight.copy_(torch.tensor([[1., 0.], [0., 1.], [1., 1.]]))
        mlp.layers[0].bias.copy_(torch.tensor([0., -5., 0.]))
        mlp.layers[1].weight.copy_(torch.tensor([[1., 2., 3.]]))
        mlp.layers[1].bias.copy_(torch.tensor([0.5]))
    # x = (1, 2): hidden = relu(1, 2 - 5, 3) = (1, 0, 3); out = 1 + 0 + 9 + 0.5 = 10.5.
    torch.testing.assert_close(mlp(torch.tensor([[1., 2.]])), torch.tensor([[10.5]]))
    # No ReLU after the last layer: x = (-1, -2) gives hidden relu(-1, -7, -3) = 0, so the
    # output is the last bias, here -1.
    with torch.no_grad():
        mlp.layers[1].bias.fill_(-1.)
    torch.testing.assert_close(mlp(torch.tensor([[-1., -2.]])), torch.tensor([[-1.]]))


def test_mlp_shapes_and_single_layer():
    mlp = MLP(8, 16, 4, num_layers=3)
    assert [tuple(layer.weight.shape) for layer in mlp.layers] == [(16, 8), (16, 16), (4, 16)]
    assert mlp(torch.randn(6, 2, 5, 8)).shape == (6, 2, 5, 4)  # [L, B, Q, C] -> [L, B, Q, 4]
    single = MLP(8, 16, 4, num_layers=1)
    x = torch.randn(3, 8)
    torch.testing.assert_close(single(x), single.layers[0](x))  # a plain Linear
    with pytest.raises(ValueError, match='num_layers must be at least 1'):
        MLP(8, 16, 4, num_layers=0)


def test_nchw_nlc_round_trip_by_hand():
    x = torch.arange(2 * 3 * 2 * 4, dtype=torch.float32).view(2, 3, 2, 4)  # [N, C, H, W]
    seq = nchw_to_nlc(x)
    assert seq.shape == (2, 8, 3)
    # Sequence position h * W + w is pixel (h, w): position 6 is (1, 2).
    torch.testing.assert_close(seq[1, 6], x[1, :, 1, 2])
    assert seq.data_ptr() == x.data_ptr()  # a view
    back = nlc_to_nchw(seq, (2, 4))
    assert back.is_contiguous()
    torch.testing.assert_close(back, x)
    with pytest.raises(ValueError, match=r'expects \[N, C, H, W\]'):
        nchw_to_nlc(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r'expected \[N, 3\*3, C\]'):
        nlc_to_nchw(seq, (3, 3))
