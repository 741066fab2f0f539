"""Expected ``state_dict`` keys and shapes of mmdetection 3.3's YOLOv3 and YOLOF, written from
the module definitions (not dumped from our modules):

- ``Darknet`` (depth 53): ``conv1`` (3x3 ConvModule 3 -> 32), then ``conv_res_block1..5``,
  each a Sequential of ``conv`` (3x3 stride-2 ConvModule) and ``res0..res{n-1}``
  (``ResBlock``: ``conv1`` 1x1 to half the channels, ``conv2`` 3x3 back), with 1, 2, 8, 8, 4
  residual blocks and (in, out) channels (32, 64), (64, 128), (128, 256), (256, 512),
  (512, 1024). Every ConvModule has BN, hence no conv bias.
- ``YOLOV3Neck``: ``detect1`` (DetectionBlock in[0] -> out[0]), then for i = 1, 2:
  ``conv{i}`` (1x1 ConvModule out[i-1] -> out[i]) and ``detect{i+1}`` (DetectionBlock
  in[i] + out[i] -> out[i]); a DetectionBlock is five ConvModules 1x1 n, 3x3 2n, 1x1 n,
  3x3 2n, 1x1 n.
- ``YOLOV3Head``: per level ``convs_bridge.l`` (3x3 ConvModule in[l] -> out[l]) and
  ``convs_pred.l`` (1x1 Conv2d with bias, out[l] -> A * (5 + num_classes)).
- ``DilatedEncoder``: ``lateral_conv`` (1x1 Conv2d with bias) + ``lateral_norm`` (BN),
  ``fpn_conv`` (3x3 Conv2d with bias) + ``fpn_norm``, and ``dilated_encoder_blocks.i``
  (Bottleneck: ``conv1`` 1x1 to mid, ``conv2`` 3x3 dilated, ``conv3`` 1x1 back; ConvModules
  with BN).
- ``YOLOFHead``: ``cls_subnet.i`` / ``bbox_subnet.i`` (3x3 ConvModules with BN, C -> C) and
  3x3 Conv2d predictors with bias ``cls_score`` (A * num_classes), ``bbox_pred`` (A * 4),
  ``object_pred`` (A).
"""
from typing import Sequence

from helpers_common_keys import conv2d
from helpers_state_dict import Shapes, bn, conv_bn

DARKNET53_RES_BLOCKS = (1, 2, 8, 8, 4)
DARKNET53_CHANNELS = ((32, 64), (64, 128), (128, 256), (256, 512), (512, 1024))


def _join(prefix: str, name: str) -> str:
    return f'{prefix}.{name}' if prefix else name


def darknet53(prefix: str = 'backbone') -> Shapes:
    keys = conv_bn(_join(prefix, 'conv1'), 3, 32, 3)
    for i, (num_res, (in_c, out_c)) in enumerate(zip(DARKNET53_RES_BLOCKS, DARKNET53_CHANNELS)):
        stage = _join(prefix, f'conv_res_block{i + 1}')
        keys.update(conv_bn(f'{stage}.conv', in_c, out_c, 3))
        for j in range(num_res):
            keys.update(conv_bn(f'{stage}.res{j}.conv1', out_c, out_c // 2, 1))
            keys.update(conv_bn(f'{stage}.res{j}.conv2', out_c // 2, out_c, 3))
    return keys


def detection_block(prefix: str, in_c: int, n: int) -> Shapes:
    keys = {}
    for j, (ci, co, k) in enumerate([(in_c, n, 1), (n, 2 * n, 3), (2 * n, n, 1),
                                     (n, 2 * n, 3), (2 * n, n, 1)], start=1):
        keys.update(conv_bn(f'{prefix}.conv{j}', ci, co, k))
    return keys


def yolov3_neck(prefix: str, in_channels: Sequence[int], out_channels: Sequence[int]) -> Shapes:
    keys = detection_block(_join(prefix, 'detect1'), in_channels[0], out_channels[0])
    for i in range(1, len(in_channels)):
        keys.update(conv_bn(_join(prefix, f'conv{i}'), out_channels[i - 1], out_channels[i], 1))
        keys.update(detection_block(_join(prefix, f'detect{i + 1}'),
                                    in_channels[i] + out_channels[i], out_channels[i]))
    return keys


def yolov3_head(prefix: str, in_channels: Sequence[int], out_channels: Sequence[int],
                num_classes: int = 80, num_anchors: int = 3) -> Shapes:
    keys = {}
    for level, (in_c, out_c) in enumerate(zip(in_channels, out_channels)):
        keys.update(conv_bn(_join(prefix, f'convs_bridge.{level}'), in_c, out_c, 3))
        keys.update(conv2d(_join(prefix, f'convs_pred.{level}'), out_c,
                           num_anchors * (5 + num_classes), 1))
    return keys


def yolov3_d53(num_classes: int = 80) -> Shapes:
    """configs/yolo/yolov3_d53_*: Darknet-53, neck 1024/512/256 -> 512/256/128, head bridges
    512/256/128 -> 1024/512/256."""
    return {
        **darknet53('backbone'),
        **yolov3_neck('neck', [1024, 512, 256], [512, 256, 128]),
        **yolov3_head('bbox_head', [512, 256, 128], [1024, 512, 256], num_classes),
    }


def dilated_encoder(prefix: str, in_c: int = 2048, out_c: int = 512, mid_c: int = 128,
                    num_blocks: int = 4) -> Shapes:
    keys = {
        **conv2d(_join(prefix, 'lateral_conv'), in_c, out_c, 1),
        **bn(_join(prefix, 'lateral_norm'), out_c),
        **conv2d(_join(prefix, 'fpn_conv'), out_c, out_c, 3),
        **bn(_join(prefix, 'fpn_norm'), out_c),
    }
    for i in range(num_blocks):
        block = _join(prefix, f'dilated_encoder_blocks.{i}')
        keys.update(conv_bn(f'{block}.conv1', out_c, mid_c, 1))
        keys.update(conv_bn(f'{block}.conv2', mid_c, mid_c, 3))
        keys.update(conv_bn(f'{block}.conv3', mid_c, out_c, 1))
    return keys


def yolof_head(prefix: str, in_c: int = 512, num_classes: int = 80, num_anchors: int = 5,
               num_cls_convs: int = 2, num_reg_convs: int = 4) -> Shapes:
    keys = {}
    for i in range(num_cls_convs):
        keys.update(conv_bn(_join(prefix, f'cls_subnet.{i}'), in_c, in_c, 3))
    for i in range(num_reg_convs):
        keys.update(conv_bn(_join(prefix, f'bbox_subnet.{i}'), in_c, in_c, 3))
    keys.update(conv2d(_join(prefix, 'cls_score'), in_c, num_anchors * num_classes, 3))
    keys.update(conv2d(_join(prefix, 'bbox_pred'), in_c, num_anchors * 4, 3))
    keys.update(conv2d(_join(prefix, 'object_pred'), in_c, num_anchors, 3))
    return keys
