# mmdetection 3.3's file name for the same model.
_base_ = './faster-rcnn_r50-caffe-c4_1x_coco.py'
