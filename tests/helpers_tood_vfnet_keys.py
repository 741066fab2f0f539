"""Expected ``state_dict`` entries of TOOD and VFNet models, written from mmdetection 3.3's
definitions (not dumped from our modules).

``TOODHead._init_layers`` (mmdetection): ``inter_convs`` of ``stacked_convs`` 3x3 ConvModules
(GN: bias-free conv + ``gn``); two ``TaskDecomposition`` modules ``cls_decomp`` /
``reg_decomp``, each holding ``layer_attention`` = Sequential(Conv2d(N * C, N * C // la, 1),
ReLU, Conv2d(N * C // la, N, 1), Sigmoid) with ``la = 8 * N`` and ``reduction_conv`` =
ConvModule(N * C, C, 1, norm GN, ``bias=norm_cfg is None``); ``tood_cls`` (3x3, A * K) and
``tood_reg`` (3x3, A * 4); ``cls_prob_module`` = Sequential(Conv2d(N * C, C // 4, 1), ReLU,
Conv2d(C // 4, 1, 3)); ``reg_offset_module`` likewise ending in 8 channels; one ``Scale``
per anchor stride.

``VFNetHead._init_layers``: AnchorFreeHead's ``cls_convs`` / ``reg_convs`` (GN ConvModules),
``vfnet_reg_conv`` (ConvModule 3x3, GN, ``bias=conv_bias``: none with GN), ``vfnet_reg``
(3x3, 4), ``scales``, ``vfnet_reg_refine_dconv`` (mmcv ``DeformConv2d``: ``weight`` only),
``vfnet_reg_refine`` (3x3, 4), ``scales_refine``, ``vfnet_cls_dconv`` and ``vfnet_cls``
(3x3, K). mmdetection's FPN adds no parameters for ``relu_before_extra_convs``.
"""
from helpers_atss_gfl_keys import Shapes, conv_gn, r50_fpn
from helpers_common_keys import conv2d


def _key(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def _scales(prefix: str, name: str, num_levels: int) -> Shapes:
    return {_key(prefix, f'{name}.{i}.scale'): () for i in range(num_levels)}


def task_decomposition(prefix: str, feat_channels: int, stacked_convs: int,
                       la_down_rate: int) -> Shapes:
    """TaskDecomposition with a GN ``reduction_conv``."""
    in_c = feat_channels * stacked_convs
    hidden = in_c // la_down_rate
    return {
        **conv2d(_key(prefix, 'layer_attention.0'), in_c, hidden, 1),
        **conv2d(_key(prefix, 'layer_attention.2'), hidden, stacked_convs, 1),
        **conv_gn(_key(prefix, 'reduction_conv'), in_c, feat_channels, 1),
    }


def tood_head(prefix: str = 'bbox_head', in_channels: int = 256, feat_channels: int = 256,
              num_classes: int = 80, stacked_convs: int = 6, num_anchors: int = 1,
              num_levels: int = 5) -> Shapes:
    """TOODHead with ``num_dcn=0`` and GN."""
    keys = {}
    for i in range(stacked_convs):
        keys.update(conv_gn(_key(prefix, f'inter_convs.{i}'),
                            in_channels if i == 0 else feat_channels, feat_channels))
    for decomp in ('cls_decomp', 'reg_decomp'):
        keys.update(task_decomposition(_key(prefix, decomp), feat_channels, stacked_convs,
                                       stacked_convs * 8))
    stack_c = feat_channels * stacked_convs
    keys.update({
        **conv2d(_key(prefix, 'tood_cls'), feat_channels, num_anchors * num_classes, 3),
        **conv2d(_key(prefix, 'tood_reg'), feat_channels, num_anchors * 4, 3),
        **conv2d(_key(prefix, 'cls_prob_module.0'), stack_c, feat_channels // 4, 1),
        **conv2d(_key(prefix, 'cls_prob_module.2'), feat_channels // 4, 1, 3),
        **conv2d(_key(prefix, 'reg_offset_module.0'), stack_c, feat_channels // 4, 1),
        **conv2d(_key(prefix, 'reg_offset_module.2'), feat_channels // 4, 8, 3),
        **_scales(prefix, 'scales', num_levels),
    })
    return keys


def vfnet_head(prefix: str = 'bbox_head', in_channels: int = 256, feat_channels: int = 256,
               num_classes: int = 80, stacked_convs: int = 3, num_levels: int = 5) -> Shapes:
    """VFNetHead with GN and ``dcn_on_last_conv=False``."""
    keys = {}
    for tower in ('cls_convs', 'reg_convs'):
        for i in range(stacked_convs):
            keys.update(conv_gn(_key(prefix, f'{tower}.{i}'),
                                in_channels if i == 0 else feat_channels, feat_channels))
    keys.update({
        **conv_gn(_key(prefix, 'vfnet_reg_conv'), feat_channels, feat_channels),
        **conv2d(_key(prefix, 'vfnet_reg'), feat_channels, 4, 3),
        **_scales(prefix, 'scales', num_levels),
        _key(prefix, 'vfnet_reg_refine_dconv.weight'): (feat_channels, feat_channels, 3, 3),
        **conv2d(_key(prefix, 'vfnet_reg_refine'), feat_channels, 4, 3),
        **_scales(prefix, 'scales_refine', num_levels),
        _key(prefix, 'vfnet_cls_dconv.weight'): (feat_channels, feat_channels, 3, 3),
        **conv2d(_key(prefix, 'vfnet_cls'), feat_channels, num_classes, 3),
    })
    return keys


def tood_r50_fpn_coco() -> Shapes:
    """tood_r50_fpn_1x_coco.py (and its anchor-based variant: the same keys)."""
    return {**r50_fpn(), **tood_head()}


def vfnet_r50_fpn_coco() -> Shapes:
    """vfnet_r50_fpn_1x_coco.py."""
    return {**r50_fpn(), **vfnet_head()}
