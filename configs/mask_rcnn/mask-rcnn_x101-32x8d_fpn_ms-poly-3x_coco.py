# Mask R-CNN with a ResNeXt-101 32x8d + FPN, multi-scale polygon-mask 3x, as mmdetection
# 3.3's mask-rcnn_x101-32x8d_fpn_ms-poly-3x_coco.py. This backbone was trained by Facebook
# with Caffe2 on BGR images, hence its own mean/std, and its BN is frozen. The init_cfg is
# mmdetection's (a download: point it at a local file, or remove it, when training here).
_base_ = [
    '../common/ms-poly_3x_coco-instance.py',
    '../_base_/models/mask-rcnn_r50_fpn.py'
]

model = dict(
    data_preprocessor=dict(
        mean=[103.530, 116.280, 123.675],
        std=[57.375, 57.120, 58.395],
        bgr_to_rgb=False),
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=32,
        base_width=8,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=False),
        style='pytorch',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnext101_32x8d')))
