"""Expected ``state_dict`` entries of mmdetection 3.3's CenterNet-update and AutoAssign heads,
written from the definitions (not dumped from our own modules):

- ``CenterNetUpdateHead`` (dense_heads/centernet_update_head.py): AnchorFreeHead's towers
  (``cls_convs.{i}`` / ``reg_convs.{i}``, 3x3 ConvModules with GN, so without a conv bias),
  its own ``_init_predictor`` (3x3 ``conv_cls`` with ``num_classes`` outputs, 3x3
  ``conv_reg`` with 4) and one mmcv ``Scale`` per stride (``scales.{l}.scale``, 0-d). No
  centerness conv.
- ``AutoAssignHead`` (dense_heads/autoassign_head.py): FCOSHead's layers with ``conv_bias``
  forced to True (every tower conv has a bias next to its GN), plus ``CenterPrior``'s two
  parameters ``center_prior.mean`` and ``center_prior.sigma``, each [num_classes, 2].
- ``CenterNetHead`` (dense_heads/centernet_head.py): ``heatmap_head``, ``wh_head`` and
  ``offset_head``, each an ``nn.Sequential`` of a 3x3 conv (index 0), a ReLU and a 1x1 conv
  (index 2), both with a bias.
- ``CTResNetNeck`` (necks/ct_resnet_neck.py): per stage, ``deconv_layers.{2i}`` a 3x3
  ConvModule with BN (a DCNv2 pack, with its 27-channel ``conv_offset``, when ``use_dcn``) and
  ``deconv_layers.{2i + 1}`` a ConvTranspose2d ConvModule with BN (weight [C_in, C_out, k, k]).
- ``ResNet`` depth 18: see ``helpers_common_keys``.

Every function returns ``{key: shape}``.
"""
from typing import Sequence

from helpers_common_keys import conv2d
# ``resnet18`` is re-exported: test_centernet.py imports it from here.
from helpers_common_keys import resnet18  # noqa: F401
from helpers_fcos_keys import fcos_head
from helpers_state_dict import Shapes, bn, conv_bn


def centernet_update_head(prefix: str = 'bbox_head', num_classes: int = 80,
                          in_channels: int = 256, feat_channels: int = 256,
                          stacked_convs: int = 4, num_levels: int = 5) -> Shapes:
    """CenterNetUpdateHead: FCOSHead's layout without ``conv_centerness``."""
    keys = fcos_head(prefix, num_classes=num_classes, in_channels=in_channels,
                     feat_channels=feat_channels, stacked_convs=stacked_convs,
                     num_levels=num_levels, norm='gn', conv_bias=False)
    centerness = f'{prefix}.conv_centerness' if prefix else 'conv_centerness'
    return {k: v for k, v in keys.items() if not k.startswith(centerness + '.')}


def autoassign_head(prefix: str = 'bbox_head', num_classes: int = 80, in_channels: int = 256,
                    feat_channels: int = 256, stacked_convs: int = 4,
                    num_levels: int = 5) -> Shapes:
    """AutoAssignHead: FCOSHead's layout with biased tower convs, plus the center prior."""
    keys = fcos_head(prefix, num_classes=num_classes, in_channels=in_channels,
                     feat_channels=feat_channels, stacked_convs=stacked_convs,
                     num_levels=num_levels, norm='gn', conv_bias=True)
    center_prior = f'{prefix}.center_prior' if prefix else 'center_prior'
    keys[f'{center_prior}.mean'] = (num_classes, 2)
    keys[f'{center_prior}.sigma'] = (num_classes, 2)
    return keys


def centernet_head(prefix: str = 'bbox_head', num_classes: int = 80, in_channels: int = 64,
                   feat_channels: int = 64) -> Shapes:
    """CenterNetHead: three conv-ReLU-conv branches."""
    keys = {}
    for branch, out_c in (('heatmap_head', num_classes), ('wh_head', 2), ('offset_head', 2)):
        name = f'{prefix}.{branch}' if prefix else branch
        keys.update(conv2d(f'{name}.0', in_channels, feat_channels, 3))
        keys.update(conv2d(f'{name}.2', feat_channels, out_c, 1))
    return keys


def ct_resnet_neck(prefix: str = 'neck', in_channels: int = 512,
                   filters: Sequence[int] = (256, 128, 64), kernels: Sequence[int] = (4, 4, 4),
                   use_dcn: bool = True) -> Shapes:
    """CTResNetNeck: a 3x3 conv and a transposed conv (each with BN) per upsampling."""
    keys = {}
    for i, (c, k) in enumerate(zip(filters, kernels)):
        keys.update(conv_bn(f'{prefix}.deconv_layers.{2 * i}', in_channels, c, 3))
        if use_dcn:
            keys.update(conv2d(f'{prefix}.deconv_layers.{2 * i}.conv.conv_offset', in_channels,
                               27, 3))
        keys[f'{prefix}.deconv_layers.{2 * i + 1}.conv.weight'] = (c, c, k, k)
        keys.update(bn(f'{prefix}.deconv_layers.{2 * i + 1}.bn', c))
        in_channels = c
    return keys
