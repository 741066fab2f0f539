"""Expected ``state_dict`` entries of mmdetection 3.3's CondInst heads, written from the
definitions in mmdet/models/dense_heads/condinst_head.py (not dumped from our modules):

- ``CondInstBboxHead`` is ``FCOSHead`` (helpers_fcos_keys.fcos_head) plus ``controller``, a
  3x3 ``nn.Conv2d`` from ``feat_channels`` to ``num_params`` with a bias.
- ``CondInstMaskHead`` has no parameters of its own; its ``mask_feature_head``
  (``MaskFeatModule``) holds ``convs_all_levels.{j}``, an ``nn.Sequential`` with one
  ConvModule named ``conv{start_level + j}`` (3x3, ``in_channels`` -> ``feat_channels``,
  ``bias=False``), ``conv_branch.{i}`` (``num_stacked_convs`` 3x3 ConvModules
  ``feat_channels`` -> ``feat_channels``, ``bias=False``) and ``conv_pred`` (1x1
  ``nn.Conv2d`` to ``out_channels`` with a bias). mmcv names a BN layer ``bn``.

Every function returns ``{key: shape}``.
"""
from typing import Optional

from helpers_common_keys import conv2d
from helpers_fcos_keys import fcos_head
from helpers_state_dict import Shapes, bn


def condinst_bbox_head(prefix: str = 'bbox_head', num_classes: int = 80,
                       in_channels: int = 256, feat_channels: int = 256,
                       stacked_convs: int = 4, num_levels: int = 5, num_params: int = 169,
                       norm: Optional[str] = 'gn', conv_bias: bool = True) -> Shapes:
    """CondInstBboxHead: FCOSHead's keys and ``controller``; ``prefix`` '' for a head on
    its own."""
    keys = fcos_head(prefix, num_classes=num_classes, in_channels=in_channels,
                     feat_channels=feat_channels, stacked_convs=stacked_convs,
                     num_levels=num_levels, norm=norm, conv_bias=conv_bias)
    keys.update(conv2d(f'{prefix}.controller' if prefix else 'controller', feat_channels,
                       num_params, 3))
    return keys


def condinst_mask_head(prefix: str = 'mask_head', in_channels: int = 256,
                       feat_channels: int = 128, start_level: int = 0, end_level: int = 2,
                       out_channels: int = 8, num_stacked_convs: int = 4,
                       norm: Optional[str] = 'bn') -> Shapes:
    """CondInstMaskHead: its MaskFeatModule under ``mask_feature_head``; ``norm`` 'bn' (BN
    with running stats) or None."""
    base = f'{prefix}.mask_feature_head'
    keys = {}

    def conv_module(name: str, c_in: int) -> None:
        keys.update(conv2d(f'{name}.conv', c_in, feat_channels, 3, bias=False))
        if norm == 'bn':
            keys.update(bn(f'{name}.bn', feat_channels))

    for j, level in enumerate(range(start_level, end_level + 1)):
        conv_module(f'{base}.convs_all_levels.{j}.conv{level}', in_channels)
    for i in range(num_stacked_convs):
        conv_module(f'{base}.conv_branch.{i}', feat_channels)
    keys.update(conv2d(f'{base}.conv_pred', feat_channels, out_channels, 1))
    return keys
