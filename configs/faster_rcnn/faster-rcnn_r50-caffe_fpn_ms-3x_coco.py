# Faster R-CNN with Detectron2's caffe-style ResNet-50 (stride on the 1x1 conv, frozen BN,
# BGR input with mean-only normalization), multi-scale 3x, as mmdetection 3.3's
# faster-rcnn_r50-caffe_fpn_ms-3x_coco.py. The init_cfg is mmdetection's (a download:
# point it at a local file, or remove it for random init, when training here).
_base_ = 'faster-rcnn_r50_fpn_ms-3x_coco.py'
model = dict(
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[103.530, 116.280, 123.675],
        std=[1.0, 1.0, 1.0],
        bgr_to_rgb=False,
        pad_size_divisor=32),
    backbone=dict(
        norm_cfg=dict(requires_grad=False),
        norm_eval=True,
        style='caffe',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnet50_caffe')))
