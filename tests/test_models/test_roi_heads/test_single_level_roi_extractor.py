"""SingleRoIExtractor: FPN level mapping and pooling; the RoIAlign wrapper."""
import pytest
import torch
from torchvision.ops import roi_align

from mmdet_lite.models.layers import RoIAlign
from mmdet_lite.models.roi_heads import SingleRoIExtractor

STRIDES = [4, 8, 16, 32]


def make_extractor(output_size: int = 7, channels: int = 2) -> SingleRoIExtractor:
    return SingleRoIExtractor(
        roi_layer=dict(type='RoIAlign', output_size=output_size, sampling_ratio=0),
        out_channels=channels, featmap_strides=STRIDES)


def make_feats(img: int = 128, channels: int = 2, batch: int = 2):
    return tuple(torch.rand(batch, channels, img // s, img // s) for s in STRIDES)


def square_rois(sides, batch_idx=0):
    return torch.tensor([[batch_idx, 0., 0., s, s] for s in sides])


def test_map_roi_levels_hand_values():
    extractor = make_extractor()
    # scale = sqrt(w * h); level = floor(log2(scale / 56)), clamped to [0, 3].
    rois = square_rois([32, 112, 224, 448, 1000])
    assert extractor.map_roi_levels(rois, 4).tolist() == [0, 1, 2, 3, 3]
    # A 28 x 112 RoI has scale 56: below 112, so the finest level; 111.9 px is still level 0.
    rois = torch.tensor([[0, 0, 0, 28, 112], [0, 0, 0, 111.9, 111.9]])
    assert extractor.map_roi_levels(rois, 4).tolist() == [0, 0]
    # With only two levels everything from 112 px up lands on the last one.
    assert extractor.map_roi_levels(square_rois([32, 224, 1000]), 2).tolist() == [0, 1, 1]


def test_pooled_features_equal_torchvision_roi_align_on_the_mapped_level():
    extractor = make_extractor()
    feats = make_feats()
    rois = torch.tensor([
        [0, 0., 0., 32., 32.],  # level 0
        [1, 10., 10., 122., 122.],  # 112 px: level 1
        [1, 0., 0., 224., 224.],  # level 2
        [0, 4., 8., 452., 456.],  # level 3
        [0, 20., 30., 50., 40.],  # level 0 again: output keeps the input order
    ])
    out = extractor(feats, rois)
    assert out.shape == (5, 2, 7, 7)
    for i, level in enumerate([0, 1, 2, 3, 0]):
        expected = roi_align(feats[level], rois[i:i + 1], (7, 7),
                             spatial_scale=1.0 / STRIDES[level], sampling_ratio=0,
                             aligned=True)
        # on a CPU the layer pools by a weighted gather: float-rounding differences only
        torch.testing.assert_close(out[i:i + 1], expected, rtol=1e-5, atol=1e-6)


def test_empty_rois_give_an_empty_batch_of_features():
    extractor = make_extractor(output_size=14, channels=3)
    out = extractor(make_feats(channels=3), torch.zeros(0, 5))
    assert out.shape == (0, 3, 14, 14)


def test_roi_scale_factor_enlarges_the_window_but_keeps_the_level():
    extractor = make_extractor()
    feats = make_feats()
    roi = torch.tensor([[0, 30., 30., 90., 90.]])  # 60 px: level 0; doubled, 120 px
    out = extractor(feats, roi, roi_scale_factor=2.0)
    expected = roi_align(feats[0], torch.tensor([[0, 0., 0., 120., 120.]]), (7, 7),
                         spatial_scale=0.25, sampling_ratio=0, aligned=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_single_level_pools_every_roi_from_it():
    extractor = SingleRoIExtractor(roi_layer=dict(type='RoIAlign', output_size=(2, 3)),
                                   out_channels=1, featmap_strides=[8])
    feat = torch.arange(64.).view(1, 1, 8, 8)
    rois = square_rois([64, 500])
    out = extractor((feat, ), rois)
    assert out.shape == (2, 1, 2, 3)
    torch.testing.assert_close(out, roi_align(feat, rois, (2, 3), 1 / 8, 0, True))


def test_extractor_holds_no_weights():
    assert make_extractor().state_dict() == {}


def test_roi_align_matches_torchvision_and_rejects_max_pooling():
    layer = RoIAlign(output_size=3, spatial_scale=0.5, sampling_ratio=2, aligned=False)
    feats = torch.rand(1, 2, 10, 10)
    rois = torch.tensor([[0, 1.5, 2., 15., 11.]])
    torch.testing.assert_close(layer(feats, rois),
                               roi_align(feats, rois, (3, 3), 0.5, 2, False))
    with pytest.raises(ValueError, match="pool_mode must be 'avg'"):
        RoIAlign(output_size=7, pool_mode='max')
