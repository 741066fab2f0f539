"""inverse_sigmoid, coordinate_to_encoding and MLP against mmdetection 3.3's definitions,
recomputed independently with numpy at the default arguments."""
import inspect
import math

import numpy as np
import torch

from mmdet_lite.models.layers import MLP, coordinate_to_encoding, inverse_sigmoid


def numpy_encoding(coords: np.ndarray, num_feats=128, temperature=10000, scale=2 * math.pi):
    """mmdetection 3.3: per coordinate, angles = c * scale / T^(2 * (i // 2) / F); sin on
    even channels, cos on odd; concatenated as y, x (points) or y, x, w, h (boxes)."""
    i = np.arange(num_feats)
    dim_t = temperature**(2 * (i // 2) / num_feats)
    parts = []
    order = [1, 0] if coords.shape[-1] == 2 else [1, 0, 2, 3]
    for c in order:
        angles = coords[..., c:c + 1] * scale / dim_t
        enc = np.where(i % 2 == 0, np.sin(angles), np.cos(angles))
        parts.append(enc)
    return np.concatenate(parts, axis=-1)


def test_defaults_are_mmdetections():
    params = inspect.signature(coordinate_to_encoding).parameters
    assert params['num_feats'].default == 128
    assert params['temperature'].default == 10000
    assert math.isclose(params['scale'].default, 2 * math.pi)
    assert inspect.signature(inverse_sigmoid).parameters['eps'].default == 1e-5


def test_coordinate_to_encoding_boxes_and_points_match_numpy():
    rng = np.random.default_rng(0)
    boxes = rng.random((2, 5, 4))
    ours = coordinate_to_encoding(torch.from_numpy(boxes).float())
    assert ours.shape == (2, 5, 512)
    np.testing.assert_allclose(ours.numpy(), numpy_encoding(boxes), atol=2e-5)
    points = rng.random((3, 7, 2))
    ours = coordinate_to_encoding(torch.from_numpy(points).float(), num_feats=64)
    assert ours.shape == (3, 7, 128)
    np.testing.assert_allclose(ours.numpy(), numpy_encoding(points, num_feats=64), atol=2e-5)


def test_inverse_sigmoid_matches_numpy():
    x = np.array([0.0, 1e-7, 0.2, 0.5, 0.9, 1.0, 1.3, -0.2])
    clipped = np.clip(x, 0, 1)
    expected = np.log(np.maximum(clipped, 1e-5) / np.maximum(1 - clipped, 1e-5))
    np.testing.assert_allclose(inverse_sigmoid(torch.tensor(x)).numpy(), expected, rtol=1e-6)


def test_mlp_keys_match_mmdetection():
    mlp = MLP(16, 32, 4, 3)
    assert {k: tuple(v.shape) for k, v in mlp.state_dict().items()} == {
        'layers.0.weight': (32, 16), 'layers.0.bias': (32, ),
        'layers.1.weight': (32, 32), 'layers.1.bias': (32, ),
        'layers.2.weight': (4, 32), 'layers.2.bias': (4, ),
    }
