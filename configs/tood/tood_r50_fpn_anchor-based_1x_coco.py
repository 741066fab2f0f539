# TOOD regressing deltas from the anchors (through the DeltaXYWH coder) instead of distances
# from their centres; everything else as tood_r50_fpn_1x_coco.py.
_base_ = './tood_r50_fpn_1x_coco.py'
model = dict(bbox_head=dict(anchor_type='anchor_based'))
