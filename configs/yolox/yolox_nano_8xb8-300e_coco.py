# YOLOX-Nano: YOLOX-Tiny at 0.25 width with depthwise-separable convs in the backbone, neck
# and head; data and training as in YOLOX-Tiny.
_base_ = './yolox_tiny_8xb8-300e_coco.py'

model = dict(
    backbone=dict(widen_factor=0.25, use_depthwise=True),
    neck=dict(in_channels=[64, 128, 256], out_channels=64, use_depthwise=True),
    bbox_head=dict(in_channels=64, feat_channels=64, use_depthwise=True))
