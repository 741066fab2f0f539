# 2x schedule: 24 epochs, lr steps at epochs 16 and 22 (mmdetection 3.x values).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# learning rate: linear warm-up over the first 500 iterations, then step decay per epoch
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=24,
        by_epoch=True,
        milestones=[16, 22],
        gamma=0.1)
]

# optimizer
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))

# lr=0.02 is for a total batch size of 16 (8 GPUs x 2 images). With `enable=True`
# (or `--auto-scale-lr`) the lr is scaled linearly to the actual total batch size.
auto_scale_lr = dict(enable=False, base_batch_size=16)
