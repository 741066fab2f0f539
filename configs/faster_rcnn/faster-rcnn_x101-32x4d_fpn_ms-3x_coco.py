# Faster R-CNN with a ResNeXt-101 (32 groups of 4 channels in the first stage) + FPN,
# multi-scale 3x, as mmdetection 3.3's faster-rcnn_x101-32x4d_fpn_ms-3x_coco.py. The
# init_cfg is mmdetection's (a download: point it at a local file, or remove it, when
# training here).
_base_ = ['../common/ms_3x_coco.py', '../_base_/models/faster-rcnn_r50_fpn.py']
model = dict(
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=32,
        base_width=4,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        style='pytorch',
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://resnext101_32x4d')))
