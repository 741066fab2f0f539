# Mask R-CNN with Detectron2's caffe-style ResNet-101 (frozen BN, BGR input with mean-only
# normalization), multi-scale polygon-mask 3x, as mmdetection 3.3's
# mask-rcnn_r101-caffe_fpn_ms-poly-3x_coco.py. The init_cfg is mmdetection's (a download:
# point it at a local file, or remove it, when training here).
_base_ = [
    '../common/ms-poly_3x_coco-instance.py',
    '../_base_/models/mask-rcnn_r50_fpn.py'
]

model = dict(
    data_preprocessor=dict(
        mean=[103.530, 116.280, 123.675],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False),
    backbone=dict(
        depth=101,
        norm_cfg=dict(requires_grad=False),
        norm_eval=True,
        style='caffe',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnet101_caffe')))
