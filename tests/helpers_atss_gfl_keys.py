"""Expected ``state_dict`` entries of ATSS and GFL models, written from mmdetection 3.3's
definitions (not dumped from our modules).

mmdetection's ``ATSSHead._init_layers`` builds ``cls_convs`` / ``reg_convs`` of
``stacked_convs`` mmcv ConvModules (3x3, GN: the conv has no bias, the norm is named ``gn``),
then ``atss_cls`` (A * C outputs), ``atss_reg`` (A * 4) and ``atss_centerness`` (A), all
``pred_kernel_size`` convs with a bias, and one mmcv ``Scale`` (a 0-d ``scale`` parameter) per
stride. ``GFLHead`` has the same towers, ``gfl_cls`` (C), ``gfl_reg`` (4 * (reg_max + 1)), both
3x3, the scales and ``Integral``'s persistent buffer ``project`` (reg_max + 1 values). The
FPN's keys come from ``helpers_common_keys``. Every function returns ``{key: shape}``;
``prefix`` '' gives the keys of the module itself.
"""
from typing import Dict, Tuple

from helpers_common_keys import R50_CHANNELS, conv2d, fpn
from helpers_detr_keys import resnet50

Shapes = Dict[str, Tuple[int, ...]]


def _key(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def conv_gn(prefix: str, in_c: int, out_c: int, k: int = 3) -> Shapes:
    """ConvModule with GN: bias-free conv, then the GN affine parameters (no running stats)."""
    return {f'{prefix}.conv.weight': (out_c, in_c, k, k), f'{prefix}.gn.weight': (out_c, ),
            f'{prefix}.gn.bias': (out_c, )}


def _towers(prefix: str, in_c: int, feat_c: int, stacked_convs: int) -> Shapes:
    keys = {}
    for tower in ('cls_convs', 'reg_convs'):
        for i in range(stacked_convs):
            keys.update(conv_gn(_key(prefix, f'{tower}.{i}'), in_c if i == 0 else feat_c,
                                feat_c))
    return keys


def _scales(prefix: str, num_levels: int) -> Shapes:
    return {_key(prefix, f'scales.{i}.scale'): () for i in range(num_levels)}


def atss_head(prefix: str = 'bbox_head', in_channels: int = 256, feat_channels: int = 256,
              num_classes: int = 80, stacked_convs: int = 4, num_anchors: int = 1,
              num_levels: int = 5, pred_kernel_size: int = 3) -> Shapes:
    """ATSSHead (sigmoid classification: C class channels per anchor)."""
    k = pred_kernel_size
    return {
        **_towers(prefix, in_channels, feat_channels, stacked_convs),
        **conv2d(_key(prefix, 'atss_cls'), feat_channels, num_anchors * num_classes, k),
        **conv2d(_key(prefix, 'atss_reg'), feat_channels, num_anchors * 4, k),
        **conv2d(_key(prefix, 'atss_centerness'), feat_channels, num_anchors, k),
        **_scales(prefix, num_levels),
    }


def gfl_head(prefix: str = 'bbox_head', in_channels: int = 256, feat_channels: int = 256,
             num_classes: int = 80, stacked_convs: int = 4, reg_max: int = 16,
             num_levels: int = 5) -> Shapes:
    """GFLHead (one anchor per position)."""
    return {
        **_towers(prefix, in_channels, feat_channels, stacked_convs),
        **conv2d(_key(prefix, 'gfl_cls'), feat_channels, num_classes, 3),
        **conv2d(_key(prefix, 'gfl_reg'), feat_channels, 4 * (reg_max + 1), 3),
        **_scales(prefix, num_levels),
        _key(prefix, 'integral.project'): (reg_max + 1, ),
    }


def r50_fpn() -> Shapes:
    """ResNet-50 + the P3-P7 FPN of the ATSS/GFL COCO configs (extra levels on P5)."""
    return {**resnet50('backbone'),
            **fpn('neck', R50_CHANNELS, 256, start_level=1, extra_source='on_output')}


def atss_r50_fpn_coco() -> Shapes:
    """atss_r50_fpn_1x_coco.py."""
    return {**r50_fpn(), **atss_head()}


def gfl_r50_fpn_coco() -> Shapes:
    """gfl_r50_fpn_1x_coco.py."""
    return {**r50_fpn(), **gfl_head()}
