# RetinaNet R-50 + FPN with large scale jittering for 200 epochs, 8 GPUs x 8 images in
# mixed precision, as mmdetection 3.3's retinanet_r50_fpn_8xb8-amp-lsj-200e_coco.py.
_base_ = [
    '../_base_/models/retinanet_r50_fpn.py',
    '../common/lsj-200e_coco-detection.py'
]

image_size = (1024, 1024)
# The crops are at most 1024x1024; the batch is padded to exactly that size.
batch_augments = [dict(type='BatchFixedSizePad', size=image_size)]

model = dict(data_preprocessor=dict(batch_augments=batch_augments))

train_dataloader = dict(batch_size=8, num_workers=4)
# mixed-precision training (AmpOptimWrapper), lr for the total batch of 64
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        type='SGD', lr=0.01 * 4, momentum=0.9, weight_decay=0.00004))

# The batch the lr above was tuned for (8 GPUs x 8 images); --auto-scale-lr rescales the
# lr from it. Leave it as is.
auto_scale_lr = dict(base_batch_size=64)
