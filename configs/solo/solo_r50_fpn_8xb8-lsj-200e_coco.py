# SOLO R-50 + FPN (P2-P6) with large scale jittering for 200 epochs, 8 GPUs x 8 images in
# mixed precision, as mmdetection 3.3's solo_r50_fpn_8xb8-lsj-200e_coco.py. The backbone's
# init_cfg is mmdetection's (a download: point it at a local file, or remove it for random
# init, when training here).
_base_ = '../common/lsj-200e_coco-instance.py'

image_size = (1024, 1024)
# The crops are at most 1024x1024; the batch is padded to exactly that size. Only the
# images: mmdetection's file sets no pad_mask here (unlike its Mask R-CNN LSJ config).
batch_augments = [dict(type='BatchFixedSizePad', size=image_size)]

model = dict(
    type='SOLO',
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
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'),
        style='pytorch'),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=0,
        num_outs=5),
    mask_head=dict(
        type='SOLOHead',
        num_classes=80,
        in_channels=256,
        stacked_convs=7,
        feat_channels=256,
        strides=[8, 8, 16, 32, 32],
        scale_ranges=((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048)),
        pos_scale=0.2,
        num_grids=[40, 36, 24, 16, 12],
        cls_down_index=0,
        loss_mask=dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.25,
            loss_weight=1.0),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
    test_cfg=dict(
        nms_pre=500,
        score_thr=0.1,
        mask_thr=0.5,
        filter_thr=0.05,
        kernel='gaussian',  # Matrix NMS score decay: 'gaussian' or 'linear'
        sigma=2.0,
        max_per_img=100))

train_dataloader = dict(batch_size=8, num_workers=4)

# mixed-precision training (AmpOptimWrapper), lr for the total batch of 64
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.01 * 4, momentum=0.9, weight_decay=0.00004),
    clip_grad=dict(max_norm=35, norm_type=2))

# The batch the lr above was tuned for (8 GPUs x 8 images); --auto-scale-lr rescales the
# lr from it. Leave it as is.
auto_scale_lr = dict(base_batch_size=64)
