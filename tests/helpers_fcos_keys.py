"""Expected ``state_dict`` entries of mmdetection 3.3's FCOS models, written from the
definitions (not dumped from our own modules):

- ``FPN``: see ``helpers_common_keys.fpn``.
- ``AnchorFreeHead`` (dense_heads/anchor_free_head.py): ``cls_convs.{i}`` and
  ``reg_convs.{i}``, 3x3 ConvModules from ``in_channels`` (first) / ``feat_channels`` to
  ``feat_channels``; the conv has a bias when ``conv_bias`` is True, or 'auto' without a norm;
  mmcv names a GroupNorm layer ``gn`` (weight and bias only, no running statistics). Then the
  3x3 predictors ``conv_cls`` (``num_classes`` outputs for a sigmoid loss) and ``conv_reg``
  (4).
- ``FCOSHead`` (dense_heads/fcos_head.py): adds the 3x3 ``conv_centerness`` (1 output) and
  one mmcv ``Scale`` per stride, whose parameter ``scale`` is a 0-d tensor.

Every function returns ``{key: shape}``.
"""
from typing import Optional

from helpers_common_keys import conv2d
# ``fpn`` is re-exported: the FCOS-family detector tests import it from here.
from helpers_common_keys import fpn  # noqa: F401
from helpers_state_dict import Shapes


def fcos_head(prefix: str = 'bbox_head', num_classes: int = 80, in_channels: int = 256,
              feat_channels: int = 256, stacked_convs: int = 4, num_levels: int = 5,
              norm: Optional[str] = 'gn', conv_bias: bool = False) -> Shapes:
    """FCOSHead: two towers, ``conv_cls`` / ``conv_reg`` / ``conv_centerness`` and the
    per-level scales; ``prefix`` '' for a head on its own. ``norm`` is the ConvModule's norm
    layer name (None: no norm)."""
    def key(name: str) -> str:
        return f'{prefix}.{name}' if prefix else name

    keys = {}
    for tower in ('cls_convs', 'reg_convs'):
        for i in range(stacked_convs):
            c_in = in_channels if i == 0 else feat_channels
            keys.update(conv2d(key(f'{tower}.{i}.conv'), c_in, feat_channels, 3,
                               bias=conv_bias))
            if norm is not None:
                keys[key(f'{tower}.{i}.{norm}.weight')] = (feat_channels, )
                keys[key(f'{tower}.{i}.{norm}.bias')] = (feat_channels, )
    keys.update(conv2d(key('conv_cls'), feat_channels, num_classes, 3))
    keys.update(conv2d(key('conv_reg'), feat_channels, 4, 3))
    keys.update(conv2d(key('conv_centerness'), feat_channels, 1, 3))
    for level in range(num_levels):
        keys[key(f'scales.{level}.scale')] = ()
    return keys
