_base_ = '../faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
# mmdetection's backbone init_cfg is
#     dict(type='Pretrained', checkpoint='open-mmlab://resnest50')
# left out, as the ResNet-50 base leaves out its own (nothing is downloaded; point
# +model.backbone.init_cfg at a local copy of that checkpoint instead).
# SyncBN needs CUDA for training; on CPU use --cfg-options with norm_cfg type BN.
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    # ResNeSt's ImageNet normalization
    data_preprocessor=dict(
        mean=[123.68, 116.779, 103.939],
        std=[58.393, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='ResNeSt',
        stem_channels=64,
        depth=50,
        radix=2,
        reduction_factor=4,
        avg_down_stride=True,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch'),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg)))

# multi-scale training: the shorter side drawn from 640..800
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='RandomResize', scale=[(1333, 640), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
