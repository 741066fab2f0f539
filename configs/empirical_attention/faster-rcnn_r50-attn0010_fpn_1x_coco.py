# Empirical attention: GeneralizedAttention with attention terms '0010' (query-key,
# query-position, key-only, position-only) after conv2 of every Bottleneck in stages 3-4.
_base_ = '../faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
model = dict(
    backbone=dict(plugins=[
        dict(
            cfg=dict(
                type='GeneralizedAttention',
                spatial_range=-1,
                num_heads=8,
                attention_type='0010',
                kv_stride=2),
            stages=(False, False, True, True),
            position='after_conv2')
    ]))
