# YOLOv3 Darknet-53, multi-scale 608, with automatic mixed precision (dynamic loss scale).
_base_ = './yolov3_d53_8xb8-ms-608-273e_coco.py'

optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
