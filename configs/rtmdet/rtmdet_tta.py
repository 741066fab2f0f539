# Test-time augmentation for RTMDet (mmdetection 3.3 values): every image is run at three
# scales, flipped and not flipped; DetTTAModel merges the six predictions with NMS.
# (mmdetection reads tta_model / tta_pipeline for `tools/test.py --tta`.)
tta_model = dict(
    type='DetTTAModel',
    tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.6), max_per_img=100))

img_scales = [(640, 640), (320, 320), (960, 960)]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        # One list per step; TestTimeAug runs every combination (3 x 2 x 1 x 1 x 1).
        transforms=[
            [dict(type='Resize', scale=s, keep_ratio=True) for s in img_scales],
            # Flip before padding: the flip is undone on the boxes with the unpadded size.
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [dict(type='Pad', size=(960, 960), pad_val=dict(img=(114, 114, 114)))],
            [dict(type='LoadAnnotations', with_bbox=True)],
            [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                               'scale_factor', 'flip', 'flip_direction'))
            ]
        ])
]
