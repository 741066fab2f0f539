# ATSS on the built-in shapes dataset, trained from scratch on a CPU.
# The recipe of retinanet_r18_fpn_shapes.py: a half-width ResNet-18 trained from scratch with
# training BN, a 64-channel FPN and head, 3 classes and 256-px images (shapes_detection.py),
# with atss_r50_fpn_1x_coco.py's model (GN head towers, one square anchor per position,
# ATSSAssigner, focal + GIoU + centerness losses). mmdetection has no ATSS model base, so the
# model is written out here. What differs from the COCO model, and why:
# - anchors of 4 x stride (32 px on P3 ... 512 px on P7) instead of 8 x stride: the shapes are
#   about 19..96 px at 256 px, so P3-P5 anchors (32, 64, 128 px) bracket them and the
#   positives start with a reasonable IoU; ATSS picks its own IoU threshold per object, so
#   nothing else needs retuning;
# - AdamW with lr 2e-3 (RTMDet's 4e-3 at batch 8, scaled to batch 4) and weight decay 0.05,
#   a 200-iteration warm-up and cosine decay over the last half, instead of the 10-epoch
#   step schedule: from random init the GN head trains well at this lr, and the cosine tail
#   settles the boxes without an abrupt drop;
# - 24 epochs (2400 iterations of batch 4), sized to the 15-minute budget on 2 CPU cores: an
#   iteration costs about 0.6 s of one-thread CPU time (RetinaNet's shapes model: 0.56 s;
#   RTMDet-tiny's at batch 8: 1.6 s, and its 1000 iterations train and validate in 12.3 min),
#   so about 11 min of training plus 4 validations (every 6 epochs).
_base_ = [
    '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_shapes_10e.py', '../_base_/shapes_runtime.py'
]

model = dict(
    type='ATSS',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=32,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch'),
    neck=dict(
        type='FPN',
        in_channels=[32, 64, 128, 256],
        out_channels=64,
        start_level=1,
        add_extra_convs='on_output',
        num_outs=5),
    bbox_head=dict(
        type='ATSSHead',
        num_classes=3,
        in_channels=64,
        stacked_convs=4,
        feat_channels=64,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=4,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[.0, .0, .0, .0],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9),
        allowed_border=-1,
        pos_weight=-1,
        debug=False),
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))

max_epochs = 24
base_lr = 2e-3
train_cfg = dict(max_epochs=max_epochs, val_interval=6)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2,
         end=max_epochs, T_max=max_epochs - max_epochs // 2, by_epoch=True,
         convert_to_iter_based=True)
]
optim_wrapper = dict(optimizer=dict(lr=base_lr))
