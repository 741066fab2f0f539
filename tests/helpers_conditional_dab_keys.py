"""Expected ``state_dict`` entries of mmdetection 3.3's Conditional DETR and DAB-DETR, written
from its definitions (``conditional_detr_layers.py``, ``dab_detr_layers.py``,
``ConditionalAttention`` in ``layers/transformer/utils.py``, the two heads, and DETR's
ResNet-50 + ChannelMapper + ``DetrTransformerEncoderLayer``).

Each function returns ``{key: shape}``.
"""
from typing import Dict, Tuple

Shapes = Dict[str, Tuple[int, ...]]


def linear(prefix: str, out_ch: int, in_ch: int) -> Shapes:
    return {f'{prefix}.weight': (out_ch, in_ch), f'{prefix}.bias': (out_ch, )}


def layer_norm(prefix: str, dims: int) -> Shapes:
    return {f'{prefix}.weight': (dims, ), f'{prefix}.bias': (dims, )}


def mlp(prefix: str, in_ch: int, hidden: int, out_ch: int, num_layers: int) -> Shapes:
    """mmdetection's ``MLP``: ``layers.{i}`` Linear layers."""
    dims = [in_ch] + [hidden] * (num_layers - 1) + [out_ch]
    keys = {}
    for i in range(num_layers):
        keys.update(linear(f'{prefix}.layers.{i}', dims[i + 1], dims[i]))
    return keys


def ffn(prefix: str, dims: int, hidden: int, prelu: bool = False) -> Shapes:
    """mmcv's FFN with 2 fcs: ``layers.0.0`` Linear (``layers.0.1`` the activation, which has
    a weight only for PReLU), ``layers.1`` Linear."""
    keys = {**linear(f'{prefix}.layers.0.0', hidden, dims),
            **linear(f'{prefix}.layers.1', dims, hidden)}
    if prelu:
        keys[f'{prefix}.layers.0.1.weight'] = (1, )
    return keys


def multihead_attention(prefix: str, dims: int) -> Shapes:
    """mmcv's MultiheadAttention: a packed ``nn.MultiheadAttention`` under ``attn``."""
    return {f'{prefix}.attn.in_proj_weight': (3 * dims, dims),
            f'{prefix}.attn.in_proj_bias': (3 * dims, ),
            **linear(f'{prefix}.attn.out_proj', dims, dims)}


def conditional_attention(prefix: str, dims: int, cross: bool, qpos: bool = True) -> Shapes:
    """ConditionalAttention: five input projections (``qpos_proj`` removed in the later
    cross-attention layers), ``qpos_sine_proj`` for cross-attention, ``out_proj``."""
    names = ['qcontent_proj'] + (['qpos_proj'] if qpos else []) + [
        'kcontent_proj', 'kpos_proj', 'v_proj'] + (['qpos_sine_proj'] if cross else []) + [
            'out_proj']
    keys = {}
    for name in names:
        keys.update(linear(f'{prefix}.{name}', dims, dims))
    return keys


def detr_encoder_layer(prefix: str, dims: int, hidden: int, prelu: bool = False) -> Shapes:
    return {**multihead_attention(f'{prefix}.self_attn', dims),
            **ffn(f'{prefix}.ffn', dims, hidden, prelu),
            **layer_norm(f'{prefix}.norms.0', dims), **layer_norm(f'{prefix}.norms.1', dims)}


def conditional_decoder_layer(prefix: str, dims: int, hidden: int, first: bool,
                              prelu: bool = False) -> Shapes:
    keys = {**conditional_attention(f'{prefix}.self_attn', dims, cross=False),
            **conditional_attention(f'{prefix}.cross_attn', dims, cross=True, qpos=first),
            **ffn(f'{prefix}.ffn', dims, hidden, prelu)}
    for i in range(3):
        keys.update(layer_norm(f'{prefix}.norms.{i}', dims))
    return keys


def _bn(prefix: str, channels: int) -> Shapes:
    return {**{f'{prefix}.{n}': (channels, )
               for n in ('weight', 'bias', 'running_mean', 'running_var')},
            f'{prefix}.num_batches_tracked': ()}


def resnet50_and_mapper() -> Shapes:
    """ResNet-50 (pytorch style, 3/4/6/3 bottlenecks) and a 1x1 ChannelMapper 2048 -> 256."""
    keys = {'backbone.conv1.weight': (64, 3, 7, 7), **_bn('backbone.bn1', 64)}
    in_ch = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=1):
        for block in range(blocks):
            p = f'backbone.layer{stage}.{block}'
            keys[f'{p}.conv1.weight'] = (width, in_ch, 1, 1)
            keys[f'{p}.conv2.weight'] = (width, width, 3, 3)
            keys[f'{p}.conv3.weight'] = (width * 4, width, 1, 1)
            for i, ch in ((1, width), (2, width), (3, width * 4)):
                keys.update(_bn(f'{p}.bn{i}', ch))
            if block == 0:
                keys[f'{p}.downsample.0.weight'] = (width * 4, in_ch, 1, 1)
                keys.update(_bn(f'{p}.downsample.1', width * 4))
            in_ch = width * 4
    keys['neck.convs.0.conv.weight'] = (256, 2048, 1, 1)
    keys['neck.convs.0.conv.bias'] = (256, )
    return keys


def conditional_detr_r50_keys(dims: int = 256, hidden: int = 2048, num_queries: int = 300,
                              num_classes: int = 80) -> Shapes:
    """``conditional-detr_r50_8xb2-50e_coco``."""
    keys = resnet50_and_mapper()
    for i in range(6):
        keys.update(detr_encoder_layer(f'encoder.layers.{i}', dims, hidden))
        keys.update(conditional_decoder_layer(f'decoder.layers.{i}', dims, hidden, i == 0))
    keys.update({**layer_norm('decoder.post_norm', dims),
                 **mlp('decoder.query_scale', dims, dims, dims, 2),
                 **mlp('decoder.ref_point_head', dims, dims, 2, 2)})
    keys['query_embedding.weight'] = (num_queries, dims)
    keys.update({**linear('bbox_head.fc_cls', num_classes, dims),
                 **linear('bbox_head.reg_ffn.layers.0.0', dims, dims),
                 **linear('bbox_head.reg_ffn.layers.1', dims, dims),
                 **linear('bbox_head.fc_reg', 4, dims)})
    return keys


def dab_detr_r50_keys(dims: int = 256, hidden: int = 2048, num_queries: int = 300,
                      num_classes: int = 80) -> Shapes:
    """``dab-detr_r50_8xb2-50e_coco`` (PReLU FFNs, query_dim 4, modulated hw attention)."""
    keys = resnet50_and_mapper()
    for i in range(6):
        keys.update(detr_encoder_layer(f'encoder.layers.{i}', dims, hidden, prelu=True))
        keys.update(conditional_decoder_layer(f'decoder.layers.{i}', dims, hidden, i == 0,
                                              prelu=True))
    keys.update({**mlp('encoder.query_scale', dims, dims, dims, 2),
                 **layer_norm('decoder.post_norm', dims),
                 **mlp('decoder.query_scale', dims, dims, dims, 2),
                 **mlp('decoder.ref_point_head', 2 * dims, dims, dims, 2),
                 **mlp('decoder.ref_anchor_head', dims, dims, 2, 2)})
    keys['query_embedding.weight'] = (num_queries, 4)
    keys.update({**linear('bbox_head.fc_cls', num_classes, dims),
                 **mlp('bbox_head.fc_reg', dims, dims, 4, 3)})
    return keys
