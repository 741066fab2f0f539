"""NormedLinear / NormedConv2d against an independent cosine-similarity computation."""
import torch
import torch.nn.functional as F
from torch import nn

from mmdet_lite.models.layers import NormedConv2d, NormedLinear
from mmdet_lite.registry import MODELS


def test_registered_names_and_plain_linear():
    assert MODELS.get('NormedLinear') is NormedLinear
    assert MODELS.get('NormedConv2d') is NormedConv2d
    assert MODELS.get('Linear') is nn.Linear
    layer = MODELS.build(dict(type='NormedLinear', in_features=4, out_features=3,
                              tempearture=10))
    assert isinstance(layer, NormedLinear) and layer.tempearture == 10
    assert (layer.power, layer.eps) == (1.0, 1e-6)
    assert torch.all(layer.bias == 0) and layer.weight.std() < 0.05


def test_normed_linear_is_scaled_cosine_similarity():
    torch.manual_seed(0)
    layer = NormedLinear(5, 3, tempearture=20)
    nn.init.uniform_(layer.bias, -1, 1)
    nn.init.normal_(layer.weight)  # norms ~2, so the 1e-6 eps is negligible
    x = torch.randn(4, 5)
    expected = 20 * F.cosine_similarity(x[:, None, :], layer.weight[None], dim=-1) + layer.bias
    assert torch.allclose(layer(x), expected, atol=1e-4)
    assert set(layer.state_dict()) == {'weight', 'bias'}


def test_normed_conv2d_per_position_and_over_kernel():
    torch.manual_seed(0)
    conv = NormedConv2d(3, 2, 1, tempearture=5)
    x = torch.randn(1, 3, 4, 4)
    w = conv.weight.view(2, 3)
    pix = x.permute(0, 2, 3, 1).reshape(-1, 3)
    expected = 5 * F.cosine_similarity(pix[:, None], w[None], dim=-1) + conv.bias
    assert torch.allclose(conv(x).permute(0, 2, 3, 1).reshape(-1, 2), expected, atol=1e-4)

    kconv = NormedConv2d(2, 1, 3, padding=1, bias=False, tempearture=1,
                         norm_over_kernel=True)
    x = torch.randn(1, 2, 5, 5)
    unit_filter = kconv.weight / kconv.weight.flatten().norm()
    x_unit = x / x.norm(dim=1, keepdim=True)
    assert torch.allclose(kconv(x), F.conv2d(x_unit, unit_filter, padding=1), atol=1e-4)
