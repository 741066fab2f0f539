# SOLO R-18 + FPN with the LSJ 200-epoch recipe of the R-50 config, as
# mmdetection 3.3's solo_r18_fpn_8xb8-lsj-200e_coco.py.
# R-18's stages are 64..512 channels wide.
# The init_cfg is mmdetection's (a download: point it at a local file, or remove it, when
# training here).
_base_ = './solo_r50_fpn_8xb8-lsj-200e_coco.py'

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
