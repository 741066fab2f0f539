"""DetectionTransformer, the DETR family's base: multi-level padding masks and flattening by
hand, a multi-level member written against it, the hook DINO needs."""
import pytest
import torch
from helpers import build_detector, init_weights_quietly, make_batch
from test_detr import tiny_detr_cfg, two_images  # the tiny DETR and its two images
from torch import nn

from mmdet_lite.models.detectors import DETR, DetectionTransformer
from mmdet_lite.utils import register_all_modules


def build_member(member_cls, **changes):
    """A member class that is not registered, built from the tiny DETR config."""
    cfg = tiny_detr_cfg()
    cfg.pop('type')
    for key, value in changes.items():
        cfg[key].update(value)
    register_all_modules()
    model = member_cls(**cfg)
    init_weights_quietly(model)
    return model


def test_the_base_is_abstract():
    with pytest.raises(TypeError, match='abstract'):
        build_member(DetectionTransformer)


def two_level_feats():
    """Stride-16 and stride-32 maps of a batch padded to 128x128."""
    return [torch.randn(2, 32, 8, 8), torch.randn(2, 32, 4, 4)]


def padded_two_images():
    samples = two_images()  # 64x96 and 128x128 images
    for sample in samples:
        sample.set_metainfo(dict(batch_input_shape=(128, 128)))
    return samples


def test_padding_masks_of_several_levels_by_hand():
    model = build_detector(tiny_detr_cfg())
    fine, coarse = model.padding_masks(two_level_feats(), padded_two_images())
    # Nearest sampling reads input pixel (16i, 16j) at 8x8 and (32i, 32j) at 4x4; image 0
    # is valid on rows < 64 and columns < 96.
    expected_fine = torch.ones(8, 8, dtype=torch.bool)
    expected_fine[:4, :6] = False
    expected_coarse = torch.ones(4, 4, dtype=torch.bool)
    expected_coarse[:2, :3] = False
    assert torch.equal(fine[0], expected_fine) and torch.equal(coarse[0], expected_coarse)
    assert not fine[1].any() and not coarse[1].any()  # image 1 fills the batch
    no_metas = model.padding_masks(two_level_feats(), None)
    assert [tuple(m.shape) for m in no_metas] == [(2, 8, 8), (2, 4, 4)]
    assert not any(m.any() for m in no_metas)


def test_flatten_feats_of_several_levels_by_hand():
    model = build_detector(tiny_detr_cfg())
    feats, level_embed = two_level_feats(), torch.randn(2, 32)
    seq = model.flatten_feats(feats, padded_two_images(), level_embed)
    assert seq['feat'].shape == (2, 80, 32) and seq['feat_pos'].shape == (2, 80, 32)
    assert seq['feat_mask'].shape == (2, 80)
    assert seq['spatial_shapes'].tolist() == [[8, 8], [4, 4]]
    assert seq['level_start_index'].tolist() == [0, 64]
    # Valid (w, h) fractions: image 0 covers 6/8 x 4/8 and 3/4 x 2/4 of the two levels.
    torch.testing.assert_close(seq['valid_ratios'],
                               torch.tensor([[[0.75, 0.5]] * 2, [[1.0, 1.0]] * 2]))
    # Level 1 starts at 64; its pixel (i, j) is position 64 + 4i + j.
    torch.testing.assert_close(seq['feat'][:, 64 + 4 * 1 + 2], feats[1][:, :, 1, 2])
    coarse_mask = model.padding_masks(feats, padded_two_images())[1]
    expected_pos = model.positional_encoding(coarse_mask)[:, :, 1, 2] + level_embed[1]
    torch.testing.assert_close(seq['feat_pos'][:, 64 + 4 * 1 + 2], expected_pos)
    assert seq['feat_mask'][0, 64 + 4 * 1 + 3] and not seq['feat_mask'][0, 64 + 4 * 1 + 2]


def test_one_level_is_flattened_without_a_copy():
    model = build_detector(tiny_detr_cfg())
    feat = torch.randn(2, 32, 4, 5)
    seq = model.flatten_feats([feat], None)
    assert seq['feat'].data_ptr() == feat.data_ptr()  # DETR's [B, hw, C] view
    torch.testing.assert_close(seq['feat'][:, 5 * 2 + 3], feat[:, :, 2, 3])
    assert seq['spatial_shapes'].tolist() == [[4, 5]]
    assert seq['level_start_index'].tolist() == [0]
    assert seq['valid_ratios'].tolist() == [[[1.0, 1.0]]] * 2


class TwoLevelDETR(DETR):
    """A member written against the base: DETR over every neck level, with a level embedding
    (the multi-level pre_transformer of Deformable DETR on DETR's layers)."""

    def _init_layers(self) -> None:
        super()._init_layers()
        self.level_embed = nn.Parameter(torch.zeros(2, self.embed_dims))

    def pre_transformer(self, img_feats, batch_data_samples=None):
        seq = self.flatten_feats(img_feats, batch_data_samples, self.level_embed)
        return (dict(feat=seq['feat'], feat_mask=seq['feat_mask'], feat_pos=seq['feat_pos']),
                dict(memory_mask=seq['feat_mask'], memory_pos=seq['feat_pos']))


def test_a_multi_level_member_trains_and_ignores_batch_padding():
    model = build_member(TwoLevelDETR, backbone=dict(out_indices=(2, 3)),  # strides 16, 32
                         neck=dict(in_channels=[32, 64], num_outs=2))
    data = model.data_preprocessor(make_batch(two_images()), True)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.level_embed.grad is not None and model.level_embed.grad.abs().sum() > 0

    model.eval()
    pair = make_batch(two_images())
    alone = dict(inputs=pair['inputs'][:1], data_samples=two_images()[:1])
    with torch.no_grad():
        raw_alone = model(**model.data_preprocessor(alone, False), mode='tensor')
        data_pair = model.data_preprocessor(pair, False)
        raw_pair = model(data_pair['inputs'], data_pair['data_samples'], mode='tensor')
    for single, batched in zip(raw_alone, raw_pair):
        torch.testing.assert_close(batched[:, :1], single, atol=1e-4, rtol=0)


def test_pre_decoder_gets_the_data_samples_when_a_member_asks():
    seen = []

    class WithSamples(DETR):  # as DINO builds denoising queries from the ground truth

        pre_decoder_needs_data_samples = True

        def pre_decoder(self, memory, batch_data_samples=None):
            seen.append(batch_data_samples)
            return super().pre_decoder(memory)

    model = build_member(WithSamples)
    data = model.data_preprocessor(make_batch(two_images()), True)
    model(**data, mode='loss')
    assert seen == [data['data_samples']]
