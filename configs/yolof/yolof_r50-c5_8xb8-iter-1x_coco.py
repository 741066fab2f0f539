# YOLOF R-50-C5 trained by iterations: 22500 iterations at a total batch of 64 is about
# 12.3 COCO epochs (117266 images after filtering), with lr steps at 15000 and 20000.
_base_ = './yolof_r50-c5_8xb8-1x_coco.py'

train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=22500,
    val_interval=4500)

# learning rate: linear warm-up over 500 iterations, then steps by iteration
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=22500,
        by_epoch=False,
        milestones=[15000, 20000],
        gamma=0.1)
]
train_dataloader = dict(sampler=dict(type='InfiniteSampler'))
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2500))

log_processor = dict(by_epoch=False)
