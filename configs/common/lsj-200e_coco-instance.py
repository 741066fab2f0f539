# The LSJ schedule of lsj-100e_coco-instance.py run twice as long (mmdetection 3.3's
# common/lsj-200e_coco-instance.py): the training set repeated 8 times per loop epoch,
# 25 loop epochs = 200 epochs, and a warm-up of 1000 iterations instead of 500.
_base_ = './lsj-100e_coco-instance.py'

train_dataloader = dict(dataset=dict(times=8))

# linear warm-up over 1000 iterations, lr x0.1 after loop epochs 22 and 24
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.067, by_epoch=False, begin=0,
        end=1000),
    dict(
        type='MultiStepLR',
        begin=0,
        end=25,
        by_epoch=True,
        milestones=[22, 24],
        gamma=0.1)
]
