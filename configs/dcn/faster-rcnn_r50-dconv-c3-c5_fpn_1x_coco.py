# Deformable ConvNets v1: the 3x3 conv of every Bottleneck in stages 2-4 (c3-c5) is a DCN.
_base_ = '../faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        dcn=dict(type='DCN', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True)))
