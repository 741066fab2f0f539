# The 2x Grid R-CNN on a 1x schedule: 12 epochs, lr steps at 8 and 11, a short warm-up.
_base_ = './grid-rcnn_r50_fpn_gn-head_2x_coco.py'

# training schedule
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)

# learning rate
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.0001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]
