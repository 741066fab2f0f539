# Mask R-CNN R-18 + FPN, LSJ in mixed precision, as mmdetection 3.3's
# mask-rcnn_r18_fpn_8xb8-amp-lsj-200e_coco.py. R-18's stages are 64..512 channels wide.
# The init_cfg is mmdetection's (a download: point it at a local file, or remove it, when
# training here).
_base_ = './mask-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco.py'

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
