"""Expected ``state_dict`` entries of mmdetection 3.3's real-time detection heads, written from
their definitions: ``RTMDetSepBNHead`` (rtmdet_head.py), ``RTMDetInsSepBNHead`` with its
``MaskFeatModule`` (rtmdet_ins_head.py) and ``YOLOXHead`` (yolox_head.py).

Each function returns ``{key: shape}`` with keys under ``prefix`` (``'bbox_head'`` in a
detector). What the definitions imply for the keys:

- ``share_conv=True`` makes every level's 3x3 conv *the same module* as level 0's, but
  ``state_dict`` walks module paths, so each level still lists its ``conv.weight`` (same
  shape, same tensor); only the BNs after them are separate tensors.
- ``RTMDetInsSepBNHead`` appends ``cls_convs`` to both ``self.cls_convs`` and
  ``self.reg_convs`` (mmdetection's quirk), so ``reg_convs.*`` repeats ``cls_convs.*`` and
  no regression tower of its own exists. Its ``rtm_obj`` ModuleList stays empty unless
  ``with_objectness``.
- Heads with a sigmoid classifier predict ``num_classes`` channels (no background); point
  priors mean one prior per location.
- ConvModule with a norm layer names it ``bn`` (BN and SyncBN alike) and has no conv bias.
"""
from helpers_state_dict import Shapes, conv_bn, dw_sep_bn


def conv2d(prefix: str, in_c: int, out_c: int, k: int) -> Shapes:
    """A plain ``nn.Conv2d`` with a bias."""
    return {f'{prefix}.weight': (out_c, in_c, k, k), f'{prefix}.bias': (out_c, )}


def _tower(prefix: str, in_c: int, feat_c: int, stacked_convs: int,
           depthwise: bool = False) -> Shapes:
    """``stacked_convs`` 3x3 ConvModules (BN), the first from ``in_c``, under
    ``prefix.0``, ``prefix.1`` ..."""
    keys = {}
    for i in range(stacked_convs):
        chn = in_c if i == 0 else feat_c
        keys.update(dw_sep_bn(f'{prefix}.{i}', chn, feat_c, 3) if depthwise else
                    conv_bn(f'{prefix}.{i}', chn, feat_c, 3))
    return keys


def rtmdet_sep_bn_head_keys(in_channels: int, feat_channels: int, num_classes: int = 80,
                            stacked_convs: int = 2, num_levels: int = 3,
                            pred_kernel_size: int = 1, with_objectness: bool = False,
                            prefix: str = 'bbox_head') -> Shapes:
    """RTMDetSepBNHead: per level a cls and a reg tower of 3x3 ConvModules (convs shared
    across levels, BNs not) and 1x1 ``rtm_cls`` / ``rtm_reg`` (/ ``rtm_obj``) predictors;
    no Scale layers (unlike RTMDetHead)."""
    keys = {}
    k = pred_kernel_size
    for n in range(num_levels):
        keys.update(_tower(f'{prefix}.cls_convs.{n}', in_channels, feat_channels,
                           stacked_convs))
        keys.update(_tower(f'{prefix}.reg_convs.{n}', in_channels, feat_channels,
                           stacked_convs))
        keys.update(conv2d(f'{prefix}.rtm_cls.{n}', feat_channels, num_classes, k))
        keys.update(conv2d(f'{prefix}.rtm_reg.{n}', feat_channels, 4, k))
        if with_objectness:
            keys.update(conv2d(f'{prefix}.rtm_obj.{n}', feat_channels, 1, k))
    return keys


def num_dynamic_params(num_prototypes: int = 8, dyconv_channels: int = 8,
                       num_dyconvs: int = 3) -> int:
    """Weights + biases of RTMDet-Ins's per-instance dynamic convs: the first takes the
    prototypes plus 2 relative-coordinate maps, the last outputs one mask channel."""
    weights = biases = 0
    for i in range(num_dyconvs):
        if i == 0:
            weights += (num_prototypes + 2) * dyconv_channels
            biases += dyconv_channels
        elif i == num_dyconvs - 1:
            weights += dyconv_channels
            biases += 1
        else:
            weights += dyconv_channels * dyconv_channels
            biases += dyconv_channels
    return weights + biases


def mask_feat_module_keys(prefix: str, in_channels: int, feat_channels: int,
                          num_levels: int = 3, stacked_convs: int = 4,
                          num_prototypes: int = 8) -> Shapes:
    """MaskFeatModule: a 1x1 ``fusion_conv`` over the concatenated levels, a Sequential of
    3x3 ConvModules, and a 1x1 ``projection`` to the prototypes."""
    keys = conv2d(f'{prefix}.fusion_conv', num_levels * in_channels, in_channels, 1)
    keys.update(_tower(f'{prefix}.stacked_convs', in_channels, feat_channels, stacked_convs))
    keys.update(conv2d(f'{prefix}.projection', feat_channels, num_prototypes, 1))
    return keys


def rtmdet_ins_sep_bn_head_keys(in_channels: int, feat_channels: int, num_classes: int = 80,
                                stacked_convs: int = 2, num_levels: int = 3,
                                pred_kernel_size: int = 1, num_prototypes: int = 8,
                                dyconv_channels: int = 8, num_dyconvs: int = 3,
                                with_objectness: bool = False,
                                prefix: str = 'bbox_head') -> Shapes:
    """RTMDetInsSepBNHead: per level cls (= reg) and kernel towers, ``rtm_cls``,
    ``rtm_reg``, ``rtm_kernel`` (/ ``rtm_obj``) predictors, then ``mask_head``."""
    keys = {}
    k = pred_kernel_size
    num_gen_params = num_dynamic_params(num_prototypes, dyconv_channels, num_dyconvs)
    for n in range(num_levels):
        cls_tower = _tower(f'{prefix}.cls_convs.{n}', in_channels, feat_channels,
                           stacked_convs)
        keys.update(cls_tower)
        # reg_convs holds the very same ModuleLists as cls_convs
        keys.update({key.replace('.cls_convs.', '.reg_convs.', 1): shape
                     for key, shape in cls_tower.items()})
        keys.update(_tower(f'{prefix}.kernel_convs.{n}', in_channels, feat_channels,
                           stacked_convs))
        keys.update(conv2d(f'{prefix}.rtm_cls.{n}', feat_channels, num_classes, k))
        keys.update(conv2d(f'{prefix}.rtm_reg.{n}', feat_channels, 4, k))
        keys.update(conv2d(f'{prefix}.rtm_kernel.{n}', feat_channels, num_gen_params, k))
        if with_objectness:
            keys.update(conv2d(f'{prefix}.rtm_obj.{n}', feat_channels, 1, k))
    keys.update(mask_feat_module_keys(f'{prefix}.mask_head', in_channels, feat_channels,
                                      num_levels=num_levels, num_prototypes=num_prototypes))
    return keys


def yolox_head_keys(in_channels: int, feat_channels: int, num_classes: int = 80,
                    stacked_convs: int = 2, num_levels: int = 3, use_depthwise: bool = False,
                    prefix: str = 'bbox_head') -> Shapes:
    """YOLOXHead: per level a cls and a reg Sequential of 3x3 ConvModules (depthwise
    separable if asked) and 1x1 ``conv_cls`` / ``conv_reg`` / ``conv_obj`` predictors, each
    kind in its own ``multi_level_*`` ModuleList."""
    keys = {}
    for n in range(num_levels):
        keys.update(_tower(f'{prefix}.multi_level_cls_convs.{n}', in_channels, feat_channels,
                           stacked_convs, depthwise=use_depthwise))
        keys.update(_tower(f'{prefix}.multi_level_reg_convs.{n}', in_channels, feat_channels,
                           stacked_convs, depthwise=use_depthwise))
        keys.update(conv2d(f'{prefix}.multi_level_conv_cls.{n}', feat_channels, num_classes,
                           1))
        keys.update(conv2d(f'{prefix}.multi_level_conv_reg.{n}', feat_channels, 4, 1))
        keys.update(conv2d(f'{prefix}.multi_level_conv_obj.{n}', feat_channels, 1, 1))
    return keys
