# Two-stage Deformable DETR with box refinement: the 300 best encoder proposals become the
# decoder's reference boxes and queries.
_base_ = 'deformable-detr-refine_r50_16xb2-50e_coco.py'
model = dict(as_two_stage=True)
