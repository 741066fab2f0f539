# GCNet: a global context block (bottleneck ratio 1/16) after conv3 of every Bottleneck in
# stages 2-4 (c3-c5).
_base_ = '../mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(plugins=[
        dict(
            cfg=dict(type='ContextBlock', ratio=1. / 16),
            stages=(False, True, True, True),
            position='after_conv3')
    ]))
