# RetinaNet with a ResNeXt-101 64x4d + FPN, multi-scale 3x, as mmdetection 3.3's
# retinanet_x101-64x4d_fpn_ms-640-800-3x_coco.py; the other backbone settings are the
# ResNet-50 base's. The init_cfg is mmdetection's (a download: point it at a local file, or
# remove it, when training here).
_base_ = ['../_base_/models/retinanet_r50_fpn.py', '../common/ms_3x_coco.py']
model = dict(
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=64,
        base_width=4,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://resnext101_64x4d')))
# RetinaNet trains with half the two-stage lr
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
