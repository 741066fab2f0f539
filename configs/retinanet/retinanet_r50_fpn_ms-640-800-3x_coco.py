# RetinaNet R-50 + FPN, multi-scale training (shorter side 640..800) over 36 epochs, as
# mmdetection 3.3's retinanet_r50_fpn_ms-640-800-3x_coco.py: the model base over the
# common 3x data and schedule.
_base_ = ['../_base_/models/retinanet_r50_fpn.py', '../common/ms_3x_coco.py']
# RetinaNet trains with half the two-stage lr (0.01 for a total batch size of 16).
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0001))
