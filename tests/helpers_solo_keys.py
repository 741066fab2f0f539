"""Expected ``state_dict`` entries of SOLO / SOLOv2 models, written from mmdetection 3.3's
definitions (not dumped from our modules).

- ``SOLOHead._init_layers``: ``mask_convs.i`` / ``cls_convs.i`` are ``stacked_convs`` mmcv
  ConvModules (3x3, GN: bias-free conv + ``gn``); the first mask conv reads
  ``in_channels + 2`` (CoordConv), the first class conv ``in_channels``.
  ``conv_mask_list.l`` is a 1x1 ``nn.Conv2d`` to ``num_grids[l]**2``; ``conv_cls`` a 3x3
  ``nn.Conv2d`` to ``num_classes``.
- ``DecoupledSOLOHead``: ``mask_convs_x.i`` / ``mask_convs_y.i`` (first reads
  ``in_channels + 1``), ``cls_convs.i``; ``conv_mask_list_x.l`` / ``conv_mask_list_y.l`` 3x3
  to ``num_grids[l]``; ``conv_cls``.
- ``DecoupledSOLOLightHead``: ``mask_convs.i`` (first ``in_channels + 2``), ``cls_convs.i``,
  the x/y predictors and ``conv_cls``.
- ``SOLOV2Head``: ``cls_convs.i`` / ``kernel_convs.i`` (first kernel conv ``in_channels +
  2``; ``bias=norm_cfg is None``), ``conv_cls`` and ``conv_kernel`` (3x3 to ``E * k * k``),
  ``mask_feature_head`` = ``MaskFeatModule``: ``convs_all_levels.l`` holds ``conv0`` for
  level 0, else ``conv{j}`` (+ parameter-free ``upsample{j}``) for j < l, the first one
  reading ``in_channels`` (``+ 2`` at ``end_level``), the others ``feat_channels``;
  ``conv_pred`` a 1x1 ConvModule to ``out_channels``.
- ResNet-18 and the FPN: see ``helpers_common_keys``.

Every function returns ``{key: shape}``.
"""
from typing import Optional, Sequence

from helpers_atss_gfl_keys import conv_gn
from helpers_common_keys import conv2d, fpn
# ``resnet18`` is re-exported: test_solov2.py imports it from here.
from helpers_common_keys import resnet18  # noqa: F401
from helpers_detr_keys import resnet50
from helpers_state_dict import Shapes

COCO_GRIDS = (40, 36, 24, 16, 12)


def _k(prefix: str, name: str) -> str:
    """``prefix.name``, or ``name`` for the module itself (empty prefix)."""
    return f'{prefix}.{name}' if prefix else name


def _tower(prefix: str, first_in: int, feat: int, stacked_convs: int) -> Shapes:
    keys = {}
    for i in range(stacked_convs):
        keys.update(conv_gn(_k(prefix, f'{i}'), first_in if i == 0 else feat, feat))
    return keys


def solo_head(prefix: str = 'mask_head', num_classes: int = 80, in_channels: int = 256,
              feat_channels: int = 256, stacked_convs: int = 7,
              num_grids: Sequence[int] = COCO_GRIDS) -> Shapes:
    keys = {**_tower(_k(prefix, 'mask_convs'), in_channels + 2, feat_channels,
                     stacked_convs),
            **_tower(_k(prefix, 'cls_convs'), in_channels, feat_channels, stacked_convs)}
    for lvl, grid in enumerate(num_grids):
        keys.update(conv2d(_k(prefix, f'conv_mask_list.{lvl}'), feat_channels, grid**2, 1))
    keys.update(conv2d(_k(prefix, 'conv_cls'), feat_channels, num_classes, 3))
    return keys


def _xy_predictors(prefix: str, num_classes: int, feat_channels: int,
                   num_grids: Sequence[int]) -> Shapes:
    keys = {}
    for axis in ('x', 'y'):
        for lvl, grid in enumerate(num_grids):
            keys.update(conv2d(_k(prefix, f'conv_mask_list_{axis}.{lvl}'), feat_channels,
                               grid, 3))
    keys.update(conv2d(_k(prefix, 'conv_cls'), feat_channels, num_classes, 3))
    return keys


def decoupled_solo_head(prefix: str = 'mask_head', num_classes: int = 80,
                        in_channels: int = 256, feat_channels: int = 256,
                        stacked_convs: int = 7,
                        num_grids: Sequence[int] = COCO_GRIDS) -> Shapes:
    return {
        **_tower(_k(prefix, 'mask_convs_x'), in_channels + 1, feat_channels, stacked_convs),
        **_tower(_k(prefix, 'mask_convs_y'), in_channels + 1, feat_channels, stacked_convs),
        **_tower(_k(prefix, 'cls_convs'), in_channels, feat_channels, stacked_convs),
        **_xy_predictors(prefix, num_classes, feat_channels, num_grids),
    }


def decoupled_solo_light_head(prefix: str = 'mask_head', num_classes: int = 80,
                              in_channels: int = 256, feat_channels: int = 256,
                              stacked_convs: int = 4,
                              num_grids: Sequence[int] = COCO_GRIDS) -> Shapes:
    return {
        **_tower(_k(prefix, 'mask_convs'), in_channels + 2, feat_channels, stacked_convs),
        **_tower(_k(prefix, 'cls_convs'), in_channels, feat_channels, stacked_convs),
        **_xy_predictors(prefix, num_classes, feat_channels, num_grids),
    }


def mask_feat_module(prefix: str, in_channels: int, feat_channels: int, out_channels: int,
                     start_level: int = 0, end_level: int = 3) -> Shapes:
    """MaskFeatModule with GN everywhere (the COCO configs)."""
    keys = {}
    for idx, level in enumerate(range(start_level, end_level + 1)):
        level_prefix = _k(prefix, f'convs_all_levels.{idx}')
        if level == 0:
            keys.update(conv_gn(f'{level_prefix}.conv0', in_channels, feat_channels))
        for j in range(level):
            if j == 0:
                c_in = in_channels + 2 if level == end_level else in_channels
            else:
                c_in = feat_channels
            keys.update(conv_gn(f'{level_prefix}.conv{j}', c_in, feat_channels))
    keys.update(conv_gn(_k(prefix, 'conv_pred'), feat_channels, out_channels, 1))
    return keys


def solov2_head(prefix: str = 'mask_head', num_classes: int = 80, in_channels: int = 256,
                feat_channels: int = 512, stacked_convs: int = 4, mask_feat_channels: int = 128,
                mask_out_channels: int = 256, dynamic_conv_size: int = 1,
                num_grids: Sequence[int] = COCO_GRIDS) -> Shapes:
    del num_grids  # SOLOv2's parameters do not depend on the grids
    kernel_out = mask_out_channels * dynamic_conv_size**2
    return {
        **_tower(_k(prefix, 'cls_convs'), in_channels, feat_channels, stacked_convs),
        **_tower(_k(prefix, 'kernel_convs'), in_channels + 2, feat_channels, stacked_convs),
        **conv2d(_k(prefix, 'conv_cls'), feat_channels, num_classes, 3),
        **conv2d(_k(prefix, 'conv_kernel'), feat_channels, kernel_out, 3),
        **mask_feat_module(_k(prefix, 'mask_feature_head'), in_channels, mask_feat_channels,
                           mask_out_channels),
    }


def r50_p2_p6_fpn(backbone: Optional[Shapes] = None,
                  in_channels: Sequence[int] = (256, 512, 1024, 2048)) -> Shapes:
    """Backbone + SOLO's FPN: C2-C5 laterals, P6 a max-pool (no extra convs)."""
    backbone = resnet50('backbone') if backbone is None else backbone
    return {**backbone, **fpn('neck', list(in_channels), 256)}
