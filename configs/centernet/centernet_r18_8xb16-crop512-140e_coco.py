# The original CenterNet with plain 3x3 convs instead of DCNv2 in CTResNetNeck, as
# mmdetection 3.3's centernet_r18_8xb16-crop512-140e_coco.py.
_base_ = './centernet_r18-dcnv2_8xb16-crop512-140e_coco.py'

model = dict(neck=dict(use_dcn=False))
