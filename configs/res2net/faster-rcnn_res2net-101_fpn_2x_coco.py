_base_ = '../faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py'
# mmdetection's backbone init_cfg is
#     dict(type='Pretrained', checkpoint='open-mmlab://res2net101_v1d_26w_4s')
# left out, as the ResNet-50 base leaves out its own (nothing is downloaded; point
# +model.backbone.init_cfg at a local copy of that checkpoint instead).
model = dict(
    backbone=dict(type='Res2Net', depth=101, scales=4, base_width=26))
