"""Convert an official Swin Transformer checkpoint (microsoft/Swin-Transformer) to the
``SwinTransformer`` key layout, as mmdetection 3.3's ``swin_converter`` does.

==================================  =============================================
official key                        mmdetection key (all prefixed ``backbone.``)
==================================  =============================================
``patch_embed.proj.*``              ``patch_embed.projection.*``
``layers.i.blocks.j.attn.*``        ``stages.i.blocks.j.attn.w_msa.*``
``layers.i.blocks.j.mlp.fc1.*``     ``stages.i.blocks.j.ffn.layers.0.0.*``
``layers.i.blocks.j.mlp.fc2.*``     ``stages.i.blocks.j.ffn.layers.1.*``
``layers.i.downsample.*``           ``stages.i.downsample.*`` (values reordered)
``head.*``                          dropped (the classifier)
anything else                       unchanged
==================================  =============================================

The official patch merging concatenates the 2x2 neighbours as four channel blocks in the
order (0, 0), (1, 0), (0, 1), (1, 1) (row, col): feature ``k * C + c``. ``PatchMerging``
unfolds them channel-major in (0, 0), (0, 1), (1, 0), (1, 1) order: feature ``c * 4 + k'``.
The downsample's ``reduction.weight`` columns and ``norm`` vectors are permuted accordingly.
The ``qkv`` weights need no change: both layouts split them as [3, heads, head_dims].
"""
from collections import OrderedDict
from typing import Dict, Mapping

import torch
from torch import Tensor

__all__ = ['swin_converter', 'official_to_unfold_order']

# Position k' of PatchMerging's unfold order -> block k of the official concatenation:
# unfold (0,0)->0, (0,1)->2, (1,0)->1, (1,1)->3.
_OFFICIAL_BLOCK_OF_UNFOLD_POS = (0, 2, 1, 3)


def official_to_unfold_order(channels: int) -> Tensor:
    """Index that reorders official merged features into ``PatchMerging``'s order.

    Args:
        channels (int): ``4 * C``, the merged feature length.

    Returns:
        Tensor: int64 [4 * C]; ``new[..., f] = official[..., index[f]]``, where new feature
        ``f = c * 4 + k'`` takes official feature ``block(k') * C + c``.
    """
    per_block = channels // 4
    c = torch.arange(per_block)[:, None]  # [C, 1]
    blocks = torch.tensor(_OFFICIAL_BLOCK_OF_UNFOLD_POS)[None, :]  # [1, 4]
    return (blocks * per_block + c).reshape(-1)


def _rename_stage_key(key: str) -> str:
    """Official ``layers.*`` key -> mmdetection ``stages.*`` key (no value change)."""
    if 'attn.' in key:
        key = key.replace('attn.', 'attn.w_msa.')
    elif 'mlp.fc1.' in key:
        key = key.replace('mlp.fc1.', 'ffn.layers.0.0.')
    elif 'mlp.fc2.' in key:
        key = key.replace('mlp.fc2.', 'ffn.layers.1.')
    elif 'mlp.' in key:
        key = key.replace('mlp.', 'ffn.')
    return key.replace('layers', 'stages', 1)


def swin_converter(ckpt: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Map an official Swin state_dict to mmdetection keys and layouts.

    Args:
        ckpt (Mapping[str, Tensor]): The official ``model`` state_dict.

    Returns:
        OrderedDict[str, Tensor]: Keys prefixed ``backbone.``; see the module docstring. The
        classifier ``head.*`` is dropped.
    """
    converted = OrderedDict()
    for key, value in ckpt.items():
        if key.startswith('head'):
            continue
        if key.startswith('layers'):
            # Only the downsample's reduction/norm change values: see the module docstring.
            if 'downsample' in key and 'attn.' not in key and 'mlp.' not in key:
                if 'reduction.' in key:
                    value = value[:, official_to_unfold_order(value.shape[1])]
                elif 'norm.' in key:
                    value = value[official_to_unfold_order(value.shape[0])]
            key = _rename_stage_key(key)
        elif key.startswith('patch_embed') and 'proj' in key:
            key = key.replace('proj', 'projection')
        converted['backbone.' + key] = value
    return converted
