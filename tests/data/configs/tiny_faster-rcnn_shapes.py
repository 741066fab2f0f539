# A Faster R-CNN run that takes seconds on a CPU, for tests of the tools (train.py, test.py,
# resume, DDP, demo). Same structure as the shapes config it inherits; only the sizes shrink:
# ResNet-18 with 8 base channels, a 32-channel FPN, 96-px images, 8 train / 4 val images,
# one epoch.
#
# Where the data goes: ShapesDataset generates it on first use under data_root, which is
#   1. the env var MMDET_LITE_TINY_DATA when set, else ``data/shapes_tiny/``;
#   2. or any folder given on the command line, e.g. with
#      ``tests/helpers_tools.py: tiny_data_cfg_options(tmp_path)``, which sets
#      train_dataloader.dataset.data_root, val_dataloader.dataset.data_root,
#      test_dataloader.dataset.data_root, val_evaluator.ann_file and test_evaluator.ann_file.
_base_ = '../../../configs/shapes/faster-rcnn_r18_fpn_shapes.py'

data_root = '{{$MMDET_LITE_TINY_DATA:data/shapes_tiny/}}'
fpn_channels = 32

model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=fpn_channels),
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn_channels),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=64)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50), rcnn=dict(max_per_img=20)))

img_scale = (96, 96)
# drawing parameters of the synthetic images: 96-px squares, shapes of 16..40 px
shapes_cfg = dict(image_size=96, size_range=(16, 40), max_objects=3)
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
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, num_images=8, pipeline=train_pipeline, **shapes_cfg))
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, num_images=4, pipeline=test_pipeline, **shapes_cfg))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

max_epochs = 1
train_cfg = dict(max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8], gamma=0.1)
]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
log_processor = dict(window_size=1)
