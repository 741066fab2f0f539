# Mask R-CNN R-50 + FPN, multi-scale training on polygon masks over 36 epochs, as
# mmdetection 3.3's mask-rcnn_r50_fpn_ms-poly-3x_coco.py: the model base over the common
# 3x data and schedule.
_base_ = [
    '../common/ms-poly_3x_coco-instance.py',
    '../_base_/models/mask-rcnn_r50_fpn.py'
]
