# Faster R-CNN R-50 + FPN, multi-scale training over 36 epochs, as mmdetection 3.3's
# faster-rcnn_r50_fpn_ms-3x_coco.py: the model base over the common 3x data and schedule.
_base_ = ['../common/ms_3x_coco.py', '../_base_/models/faster-rcnn_r50_fpn.py']
