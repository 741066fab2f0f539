# Grid R-CNN with a ResNet-101 backbone (init_cfg: a download, see the R-50 config).
_base_ = './grid-rcnn_r50_fpn_gn-head_2x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet101')))
