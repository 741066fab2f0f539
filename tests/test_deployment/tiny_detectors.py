"""The real configs under configs/, shrunk through config overrides for the export tests.

Each entry keeps its config's detector, heads, coders, test_cfg and data preprocessor, and
only makes the widths and depths tiny (ResNet-18 with 8 base channels, 16-channel necks and
heads, 1-layer transformers, 3 classes), so a 64x64 image runs in milliseconds.

Weights: ``init_weights`` (no pretrained download: the backbones' ``init_cfg`` is dropped),
then every conv/linear layer redrawn with a fixed seed at a scale that keeps activations
O(1) (:func:`spread_weights`). The configs' own inits give near-constant scores (RetinaNet's
classifier prior is 0.01, under the 0.05 score threshold), so no detection would survive
and the post-processing comparison would test nothing; spread scores also keep ties (whose
order float noise may flip) out of the top-k and NMS.
"""
import logging
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from torch import nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import register_all_modules

CONFIGS = Path(__file__).resolve().parents[2] / 'configs'

_R18 = dict(depth=18, base_channels=8, init_cfg=None)  # stages of 8, 16, 32, 64 channels
_FPN = dict(in_channels=[8, 16, 32, 64], out_channels=16)
_GN4 = dict(type='GN', num_groups=4, requires_grad=True)


def _detr_layers(decoder: bool = False) -> dict:
    """One 16-dim layer with 2 heads (encoder: self-attention, decoder: also cross)."""
    layer = dict(self_attn_cfg=dict(embed_dims=16, num_heads=2),
                 ffn_cfg=dict(embed_dims=16, feedforward_channels=32))
    if decoder:
        layer['cross_attn_cfg'] = dict(embed_dims=16, num_heads=2)
    return dict(num_layers=1, layer_cfg=layer)


def _deformable(config: str) -> tuple:
    return config, dict(
        backbone=_R18, neck=dict(in_channels=[16, 32, 64], out_channels=16,
                                 norm_cfg=_GN4),
        encoder=_detr_layers(), decoder=_detr_layers(decoder=True), num_queries=20,
        positional_encoding=dict(num_feats=8), bbox_head=dict(num_classes=3, embed_dims=16),
        test_cfg=dict(max_per_img=10))


_RPN = dict(in_channels=16, feat_channels=16)
_ROI = dict(bbox_roi_extractor=dict(out_channels=16),
            bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=3))
_MASK_ROI = dict(_ROI, mask_roi_extractor=dict(out_channels=16),
                 mask_head=dict(num_convs=1, in_channels=16, conv_out_channels=16,
                                num_classes=3))
_CSP = dict(deepen_factor=0.167, widen_factor=0.125, init_cfg=None)  # 8 .. 128 channels
_CSP_NECK = dict(in_channels=[32, 64, 128], out_channels=16)

#: name -> (config file under configs/, model overrides)
TINY = {
    'retinanet': ('retinanet/retinanet_r50_fpn_1x_coco.py', dict(
        backbone=_R18, neck=_FPN,
        bbox_head=dict(in_channels=16, feat_channels=16, stacked_convs=1, num_classes=3))),
    'fcos': ('fcos/fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py',
             dict(backbone=_R18, neck=_FPN, bbox_head=dict(
                 in_channels=16, feat_channels=16, stacked_convs=1, num_classes=3,
                 norm_cfg=_GN4))),
    'atss': ('atss/atss_r50_fpn_1x_coco.py', dict(
        backbone=_R18, neck=_FPN, bbox_head=dict(
            in_channels=16, feat_channels=16, stacked_convs=1, num_classes=3,
            norm_cfg=_GN4))),
    'yolox': ('yolox/yolox_tiny_8xb8-300e_coco.py', dict(
        backbone=_CSP, neck=_CSP_NECK,
        bbox_head=dict(in_channels=16, feat_channels=16, stacked_convs=1, num_classes=3))),
    'rtmdet': ('rtmdet/rtmdet_tiny_8xb32-300e_coco.py', dict(
        backbone=_CSP, neck=_CSP_NECK,
        bbox_head=dict(in_channels=16, feat_channels=16, stacked_convs=1, num_classes=3),
        test_cfg=dict(score_thr=0.05, max_per_img=50))),
    'rtmdet-ins': ('rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py', dict(
        backbone=_CSP, neck=_CSP_NECK,
        bbox_head=dict(in_channels=16, feat_channels=16, stacked_convs=1, num_classes=3),
        test_cfg=dict(score_thr=0.05, max_per_img=20))),
    'detr': ('detr/detr_r50_8xb2-150e_coco.py', dict(
        backbone=_R18, neck=dict(in_channels=[64], out_channels=16),
        encoder=_detr_layers(), decoder=_detr_layers(decoder=True),
        num_queries=20, positional_encoding=dict(num_feats=8),
        bbox_head=dict(num_classes=3, embed_dims=16), test_cfg=dict(max_per_img=10))),
    'deformable-detr': _deformable('deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'),
    'deformable-detr-refine-twostage': _deformable(
        'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py'),
    'dino': _deformable('dino/dino-4scale_r50_8xb2-12e_coco.py'),
    'faster-rcnn': ('faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py', dict(
        backbone=_R18, neck=_FPN, rpn_head=_RPN, roi_head=_ROI)),
    'mask-rcnn': ('mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', dict(
        backbone=_R18, neck=_FPN, rpn_head=_RPN, roi_head=_MASK_ROI)),
}


def tiny_config(name: str) -> Config:
    """The config of ``TINY[name]`` with its overrides merged (a whole mmengine Config)."""
    path, overrides = TINY[name]
    cfg = Config.fromfile(str(CONFIGS / path))
    cfg.merge_from_dict(dict(model=overrides))
    return cfg


def spread_weights(model: nn.Module, seed: int = 0) -> None:
    """Redraw every conv/linear weight N(0, 1/fan_in) and bias N(0, 0.5^2), seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                weight = module.weight
                fan_in = weight[0].numel()
                weight.copy_(torch.randn(weight.shape, generator=generator) / fan_in**0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.5)


def tiny_detector(name: str, seed: int = 0) -> nn.Module:
    """``TINY[name]`` built, initialized (see the module docstring) and in eval mode."""
    register_all_modules()
    model = revert_sync_batchnorm(MODELS.build(tiny_config(name).model))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # no INFO line per initialized parameter
    try:
        torch.manual_seed(seed)
        model.init_weights()
    finally:
        logger.setLevel(level)
    spread_weights(model, seed)
    return model.eval()
