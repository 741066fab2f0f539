"""Expected ``state_dict`` entries of the pieces most zoo models share: a plain conv, mmcv's
``ConvModule``, mmdetection's ``FPN`` and the ResNet-18 backbone, written from mmdetection
3.3's and mmcv's definitions (not dumped from our own modules). The family helpers
(``helpers_*_keys.py``) build on these.

- ``ConvModule``: ``conv`` (with a bias only without a norm, ``bias='auto'``) and the norm
  layer, which mmcv names ``bn`` (weight, bias, running stats, batch counter) or ``gn``
  (weight and bias).
- ``FPN`` (necks/fpn.py): ``lateral_convs.{i}`` 1x1 and ``fpn_convs.{i}`` 3x3 ConvModules for
  the used backbone levels ``in_channels[start_level:]``. With ``add_extra_convs`` each level
  past them is a 3x3 stride-2 ConvModule ``fpn_convs.{i}``: the first reads the last used
  backbone map (``'on_input'``) or ``out_channels`` (``'on_output'`` / ``'on_lateral'``), the
  later ones ``out_channels``; without it those levels are max-pools (no parameters).
  ``norm_cfg`` puts a norm in every ConvModule, except the laterals with
  ``no_norm_on_lateral``.
- ``ResNet`` depth 18 (backbones/resnet.py): stem ``conv1`` 7x7 + ``bn1``, then two
  ``BasicBlock``s per stage (``conv1``/``bn1``, ``conv2``/``bn2``, 3x3) of widths 64-512,
  with a ``downsample`` (``.0`` 1x1 conv, ``.1`` BN) in the first block of stages 2-4.

Every function returns ``{key: shape}``; ``prefix`` '' gives the keys of the module itself.
"""
from typing import Optional, Sequence

from helpers_state_dict import Shapes, bn

# ResNet-50's C2-C5 widths, the FPN input of the R-50 configs.
R50_CHANNELS = (256, 512, 1024, 2048)


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def conv2d(prefix: str, in_c: int, out_c: int, k: int, bias: bool = True) -> Shapes:
    """A plain ``nn.Conv2d`` (or a ConvModule's ``conv``): weight [out, in, k, k] (+ bias)."""
    keys = {f'{prefix}.weight': (out_c, in_c, k, k)}
    if bias:
        keys[f'{prefix}.bias'] = (out_c, )
    return keys


def conv_module(prefix: str, in_c: int, out_c: int, k: int,
                norm_kind: Optional[str] = None) -> Shapes:
    """mmcv ConvModule: ``conv`` (biased only without a norm) and ``bn`` / ``gn``."""
    keys = {_join(prefix, 'conv.weight'): (out_c, in_c, k, k)}
    if norm_kind is None:
        keys[_join(prefix, 'conv.bias')] = (out_c, )
    elif norm_kind == 'bn':
        keys.update(bn(_join(prefix, 'bn'), out_c))
    else:
        keys.update({_join(prefix, f'{norm_kind}.weight'): (out_c, ),
                     _join(prefix, f'{norm_kind}.bias'): (out_c, )})
    return keys


def fpn(prefix: str = 'neck', in_channels: Sequence[int] = R50_CHANNELS,
        out_channels: int = 256, start_level: int = 0, num_outs: int = 5,
        extra_source: Optional[str] = None, norm_kind: Optional[str] = None,
        no_norm_on_lateral: bool = False) -> Shapes:
    """FPN on ``in_channels[start_level:]`` with ``num_outs`` outputs.

    Args:
        extra_source: ``add_extra_convs`` (None: the extra levels are max-pools).
        norm_kind: None, ``'bn'`` or ``'gn'``: the ConvModules' norm.
        no_norm_on_lateral: Laterals without the norm (so with a conv bias).
    """
    used = list(in_channels[start_level:])
    lateral_norm = None if no_norm_on_lateral else norm_kind
    keys = {}
    for i, c_in in enumerate(used):
        keys.update(conv_module(_join(prefix, f'lateral_convs.{i}'), c_in, out_channels, 1,
                                lateral_norm))
        keys.update(conv_module(_join(prefix, f'fpn_convs.{i}'), out_channels, out_channels,
                                3, norm_kind))
    if extra_source is not None:
        for i in range(len(used), num_outs):
            c_in = used[-1] if i == len(used) and extra_source == 'on_input' else out_channels
            keys.update(conv_module(_join(prefix, f'fpn_convs.{i}'), c_in, out_channels, 3,
                                    norm_kind))
    return keys


def resnet18(prefix: str = 'backbone') -> Shapes:
    """ResNet-18 (pytorch style): BasicBlocks, two per stage, widths 64-512."""
    keys = {_join(prefix, 'conv1.weight'): (64, 3, 7, 7), **bn(_join(prefix, 'bn1'), 64)}
    in_c = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            p = _join(prefix, f'layer{stage}.{block}')
            keys[f'{p}.conv1.weight'] = (width, in_c, 3, 3)
            keys.update(bn(f'{p}.bn1', width))
            keys[f'{p}.conv2.weight'] = (width, width, 3, 3)
            keys.update(bn(f'{p}.bn2', width))
            if block == 0 and in_c != width:
                keys[f'{p}.downsample.0.weight'] = (width, in_c, 1, 1)
                keys.update(bn(f'{p}.downsample.1', width))
            in_c = width
    return keys
