# RetinaNet on the shapes dataset with the YOLOX/RTMDet-style training pipeline: a cached
# mosaic of four images, a random resize and crop back to one image's size, HSV jitter,
# flip, pad, and a cached mixup. No dataset wrapper is needed: CachedMosaic and
# CachedMixUp draw their other images from the samples they have seen (per worker).
# Everything else (model, 10-epoch schedule, evaluation) is retinanet_r18_fpn_shapes.py.
_base_ = './retinanet_r18_fpn_shapes.py'

img_scale = (256, 256)  # (w, h), as in shapes_detection.py
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True),
    # 2x2 images of img_scale: a 512 x 512 canvas
    dict(type='CachedMosaic', img_scale=img_scale, pad_val=114.0, max_cached_images=20,
         random_pop=False),
    dict(type='RandomResize', scale=(img_scale[0] * 2, img_scale[1] * 2),
         ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=img_scale),
    dict(type='YOLOXHSVRandomAug'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=img_scale, pad_val=dict(img=(114, 114, 114))),
    dict(type='CachedMixUp', img_scale=img_scale, ratio_range=(1.0, 1.0),
         max_cached_images=10, random_pop=False, pad_val=(114, 114, 114), prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
