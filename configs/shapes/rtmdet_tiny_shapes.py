# RTMDet-tiny on the built-in shapes dataset, trained from scratch on a CPU with the COCO
# recipe of rtmdet_tiny_8xb32-300e_coco.py scaled down: the same model (3 classes), the same
# two-stage pipeline (cached mosaic + random resize/crop + HSV + flip + cached mixup, then
# the last epochs without mosaic/mixup, switched by PipelineSwitchHook), AdamW with flat then
# cosine lr, and the ExpMomentumEMA weights, which validation and the saved checkpoints use.
#
# What changes for a CPU: 256-px images instead of 640 (the mosaic canvas is 2x2 of them),
# batch 8 on one process, no ImageNet backbone (nothing is downloaded), and a schedule of
# minutes instead of 300 epochs: the linear warm-up is 200 iterations, the lr stays flat for
# the first half and decays by cosine to 5% over the second; the last `stage2_num_epochs`
# epochs run the plain pipeline, with validation after each of them.
_base_ = '../rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

model = dict(
    backbone=dict(init_cfg=None),  # from scratch
    bbox_head=dict(num_classes=3),
    test_cfg=dict(max_per_img=100))

dataset_type = 'ShapesDataset'
data_root = 'data/shapes/'
backend_args = None
img_scale = (256, 256)  # (w, h)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20,
         random_pop=False),
    dict(type='RandomResize', scale=(img_scale[0] * 2, img_scale[1] * 2),
         ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=img_scale, ratio_range=(1.0, 1.0),
         max_cached_images=10, random_pop=False, pad_val=(114, 114, 114), prob=0.5),
    dict(type='PackDetInputs')
]
train_pipeline_stage2 = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    pin_memory=False,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 20
stage2_num_epochs = 4
base_lr = 0.004
train_cfg = dict(
    max_epochs=max_epochs,
    val_interval=max_epochs // 2,
    dynamic_intervals=[(max_epochs - stage2_num_epochs, 1)])
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=200),
    dict(type='CosineAnnealingLR', eta_min=base_lr * 0.05, begin=max_epochs // 2,
         end=max_epochs, T_max=max_epochs // 2, by_epoch=True, convert_to_iter_based=True)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto'))
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49),
    dict(type='PipelineSwitchHook', switch_epoch=max_epochs - stage2_num_epochs,
         switch_pipeline=train_pipeline_stage2),
    dict(type='NumClassCheckHook'),
    dict(type='NonFiniteLossHook', skip_nonfinite=False),
]
randomness = dict(seed=0)
