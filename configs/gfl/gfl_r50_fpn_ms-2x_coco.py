# GFL R-50 trained twice as long (24 epochs, lr steps at 16 and 22) with multi-scale
# training (the shorter side drawn in 480..800), as mmdetection 3.3's gfl_r50_fpn_ms-2x_coco.py.
_base_ = './gfl_r50_fpn_1x_coco.py'
max_epochs = 24

# warm-up, then lr x0.1 after epochs 16 and 22
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]
train_cfg = dict(max_epochs=max_epochs)

# the shorter side drawn in 480..800 (the longer at most 1333)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomResize', scale=[(1333, 480), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
