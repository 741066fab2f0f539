_base_ = [
    '../_base_/models/retinanet_r50_fpn.py',
    '../_base_/datasets/coco_detection.py',
    '../_base_/schedules/schedule_1x.py', '../_base_/default_runtime.py'
]
# Pretrained backbone: mmdetection sets
#     backbone.init_cfg = dict(type='Pretrained', checkpoint='open-mmlab://regnetx_3.2gf')
# which downloads the ImageNet weights at run time. mmdet_lite downloads nothing, so the
# backbone has no init_cfg here (random init). Download that checkpoint once and point the
# backbone at the local file, e.g. --cfg-options
#     +model.backbone.init_cfg.type=Pretrained \
#     +model.backbone.init_cfg.checkpoint=/path/to/regnetx_3.2gf.pth
model = dict(
    data_preprocessor=dict(
        # RegNets were trained on ImageNet by pycls with BGR inputs and these statistics.
        mean=[103.53, 116.28, 123.675],
        std=[57.375, 57.12, 58.395],
        bgr_to_rgb=False),
    backbone=dict(
        _delete_=True,
        type='RegNet',
        arch='regnetx_3.2gf',
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch'),  # no init_cfg: see the note above
    neck=dict(
        type='FPN',
        in_channels=[96, 192, 432, 1008],
        out_channels=256,
        num_outs=5))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.00005),
    clip_grad=dict(max_norm=35, norm_type=2))
