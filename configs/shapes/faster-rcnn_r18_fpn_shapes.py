# Faster R-CNN on the built-in shapes dataset: trains and evaluates on a laptop CPU in minutes.
# The COCO config's model with what small synthetic data and a CPU need: a half-width
# ResNet-18 (base_channels=32) trained from scratch (no pretrained weights are downloaded, so
# no frozen stages and its BN layers train), a 64-channel FPN and heads, 3 classes, fewer
# proposals and RoIs; 256-px images (shapes_detection.py) and a 10-epoch AdamW schedule
# (schedule_shapes_10e.py).
_base_ = [
    '../_base_/models/faster-rcnn_r50_fpn.py',
    '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_shapes_10e.py', '../_base_/shapes_runtime.py'
]

model = dict(
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))
