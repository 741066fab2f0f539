# COCO boxes with large scale jittering (LSJ), 100 epochs, as mmdetection 3.3's
# common/lsj-100e_coco-detection.py. Each image is rescaled to 0.1x-2.0x of 1024x1024 and
# a 1024x1024 window is cropped from it; the 25 "epochs" of the loop run over the training
# set repeated 4 times, i.e. 100 real epochs. Model configs put this under their model.
_base_ = '../_base_/default_runtime.py'

dataset_type = 'CocoDataset'
data_root = 'data/coco/'
image_size = (1024, 1024)

# Arguments of the mmengine file backend; None reads from local disk.
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    # the jitter: target scale drawn in [0.1, 2.0] x image_size, aspect ratio kept
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.1, 2.0),
        keep_ratio=True),
    # a crop of at most image_size; boxes clipped to it, images left without boxes kept
    # (recompute_bbox only acts where masks are loaded)
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    # drop the slivers the crop leaves at its border
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    # Remove LoadAnnotations when the test set has no ground truth.
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]

# The training set is repeated (RepeatDataset) so that one loop epoch is several passes,
# with fewer validation/checkpoint stops.
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='RepeatDataset',
        times=4,  # 25 loop epochs x 4 = 100 epochs; e.g. 16 gives 400
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=train_pipeline,
            backend_args=backend_args)))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric='bbox',
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator

# 25 loop epochs (each 4 passes over the data), validated every 5
max_epochs = 25
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# SGD tuned for a total batch of 64 images
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.00004))

# linear warm-up over 500 iterations, lr x0.1 after loop epochs 22 and 24
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.067, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[22, 24],
        gamma=0.1)
]

# keep only the two newest checkpoints
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2))

# The batch the lr above was tuned for (32 GPUs x 2 images); --auto-scale-lr rescales the
# lr from it. Leave it as is.
auto_scale_lr = dict(base_batch_size=64)
