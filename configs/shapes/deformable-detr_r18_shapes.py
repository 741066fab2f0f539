# Deformable DETR on the built-in shapes dataset: sized for a CPU. Same model code and
# training recipe as the COCO config (frozen BN and stem, backbone / sampling offsets /
# reference points at a tenth of the lr, AdamW, gradient clipping, focal loss); overrides
# only what small synthetic data and a CPU need.
#
# Like DETR (configs/shapes/detr_r18_shapes.py) it fine-tunes a pretrained backbone: the
# ResNet-18 that the README's main job trains on shapes
# (configs/shapes/faster-rcnn_r18_fpn_shapes.py). Run that first, or point
# `shapes_backbone` at another checkpoint of that config.
#
# Other changes from the COCO config: the half-width ResNet-18's first three stages give
# strides 8 and 16 (32x32 and 16x16 maps of 256-px images) and the neck adds a stride-32
# level: 3 feature levels instead of 4; a 128-d, 3+3-layer transformer without dropout;
# 30 queries (at most 4 shapes per image); 3 classes; 256-px images without the multi-scale
# crops; DETR's 2000-image training split; 6 epochs with the lr dropped for the last one.
#
# Measured on the 2-core CPU machine: bbox mAP 0.660 (mAP@50 0.887) on the 100 validation
# images after 6 epochs, 24 min for training and evaluation (DINO's shapes config reaches
# 0.904 in 29 min, DETR's 0.249 after 20 epochs in 31 min, all from the same backbone).
_base_ = '../deformable_detr/deformable-detr_r50_16xb2-50e_coco.py'

shapes_backbone = 'work_dirs/faster-rcnn_r18_fpn_shapes/epoch_10.pth'
embed_dims = 128
num_levels = 3
model = dict(
    num_queries=30,
    num_feature_levels=num_levels,
    backbone=dict(
        depth=18,
        base_channels=32,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(1, 2),
        init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=shapes_backbone)),
    neck=dict(
        in_channels=[64, 128],
        out_channels=embed_dims,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=num_levels),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512, ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=embed_dims, dropout=0.0),
            cross_attn_cfg=dict(embed_dims=embed_dims, num_levels=num_levels, dropout=0.0),
            ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=512, ffn_drop=0.0))),
    positional_encoding=dict(num_feats=embed_dims // 2),
    bbox_head=dict(num_classes=3, embed_dims=embed_dims),
    test_cfg=dict(max_per_img=30))

dataset_type = 'ShapesDataset'
data_root = 'data/shapes/'
img_scale = (256, 256)
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
    batch_size=4,
    num_workers=1,
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2k.json',
        data_prefix=dict(img='train2k/'),
        num_images=2000,
        filter_cfg=dict(filter_empty_gt=False),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
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

optim_wrapper = dict(optimizer=dict(lr=2e-4))
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[5],
         gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=20),
    # the last epoch, plus the best by the first metric (coco/bbox_mAP)
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=2, save_best='auto'))
auto_scale_lr = dict(base_batch_size=4)
randomness = dict(seed=0)
