# Deformable DETR with iterative box refinement: each decoder layer has its own head
# branches and refines the previous layer's boxes.
_base_ = 'deformable-detr_r50_16xb2-50e_coco.py'
model = dict(with_box_refine=True)
