# FCOS on the built-in shapes dataset, trained from scratch on a CPU. The recipe of
# retinanet_r18_fpn_shapes.py (a half-width ResNet-18 from scratch with training BN, a
# 64-channel FPN and head, 3 classes, 256-px images, AdamW) with the head of
# fcos_r50-caffe_fpn_gn-head-center-normbbox-centeronreg-giou_1x_coco.py. mmdetection keeps
# the FCOS model in its COCO config rather than in a model base, and that config's COCO bases
# would collide with the shapes ones, so the model is written out here.
#
# Why these settings, for a detector that must learn from random weights in ~15 minutes on
# 2 cores (RetinaNet on the same recipe reaches bbox mAP 0.19 after its 10 epochs):
# - GroupNorm in the head towers (FCOSHead's default): normalised head activations from the
#   first iteration, independent of the batch of 4; RetinaHead's towers have no norm.
# - center_sampling (radius 1.5 strides): positives only near an object's centre, where the
#   features see the object best; fewer ambiguous edge points to learn from.
# - norm_on_bbox: distances in units of the level's stride through a ReLU, so every level
#   regresses targets of the same order (about 1-8) instead of exp() of pixel distances;
#   stable from a random start.
# - centerness_on_reg: centerness shares the regression tower, whose features already encode
#   where the box sides are (the official FCOS repository's choice).
# - GIoU loss: keeps a gradient for predicted boxes that do not overlap their target yet,
#   which is most of them at the start.
# - regress_ranges: the shapes are 19-96 px after the resize to 256 (24-120 px at 320), so
#   a point's largest side distance is at most ~96 px; COCO's ranges (P3 up to 64 px) would
#   put nearly everything on P3. Halved ranges spread the shapes over P3 (up to ~64-px
#   shapes) and P4 (larger ones), matching each to a level whose cells are 1/8-1/4 of its
#   size. P5-P7 stay (the COCO layout) and learn background only.
# - NMS IoU 0.6 as the COCO config; test score threshold 0.05.
# - Schedule: AdamW at lr 1e-3 (schedule_shapes_10e.py, batch 4) for 24 epochs of the ~360
#   non-empty training images (~2200 iterations, lr x0.1 for the last 4 epochs),
#   validating every 4 epochs. FCOS trains at about RetinaNet's speed here (both heads are
#   2 x 4 convs of 64 channels on P3-P7): 0.25-0.3 s per iteration on 2 cores, so about
#   11-13 min in all, inside a 15-min budget.
_base_ = [
    '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_shapes_10e.py', '../_base_/shapes_runtime.py'
]

model = dict(
    type='FCOS',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=32,  # half width: stages of 32, 64, 128, 256 channels
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,  # from scratch: every stage trains ...
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,  # ... and BN uses batch statistics
        style='pytorch'),
    neck=dict(
        type='FPN',
        in_channels=[32, 64, 128, 256],
        out_channels=64,
        start_level=1,  # C3-C5; P6 from P5, P7 from P6 (after a ReLU)
        add_extra_convs='on_output',
        num_outs=5,
        relu_before_extra_convs=True),
    bbox_head=dict(
        type='FCOSHead',
        num_classes=3,
        in_channels=64,
        stacked_convs=4,
        feat_channels=64,
        strides=[8, 16, 32, 64, 128],
        regress_ranges=((-1, 32), (32, 64), (64, 128), (128, 256), (256, 1e8)),
        norm_on_bbox=True,
        centerness_on_reg=True,
        center_sampling=True,
        center_sample_radius=1.5,
        conv_bias=True,
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=1.0),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))

max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=4)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[20],
         gamma=0.1)
]
