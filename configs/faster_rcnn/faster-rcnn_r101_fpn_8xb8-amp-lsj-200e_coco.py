# Faster R-CNN R-101 + FPN, LSJ 200 epochs in mixed precision, as mmdetection 3.3's
# faster-rcnn_r101_fpn_8xb8-amp-lsj-200e_coco.py. The init_cfg is mmdetection's (a
# download: point it at a local file, or remove it, when training here).
_base_ = './faster-rcnn_r50_fpn_8xb8-amp-lsj-200e_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
