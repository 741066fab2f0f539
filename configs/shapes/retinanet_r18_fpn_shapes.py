# RetinaNet on the built-in shapes dataset: trains and evaluates on a laptop CPU.
# The recipe of faster-rcnn_r18_fpn_shapes.py: a half-width ResNet-18 trained from scratch
# with training BN, a 64-channel neck and head, 3 classes, 256-px images and the 10-epoch
# AdamW schedule.
_base_ = [
    '../_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_shapes_10e.py', '../_base_/shapes_runtime.py'
]

model = dict(
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False),
    # C3-C5 of the half-width ResNet-18; P6 is a stride-2 conv on C5 ('on_input').
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64))
