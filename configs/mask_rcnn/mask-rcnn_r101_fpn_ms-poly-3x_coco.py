# Mask R-CNN R-101 + FPN, multi-scale polygon-mask 3x, as mmdetection 3.3's
# mask-rcnn_r101_fpn_ms-poly-3x_coco.py. The init_cfg is mmdetection's (a download: point
# it at a local file, or remove it for random init, when training here).
_base_ = [
    '../common/ms-poly_3x_coco-instance.py',
    '../_base_/models/mask-rcnn_r50_fpn.py'
]

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
