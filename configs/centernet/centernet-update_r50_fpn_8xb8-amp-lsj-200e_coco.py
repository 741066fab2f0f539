# CenterNet-update (the one-stage CenterNet of CenterNet2) R-50 + FPN (P3-P7, extra levels
# on the P5 output), large scale jittering for 200 epochs, 8 GPUs x 8 images in mixed
# precision, as mmdetection 3.3's centernet-update_r50_fpn_8xb8-amp-lsj-200e_coco.py. The
# backbone's init_cfg is mmdetection's (a download: point it at a local file, or remove it
# for random init, when training here).
_base_ = '../common/lsj-200e_coco-detection.py'

image_size = (1024, 1024)
# The crops are at most 1024x1024; the batch is padded to exactly that size.
batch_augments = [dict(type='BatchFixedSizePad', size=image_size)]

model = dict(
    type='CenterNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        batch_augments=batch_augments),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        add_extra_convs='on_output',  # P6 from the P5 output
        num_outs=5,
        init_cfg=dict(type='Caffe2Xavier', layer='Conv2d'),
        relu_before_extra_convs=True),
    bbox_head=dict(
        type='CenterNetUpdateHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=4,
        feat_channels=256,
        strides=[8, 16, 32, 64, 128],
        loss_cls=dict(
            type='GaussianFocalLoss',
            pos_weight=0.25,
            neg_weight=0.75,
            loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
    ),
    train_cfg=None,
    test_cfg=dict(
        nms_pre=1000,
        min_bbox_size=0,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6),
        max_per_img=100))

train_dataloader = dict(batch_size=8, num_workers=4)
# mixed-precision training (AmpOptimWrapper), lr for the total batch of 64
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.01 * 4, momentum=0.9, weight_decay=0.00004),
    # no weight decay on the normalization layers
    paramwise_cfg=dict(norm_decay_mult=0.))

# a longer warm-up than the common file's (4000 iterations from 1/4000 of the lr), then
# lr x0.1 after loop epochs 22 and 24
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.00025,
        by_epoch=False,
        begin=0,
        end=4000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=25,
        by_epoch=True,
        milestones=[22, 24],
        gamma=0.1)
]

# The batch the lr above was tuned for (8 GPUs x 8 images); --auto-scale-lr rescales the
# lr from it. Leave it as is.
auto_scale_lr = dict(base_batch_size=64)
