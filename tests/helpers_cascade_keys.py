"""Expected ``state_dict`` entries of mmdetection 3.3's Cascade (Mask) R-CNN, written from its
module definitions (not dumped from our own modules).

``CascadeRoIHead`` keeps one module per stage in ``ModuleList``s, so the stage index follows
the branch name: ``roi_head.bbox_head.{s}.*`` and ``roi_head.mask_head.{s}.*``; its RoI
extractors (RoIAlign) hold no weights. ``Shared2FCBBoxHead`` holds ``shared_fcs.0`` /
``shared_fcs.1``, ``fc_cls`` (classes + background) and ``fc_reg`` (4 outputs when
class-agnostic, as in the cascade configs). ``FCNMaskHead`` holds ``convs.{i}.conv``
(ConvModules without norm), the 2x ``upsample`` ConvTranspose2d (weight [in, out, 2, 2]) and
the 1x1 ``conv_logits``. The FPN (the 5th output level is a max-pool), RPNHead and these two
heads come from ``helpers_common_keys`` / ``helpers_two_stage_extra_keys``. Every function
returns ``{key: shape}``.
"""
from helpers_common_keys import fpn
from helpers_detr_keys import resnet50
from helpers_state_dict import Shapes
from helpers_two_stage_extra_keys import fcn_mask_head, rpn_head, shared2fc_bbox_head


def cascade_roi_head(prefix: str, num_stages: int, in_channels: int, fc_out_channels: int,
                     num_classes: int, with_mask: bool = False, mask_channels: int = 256,
                     num_mask_convs: int = 4) -> Shapes:
    """Box (and mask) heads of every stage of a ``CascadeRoIHead``."""
    base = f'{prefix}.' if prefix else ''  # '' for the head's own state_dict
    keys = {}
    for s in range(num_stages):
        keys.update(shared2fc_bbox_head(f'{base}bbox_head.{s}', in_channels, fc_out_channels,
                                        num_classes, reg_class_agnostic=True))
    if with_mask:
        for s in range(num_stages):
            keys.update(fcn_mask_head(f'{base}mask_head.{s}', mask_channels, num_classes,
                                      in_channels=in_channels, num_convs=num_mask_convs))
    return keys


def cascade_rcnn_r50_fpn(with_mask: bool = False) -> Shapes:
    """``cascade-rcnn_r50_fpn.py`` / ``cascade-mask-rcnn_r50_fpn.py`` (80 classes)."""
    return {**resnet50('backbone'),
            **fpn('neck'),
            **rpn_head('rpn_head'),
            **cascade_roi_head('roi_head', 3, 256, 1024, 80, with_mask=with_mask)}
