# DETR on the built-in shapes dataset: trains on a laptop CPU. Same model code and training
# recipe as the COCO config; overrides only what small synthetic data and a CPU need:
# a ResNet-18 trained from scratch (no pretrained weights can be downloaded), so its BN
# layers train and it learns at the full lr; a 128-d, 3+3-layer transformer without dropout
# (with dropout 0.1 all queries still predicted the same box after 12 epochs here: the
# matcher can pick whichever query's dropout noise lands closest, so nothing forces the
# queries apart); 20 queries (at most 4 shapes per image); 3 classes; 256-px images without
# DETR's multi-scale crops; a shorter schedule (DETR converges slowly: expect many epochs).
_base_ = '../detr/detr_r50_8xb2-150e_coco.py'

model = dict(
    num_queries=20,
    backbone=dict(depth=18, frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False),
    neck=dict(in_channels=[512], out_channels=128),
    encoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=128, dropout=0.0),
            ffn_cfg=dict(embed_dims=128, feedforward_channels=512, ffn_drop=0.0))),
    decoder=dict(
        num_layers=3,
        layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=128, dropout=0.0),
            cross_attn_cfg=dict(embed_dims=128, dropout=0.0),
            ffn_cfg=dict(embed_dims=128, feedforward_channels=512, ffn_drop=0.0))),
    positional_encoding=dict(num_feats=64),
    bbox_head=dict(num_classes=3, embed_dims=128),
    test_cfg=dict(max_per_img=20))

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
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
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

optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0, decay_mult=1.0)}))
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs, val_interval=12)
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[30],
         gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=20),
    # every epoch, plus the best by the first metric (coco/bbox_mAP)
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto'))
auto_scale_lr = dict(base_batch_size=4)
randomness = dict(seed=0)
