"""Expected ``state_dict`` entries of Fast R-CNN, RPN, Double-Head R-CNN and Mask Scoring
R-CNN (the COCO R-50 FPN configs), written from mmdetection 3.3's module definitions, not
dumped from our own modules.

- ResNet-50 and FPN as in Faster R-CNN (the 5th FPN level is a max-pool without weights; see
  ``helpers_common_keys``).
- ``RPNHead``: ``rpn_conv`` 3x3, ``rpn_cls`` (3 anchors, sigmoid: 3 outputs) and ``rpn_reg``
  (12 outputs); the ``RPN`` detector stores it as ``bbox_head``.
- ``Shared2FCBBoxHead``: ``shared_fcs.0/1``, ``fc_cls`` (81), ``fc_reg`` (320, or 4 when
  class-agnostic).
- ``DoubleConvFCBBoxHead``: ``res_block`` (BasicResBlock: ConvModules ``conv1`` 3x3,
  ``conv2`` 1x1 and ``conv_identity`` 1x1, each with BN and no conv bias), ``conv_branch``
  (ResNet ``Bottleneck``s of ``planes = conv_out_channels // 4`` without downsample),
  ``fc_branch`` (Linear layers, the first on the flattened 7x7 map), ``fc_cls`` on the fc
  branch and ``fc_reg`` on the pooled conv branch.
- ``FCNMaskHead``: 4 ConvModules, a ConvTranspose2d ``upsample``, ``conv_logits``.
- ``MaskIoUHead``: plain ``convs`` (the first takes C + 1 channels), ``fcs`` (the first on
  the 7x7 map left by the stride-2 conv) and ``fc_mask_iou`` (one output per class).
"""
from typing import Optional

from helpers_common_keys import conv2d, conv_module, fpn
from helpers_detr_keys import batch_norm, linear, resnet50
from helpers_state_dict import Shapes, conv_bn


def conv(prefix: str, out_c: int, in_c: int, k: int, bias: bool = True) -> Shapes:
    """A plain conv, ``out_c`` first (the order of its weight's shape); biased by default."""
    return conv2d(prefix, in_c, out_c, k, bias)


def rpn_head(prefix: str, channels: int = 256, num_anchors: int = 3) -> Shapes:
    return {**conv(f'{prefix}.rpn_conv', channels, channels, 3),
            **conv(f'{prefix}.rpn_cls', num_anchors, channels, 1),
            **conv(f'{prefix}.rpn_reg', num_anchors * 4, channels, 1)}


def shared2fc_bbox_head(prefix: str, in_c: int = 256, fc: int = 1024, num_classes: int = 80,
                        reg_class_agnostic: bool = False, with_reg: bool = True) -> Shapes:
    """Shared2FCBBoxHead; ``with_reg=False`` drops ``fc_reg`` (a classification-only head)."""
    keys = {**linear(f'{prefix}.shared_fcs.0', fc, in_c * 7 * 7),
            **linear(f'{prefix}.shared_fcs.1', fc, fc),
            **linear(f'{prefix}.fc_cls', num_classes + 1, fc)}
    if with_reg:
        keys.update(linear(f'{prefix}.fc_reg', 4 if reg_class_agnostic else num_classes * 4,
                           fc))
    return keys


def bottleneck(prefix: str, inplanes: int, planes: int) -> Shapes:
    """ResNet Bottleneck without downsample (inplanes == planes * 4)."""
    return {**conv(f'{prefix}.conv1', planes, inplanes, 1, bias=False),
            **batch_norm(f'{prefix}.bn1', planes),
            **conv(f'{prefix}.conv2', planes, planes, 3, bias=False),
            **batch_norm(f'{prefix}.bn2', planes),
            **conv(f'{prefix}.conv3', planes * 4, planes, 1, bias=False),
            **batch_norm(f'{prefix}.bn3', planes * 4)}


def double_conv_fc_bbox_head(prefix: str, in_c: int = 256, num_convs: int = 4,
                             num_fcs: int = 2, conv_out: int = 1024, fc_out: int = 1024,
                             roi_feat_size: int = 7, num_classes: int = 80) -> Shapes:
    keys = {**conv_bn(f'{prefix}.res_block.conv1', in_c, in_c, 3),
            **conv_bn(f'{prefix}.res_block.conv2', in_c, conv_out, 1),
            **conv_bn(f'{prefix}.res_block.conv_identity', in_c, conv_out, 1)}
    for i in range(num_convs):
        keys.update(bottleneck(f'{prefix}.conv_branch.{i}', conv_out, conv_out // 4))
    for i in range(num_fcs):
        keys.update(linear(f'{prefix}.fc_branch.{i}', fc_out,
                           in_c * roi_feat_size**2 if i == 0 else fc_out))
    keys.update(linear(f'{prefix}.fc_cls', num_classes + 1, fc_out))
    keys.update(linear(f'{prefix}.fc_reg', num_classes * 4, conv_out))
    return keys


def fcn_mask_head(prefix: str, channels: int = 256, num_classes: int = 80,
                  in_channels: Optional[int] = None, num_convs: int = 4,
                  norm_kind: Optional[str] = None) -> Shapes:
    """FCNMaskHead: ``num_convs`` ConvModules (``norm_kind`` None, 'bn' or 'gn'; the first
    reads ``in_channels``, default ``channels``), the deconv and the 1x1 logits (plain layers
    whatever the conv_cfg)."""
    keys = {}
    in_c = channels if in_channels is None else in_channels
    for i in range(num_convs):
        keys.update(conv_module(f'{prefix}.convs.{i}', in_c, channels, 3, norm_kind))
        in_c = channels
    keys.update(conv(f'{prefix}.upsample', channels, channels, 2))  # ConvTranspose2d [in, out]
    keys.update(conv(f'{prefix}.conv_logits', num_classes, channels, 1))
    return keys


def maskiou_head(prefix: str, in_c: int = 256, num_convs: int = 4, num_fcs: int = 2,
                 conv_out: int = 256, fc_out: int = 1024, roi_feat_size: int = 14,
                 num_classes: int = 80) -> Shapes:
    keys = {}
    for i in range(num_convs):
        keys.update(conv(f'{prefix}.convs.{i}', conv_out, in_c + 1 if i == 0 else conv_out, 3))
    for i in range(num_fcs):
        keys.update(linear(f'{prefix}.fcs.{i}', fc_out,
                           conv_out * (roi_feat_size // 2)**2 if i == 0 else fc_out))
    keys.update(linear(f'{prefix}.fc_mask_iou', num_classes, fc_out))
    return keys


def fast_rcnn_r50_fpn_keys() -> Shapes:
    return {**resnet50('backbone'), **fpn(), **shared2fc_bbox_head('roi_head.bbox_head')}


def rpn_r50_fpn_keys() -> Shapes:
    return {**resnet50('backbone'), **fpn(), **rpn_head('bbox_head')}


def dh_faster_rcnn_r50_fpn_keys() -> Shapes:
    return {**resnet50('backbone'), **fpn(), **rpn_head('rpn_head'),
            **double_conv_fc_bbox_head('roi_head.bbox_head')}


def ms_rcnn_r50_fpn_keys() -> Shapes:
    return {**resnet50('backbone'), **fpn(), **rpn_head('rpn_head'),
            **shared2fc_bbox_head('roi_head.bbox_head'), **fcn_mask_head('roi_head.mask_head'),
            **maskiou_head('roi_head.mask_iou_head')}
