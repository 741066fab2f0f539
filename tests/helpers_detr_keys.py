"""Expected ``state_dict`` entries of DETR-family models, written from the definitions in
mmdetection 3.3 / mmcv 2.x (not dumped from our own modules).

mmcv's ``MultiheadAttention`` wraps ``nn.MultiheadAttention`` as ``attn``; mmcv's
``MultiScaleDeformableAttention`` holds ``sampling_offsets`` (heads x levels x points x 2
outputs), ``attention_weights`` (heads x levels x points), ``value_proj`` and
``output_proj``; mmcv's ``FFN`` holds ``layers.0.0`` (first Linear, in a Sequential with the
activation) and ``layers.1`` (last Linear). Every function returns ``{key: shape}``.
"""
from typing import Dict, Tuple

Shapes = Dict[str, Tuple[int, ...]]


def linear(prefix: str, out_f: int, in_f: int) -> Shapes:
    return {f'{prefix}.weight': (out_f, in_f), f'{prefix}.bias': (out_f, )}


def layer_norm(prefix: str, dims: int) -> Shapes:
    return {f'{prefix}.weight': (dims, ), f'{prefix}.bias': (dims, )}


def batch_norm(prefix: str, channels: int) -> Shapes:
    return {**{f'{prefix}.{n}': (channels, )
               for n in ('weight', 'bias', 'running_mean', 'running_var')},
            f'{prefix}.num_batches_tracked': ()}


def multihead_attn(prefix: str, dims: int = 256) -> Shapes:
    return {f'{prefix}.attn.in_proj_weight': (3 * dims, dims),
            f'{prefix}.attn.in_proj_bias': (3 * dims, ),
            **linear(f'{prefix}.attn.out_proj', dims, dims)}


def ms_deform_attn(prefix: str, dims: int = 256, heads: int = 8, levels: int = 4,
                   points: int = 4) -> Shapes:
    return {**linear(f'{prefix}.sampling_offsets', heads * levels * points * 2, dims),
            **linear(f'{prefix}.attention_weights', heads * levels * points, dims),
            **linear(f'{prefix}.value_proj', dims, dims),
            **linear(f'{prefix}.output_proj', dims, dims)}


def ffn(prefix: str, dims: int = 256, hidden: int = 1024) -> Shapes:
    return {**linear(f'{prefix}.layers.0.0', hidden, dims),
            **linear(f'{prefix}.layers.1', dims, hidden)}


def resnet50(prefix: str = 'backbone') -> Shapes:
    """ResNet-50 (pytorch style): stem, then 3/4/6/3 bottlenecks of width 64..512 (x4 out)."""
    keys = {f'{prefix}.conv1.weight': (64, 3, 7, 7), **batch_norm(f'{prefix}.bn1', 64)}
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for block in range(blocks):
            p = f'{prefix}.layer{stage}.{block}'
            keys[f'{p}.conv1.weight'] = (width, in_ch, 1, 1)
            keys[f'{p}.conv2.weight'] = (width, width, 3, 3)
            keys[f'{p}.conv3.weight'] = (width * 4, width, 1, 1)
            for i, ch in ((1, width), (2, width), (3, width * 4)):
                keys.update(batch_norm(f'{p}.bn{i}', ch))
            if block == 0:  # the first block of a stage changes channels (and stride)
                keys[f'{p}.downsample.0.weight'] = (width * 4, in_ch, 1, 1)
                keys.update(batch_norm(f'{p}.downsample.1', width * 4))
            in_ch = width * 4
    return keys
