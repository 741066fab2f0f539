"""Expected ``state_dict`` entries of mmcv / mmdetection building blocks, written from their
definitions (mmcv ``ConvModule`` names its layers ``conv`` / ``bn`` / ``gn``;
``DepthwiseSeparableConvModule`` holds ``depthwise_conv`` and ``pointwise_conv``; mmdetection's
``CSPLayer`` holds ``main_conv``, ``short_conv``, ``final_conv``, ``blocks`` and
``attention``).

Each function returns ``{key: shape}``; tests compare it with
``{k: tuple(v.shape) for k, v in module.state_dict().items()}``.
"""
from typing import Dict, Tuple

Shapes = Dict[str, Tuple[int, ...]]


def shapes_of(module) -> Shapes:
    """``{key: shape}`` of a module's state_dict."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def bn(prefix: str, channels: int) -> Shapes:
    """BatchNorm2d: affine parameters, running stats and the batch counter."""
    return {
        f'{prefix}.weight': (channels, ),
        f'{prefix}.bias': (channels, ),
        f'{prefix}.running_mean': (channels, ),
        f'{prefix}.running_var': (channels, ),
        f'{prefix}.num_batches_tracked': (),
    }


def conv_bn(prefix: str, in_c: int, out_c: int, k: int, groups: int = 1) -> Shapes:
    """ConvModule with a BN norm layer: the conv has no bias (bias='auto')."""
    return {f'{prefix}.conv.weight': (out_c, in_c // groups, k, k), **bn(f'{prefix}.bn', out_c)}


def conv_bias(prefix: str, in_c: int, out_c: int, k: int) -> Shapes:
    """ConvModule without a norm layer: the conv has a bias."""
    return {f'{prefix}.conv.weight': (out_c, in_c, k, k), f'{prefix}.conv.bias': (out_c, )}


def dw_sep_bn(prefix: str, in_c: int, out_c: int, k: int) -> Shapes:
    """DepthwiseSeparableConvModule with BN: depthwise k x k, then pointwise 1x1."""
    return {
        **conv_bn(f'{prefix}.depthwise_conv', in_c, in_c, k, groups=in_c),
        **conv_bn(f'{prefix}.pointwise_conv', in_c, out_c, 1),
    }


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def csp_layer(prefix: str, in_c: int, out_c: int, num_blocks: int = 1,
              expand_ratio: float = 0.5, cspnext: bool = False, depthwise: bool = False,
              attention: bool = False) -> Shapes:
    """mmdetection's CSPLayer (``prefix`` '' for the layer itself); its blocks are built with
    expansion 1.0 at the mid width."""
    mid = int(out_c * expand_ratio)
    keys = {
        **conv_bn(_join(prefix, 'main_conv'), in_c, mid, 1),
        **conv_bn(_join(prefix, 'short_conv'), in_c, mid, 1),
        **conv_bn(_join(prefix, 'final_conv'), 2 * mid, out_c, 1),
    }
    for i in range(num_blocks):
        block = _join(prefix, f'blocks.{i}')
        if cspnext:  # conv1: 3x3 (depthwise separable if asked), conv2: 5x5 dw-separable
            keys.update(dw_sep_bn(f'{block}.conv1', mid, mid, 3) if depthwise else
                        conv_bn(f'{block}.conv1', mid, mid, 3))
            keys.update(dw_sep_bn(f'{block}.conv2', mid, mid, 5))
        else:  # Darknet: conv1 1x1, conv2 3x3 (depthwise separable if asked)
            keys.update(conv_bn(f'{block}.conv1', mid, mid, 1))
            keys.update(dw_sep_bn(f'{block}.conv2', mid, mid, 3) if depthwise else
                        conv_bn(f'{block}.conv2', mid, mid, 3))
    if attention:
        keys[_join(prefix, 'attention.fc.weight')] = (2 * mid, 2 * mid, 1, 1)
        keys[_join(prefix, 'attention.fc.bias')] = (2 * mid, )
    return keys
