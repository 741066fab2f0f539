"""Expected ``state_dict`` of mmdetection 3.3's ``SwinTransformer``, written from its module
definitions (``mmdet/models/backbones/swin.py``, ``PatchEmbed`` / ``PatchMerging`` and mmcv's
``FFN``)."""
from typing import Dict, Sequence, Tuple


def swin_expected_keys(embed_dims: int, depths: Sequence[int], num_heads: Sequence[int],
                       window_size: int, out_indices: Sequence[int], in_channels: int = 3,
                       patch_size: int = 4, mlp_ratio: int = 4) -> Dict[str, Tuple[int, ...]]:
    """``{key: shape}`` of a SwinTransformer (``patch_norm=True``, default strides)."""
    keys = {
        'patch_embed.projection.weight': (embed_dims, in_channels, patch_size, patch_size),
        'patch_embed.projection.bias': (embed_dims, ),
        'patch_embed.norm.weight': (embed_dims, ),
        'patch_embed.norm.bias': (embed_dims, ),
    }
    table_rows = (2 * window_size - 1)**2
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        c = embed_dims * 2**i
        for j in range(depth):
            p = f'stages.{i}.blocks.{j}'
            keys.update({
                f'{p}.norm1.weight': (c, ), f'{p}.norm1.bias': (c, ),
                f'{p}.attn.w_msa.relative_position_bias_table': (table_rows, heads),
                f'{p}.attn.w_msa.relative_position_index': (window_size**2, window_size**2),
                f'{p}.attn.w_msa.qkv.weight': (3 * c, c), f'{p}.attn.w_msa.qkv.bias': (3 * c, ),
                f'{p}.attn.w_msa.proj.weight': (c, c), f'{p}.attn.w_msa.proj.bias': (c, ),
                f'{p}.norm2.weight': (c, ), f'{p}.norm2.bias': (c, ),
                f'{p}.ffn.layers.0.0.weight': (mlp_ratio * c, c),
                f'{p}.ffn.layers.0.0.bias': (mlp_ratio * c, ),
                f'{p}.ffn.layers.1.weight': (c, mlp_ratio * c), f'{p}.ffn.layers.1.bias': (c, ),
            })
        if i < len(depths) - 1:
            keys.update({
                f'stages.{i}.downsample.norm.weight': (4 * c, ),
                f'stages.{i}.downsample.norm.bias': (4 * c, ),
                f'stages.{i}.downsample.reduction.weight': (2 * c, 4 * c),
            })
    for i in out_indices:
        c = embed_dims * 2**i
        keys.update({f'norm{i}.weight': (c, ), f'norm{i}.bias': (c, )})
    return keys
