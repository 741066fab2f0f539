# Faster R-CNN with Detectron2's caffe-style ResNet-101, multi-scale 3x, as mmdetection
# 3.3's faster-rcnn_r101-caffe_fpn_ms-3x_coco.py. Its base is the pytorch-style R-50 3x
# config, so the input normalization stays the torchvision one (mmdetection's values). The
# init_cfg is mmdetection's (a download: point it at a local file, or remove it, when
# training here).
_base_ = 'faster-rcnn_r50_fpn_ms-3x_coco.py'

model = dict(
    backbone=dict(
        depth=101,
        norm_cfg=dict(requires_grad=False),
        norm_eval=True,
        style='caffe',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='open-mmlab://detectron2/resnet101_caffe')))
