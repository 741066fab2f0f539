# RetinaNet R-101 + FPN, multi-scale 3x, as mmdetection 3.3's
# retinanet_r101_fpn_ms-640-800-3x_coco.py. The init_cfg is mmdetection's (a download:
# point it at a local file, or remove it for random init, when training here).
_base_ = ['../_base_/models/retinanet_r50_fpn.py', '../common/ms_3x_coco.py']
model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
# RetinaNet trains with half the two-stage lr (0.01 for a total batch size of 16).
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
