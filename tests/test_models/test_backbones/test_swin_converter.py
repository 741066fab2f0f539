"""swin_converter (official Swin checkpoint layout -> mmdetection keys) and SwinTransformer's
Pretrained init path: prefixes, conversion, bias-table resizing, absolute position embedding."""
import pytest
import torch
import torch.nn.functional as F

from mmdet_lite.models.backbones import SwinTransformer
from mmdet_lite.models.backbones.swin import swin_converter
from mmdet_lite.models.layers import PatchMerging

TINY = dict(embed_dims=8, depths=(2, 2), num_heads=(2, 4), strides=(4, 2), window_size=3,
            out_indices=(0, 1), drop_path_rate=0.)


def randomized(model):
    """Fill every float parameter/buffer with random values (seeded by the caller)."""
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.randn_like(value))
    return model


def test_converter_renames_keys_and_keeps_values():
    v = {name: torch.randn(3) for name in 'abcdefghij'}
    official = {
        'patch_embed.proj.weight': v['a'],
        'patch_embed.norm.bias': v['b'],
        'layers.0.blocks.1.attn.qkv.weight': v['c'],
        'layers.0.blocks.1.attn.relative_position_bias_table': v['d'],
        'layers.2.blocks.0.mlp.fc1.bias': v['e'],
        'layers.2.blocks.0.mlp.fc2.weight': v['f'],
        'layers.1.blocks.0.norm1.weight': v['g'],
        'layers.1.blocks.1.attn_mask': v['h'],
        'norm.weight': v['i'],
        'head.weight': v['j'],
        'head.bias': torch.randn(2),
    }
    converted = swin_converter(official)
    assert list(converted) == [
        'backbone.patch_embed.projection.weight',
        'backbone.patch_embed.norm.bias',
        'backbone.stages.0.blocks.1.attn.w_msa.qkv.weight',
        'backbone.stages.0.blocks.1.attn.w_msa.relative_position_bias_table',
        'backbone.stages.2.blocks.0.ffn.layers.0.0.bias',
        'backbone.stages.2.blocks.0.ffn.layers.1.weight',
        'backbone.stages.1.blocks.0.norm1.weight',
        'backbone.stages.1.blocks.1.attn_mask',
        'backbone.norm.weight',
    ]
    for value, key in zip('abcdefghi', converted):
        assert converted[key] is v[value]  # values untouched, qkv included


def test_converter_reorders_patch_merging_to_the_unfold_layout():
    """An official merging (concat of the (0,0), (1,0), (0,1), (1,1) neighbours, LayerNorm,
    Linear) and PatchMerging with the converted weights give the same output."""
    c, out_c, hw = 3, 5, (4, 6)
    weight, gamma, beta = torch.randn(out_c, 4 * c), torch.randn(4 * c), torch.randn(4 * c)
    x = torch.randn(2, hw[0] * hw[1], c)
    grid = x.view(2, *hw, c)
    cat = torch.cat([grid[:, 0::2, 0::2], grid[:, 1::2, 0::2], grid[:, 0::2, 1::2],
                     grid[:, 1::2, 1::2]], dim=-1).view(2, -1, 4 * c)
    official_out = F.layer_norm(cat, (4 * c, ), gamma, beta) @ weight.T

    converted = swin_converter({
        'layers.0.downsample.reduction.weight': weight,
        'layers.0.downsample.norm.weight': gamma,
        'layers.0.downsample.norm.bias': beta,
    })
    merge = PatchMerging(in_channels=c, out_channels=out_c)
    merge.load_state_dict({k[len('backbone.stages.0.downsample.'):]: v
                           for k, v in converted.items()})
    out, out_hw = merge(x, hw)
    assert out_hw == (2, 3)
    torch.testing.assert_close(out, official_out)
    # Hand case, C = 1: official features [(0,0), (1,0), (0,1), (1,1)] -> unfold order
    # [(0,0), (0,1), (1,0), (1,1)], i.e. columns 0, 2, 1, 3.
    hand = swin_converter({'layers.0.downsample.reduction.weight': torch.tensor([[0., 1, 2, 3]])})
    assert hand['backbone.stages.0.downsample.reduction.weight'].tolist() == [[0., 2, 1, 3]]


def to_official(state_dict):
    """mmdetection SwinTransformer keys -> official layout (inverse of the converter)."""
    official = {}
    for key, value in state_dict.items():
        if key.startswith('norm'):
            continue  # per-output norms do not exist in the official model
        if 'downsample' in key:
            c4 = value.shape[-1]
            # unfold feature ch * 4 + k' -> official block(k') * C + ch
            back = value.reshape(*value.shape[:-1], c4 // 4, 4)[..., [0, 2, 1, 3]]
            value = back.transpose(-1, -2).reshape(*value.shape)
        key = (key.replace('stages', 'layers', 1).replace('attn.w_msa.', 'attn.')
               .replace('ffn.layers.0.0.', 'mlp.fc1.').replace('ffn.layers.1.', 'mlp.fc2.')
               .replace('patch_embed.projection', 'patch_embed.proj'))
        official[key] = value
    official['head.weight'] = torch.randn(10, 16)
    return official


def test_init_weights_converts_an_official_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = randomized(SwinTransformer(**TINY)).eval()
    path = tmp_path / 'swin_official.pth'
    torch.save({'model': to_official(source.state_dict())}, path)

    model = SwinTransformer(**TINY, convert_weights=True,
                            init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    model.eval()
    for key, value in source.state_dict().items():
        if not key.startswith('norm'):  # output norms are not in official checkpoints
            assert torch.equal(model.state_dict()[key], value), key
    with torch.no_grad():
        model.norm0.load_state_dict(source.norm0.state_dict())
        model.norm1.load_state_dict(source.norm1.state_dict())
        x = torch.randn(1, 3, 44, 36)
        for a, b in zip(model(x), source(x)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize('wrap', ['state_dict', 'module', 'plain'])
def test_init_weights_loads_backbone_prefixed_keys(tmp_path, wrap):
    torch.manual_seed(1)
    source = randomized(SwinTransformer(**TINY))
    prefix = 'backbone.module.' if wrap == 'module' else 'backbone.'
    weights = {prefix + k: v for k, v in source.state_dict().items()}
    weights['neck.conv.weight'] = torch.randn(2)  # other parts of a detector are ignored
    path = tmp_path / 'det.pth'
    torch.save({'state_dict': weights} if wrap == 'state_dict' else weights, path)
    model = SwinTransformer(**TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_init_weights_resizes_bias_tables_of_another_window_size(tmp_path):
    torch.manual_seed(2)
    source = randomized(SwinTransformer(**{**TINY, 'window_size': 3}))
    key = 'stages.1.blocks.0.attn.w_msa.relative_position_bias_table'
    table = source.state_dict()[key]  # [25, 4]: a 5x5 offset grid per head
    path = tmp_path / 'w3.pth'
    torch.save({'backbone.' + k: v for k, v in source.state_dict().items()}, path)

    model = SwinTransformer(**{**TINY, 'window_size': 4},
                            init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    resized = model.state_dict()[key]
    assert resized.shape == (49, 4)
    index = model.stages[1].blocks[0].attn.w_msa.relative_position_index
    assert index.shape == (16, 16) and index[0, 0] == 24  # this model's (window 4) buffer
    # Independently: per head, the 5x5 grid resized bicubically to 7x7, row-major.
    for head in range(4):
        grid = table[:, head].reshape(1, 1, 5, 5)
        expected = F.interpolate(grid, size=(7, 7), mode='bicubic', align_corners=False)
        torch.testing.assert_close(resized[:, head], expected.flatten())
    assert torch.equal(model.state_dict()['stages.0.blocks.0.attn.w_msa.qkv.weight'],
                       source.state_dict()['stages.0.blocks.0.attn.w_msa.qkv.weight'])


def test_init_weights_skips_tables_with_another_head_count(tmp_path):
    source = randomized(SwinTransformer(**{**TINY, 'num_heads': (1, 4)}))
    path = tmp_path / 'heads.pth'
    torch.save({'backbone.' + k: v for k, v in source.state_dict().items()}, path)
    model = SwinTransformer(**TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    key = 'stages.0.blocks.0.attn.w_msa.relative_position_bias_table'
    assert torch.all(model.state_dict()[key] == 0)
    assert torch.equal(model.stages[1].blocks[0].attn.w_msa.relative_position_bias_table,
                       source.stages[1].blocks[0].attn.w_msa.relative_position_bias_table)


def test_init_weights_loads_a_matching_absolute_position_embedding(tmp_path):
    cfg = {**TINY, 'pretrain_img_size': 32, 'use_abs_pos_embed': True}
    source = randomized(SwinTransformer(**cfg))
    path = tmp_path / 'abs.pth'
    torch.save({'backbone.' + k: v for k, v in source.state_dict().items()}, path)
    model = SwinTransformer(**cfg, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert torch.equal(model.absolute_pos_embed, source.absolute_pos_embed)
    other = SwinTransformer(**{**cfg, 'pretrain_img_size': 48},
                            init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    other.init_weights()  # 144 patches vs 64: skipped, not an error
    assert torch.all(other.absolute_pos_embed == 0)


def test_init_weights_errors(tmp_path):
    missing = SwinTransformer(**TINY, init_cfg=dict(type='Pretrained',
                                                    checkpoint=str(tmp_path / 'no.pth')))
    with pytest.raises(FileNotFoundError, match='no.pth'):
        missing.init_weights()
    with pytest.raises(AssertionError, match='Pretrained'):
        SwinTransformer(**TINY, init_cfg=dict(type='Kaiming')).init_weights()
    path = tmp_path / 'official.pth'
    torch.save({'model': {'patch_embed.proj.weight': torch.randn(8, 3, 4, 4)}}, path)
    unconverted = SwinTransformer(**TINY, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(KeyError, match='convert_weights=True'):
        unconverted.init_weights()
