# RetinaNet on the built-in shapes dataset: trains and evaluates on a laptop CPU.
# Same bases as the COCO config; overrides only what small synthetic data and a CPU need:
# the recipe of faster-rcnn_r18_fpn_shapes.py: a half-width ResNet-18 trained from scratch
# (no pretrained weights can be downloaded) with training BN, a 64-channel neck and head,
# 3 classes, 256-px images, AdamW and a 10-epoch schedule.
_base_ = [
    '../_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/shapes_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]

model = dict(
    backbone=dict(depth=18, base_channels=32, frozen_stages=-1, norm_eval=False),
    # C3-C5 of the half-width ResNet-18; P6 is a stride-2 conv on C5 ('on_input').
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64))

img_scale = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(batch_size=4, num_workers=1,
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 10
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8],
         gamma=0.1)
]
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=35, norm_type=2))
default_hooks = dict(
    logger=dict(interval=20),
    # every epoch, plus the best by the first metric (coco/bbox_mAP)
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto'))
randomness = dict(seed=0)
# The lr above is for a total batch of 4 (one process, batch_size=4).
auto_scale_lr = dict(base_batch_size=4)
