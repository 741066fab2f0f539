# SSJ with Simple Copy-Paste, 270k iterations, as mmdetection 3.3's
# common/ssj_scp_270k_coco-instance.py. Each training image is loaded and jittered as in
# ssj_270k_coco-instance.py and padded to 1024x1024; CopyPaste then pastes the objects of a
# second such image onto it, which is why the dataset becomes a MultiImageMixDataset (it
# hands CopyPaste the extra image).
_base_ = 'ssj_270k_coco-instance.py'

dataset_type = 'CocoDataset'
data_root = 'data/coco/'

image_size = (1024, 1024)

# Arguments of the mmengine file backend; None reads from local disk.
backend_args = None

# per-image steps, run by the inner dataset for the image and for its paste source
load_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.8, 1.25),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    # both images the same size, so that the pasted masks line up
    dict(type='Pad', size=image_size),
]
# steps on the pair, run by MultiImageMixDataset
train_pipeline = [
    dict(type='CopyPaste', max_num_pasted=100),
    dict(type='PackDetInputs')
]

# _delete_ replaces the base's dataset instead of merging into it; batch size, workers and
# the InfiniteSampler stay the base's.
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='MultiImageMixDataset',
        dataset=dict(
            type=dataset_type,
            data_root=data_root,
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=32),
            pipeline=load_pipeline,
            backend_args=backend_args),
        pipeline=train_pipeline))
