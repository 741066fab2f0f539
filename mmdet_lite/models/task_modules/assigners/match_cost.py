"""Pairwise matching costs between predictions and ground truths (registered in TASK_UTILS).

Each cost is called as ``cost(pred_instances, gt_instances, img_meta)`` and returns a
[num_preds, num_gts] matrix, already multiplied by its ``weight``; lower is a better match.
The box and softmax-classification costs live here; the focal, dice and mask cross-entropy
costs live in their own files and are re-exported, so that every cost can be imported from
this module as in mmdetection.
"""
from typing import Optional, Union

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import bbox_overlaps, bbox_xyxy_to_cxcywh, get_box_tensor
from .base_assigner import AssignerError
from .base_match_cost import BaseMatchCost
from .focal_loss_cost import BinaryFocalLossCost, FocalLossCost
from .mask_match_cost import CrossEntropyLossCost, DiceCost

__all__ = [
    'BaseMatchCost', 'BBoxL1Cost', 'IoUCost', 'ClassificationCost', 'FocalLossCost',
    'BinaryFocalLossCost', 'DiceCost', 'CrossEntropyLossCost'
]


@TASK_UTILS.register_module()
class BBoxL1Cost(BaseMatchCost):
    """L1 distance between boxes normalized by the image size.

    Both ``bboxes`` are (x1, y1, x2, y2) in pixels; they are divided by (w, h, w, h) of
    ``img_meta['img_shape']`` so the cost does not depend on the image size.

    Args:
        box_format (str): Compare boxes as ``'xyxy'`` (DETR) or as ``'xywh'`` (cx, cy, w, h;
            Sparse R-CNN). Defaults to ``'xyxy'``.
        weight (float | int): Multiplier of the cost matrix. Defaults to 1.

    Example:
        >>> cost = BBoxL1Cost()
        >>> pred = InstanceData(bboxes=torch.tensor([[0., 0., 20., 10.]]))
        >>> gt = InstanceData(bboxes=torch.tensor([[20., 10., 60., 30.]]))
        >>> cost(pred, gt, dict(img_shape=(100, 200)))
        tensor([[0.6000]])
    """

    def __init__(self, box_format: str = 'xyxy', weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        if box_format not in ('xyxy', 'xywh'):
            raise AssignerError(f"BBoxL1Cost: box_format must be 'xyxy' or 'xywh', "
                                f'got {box_format!r}.')
        self.box_format = box_format

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """L1 cost [num_preds, num_gts] between ``pred_instances.bboxes`` [N, 4] and
        ``gt_instances.bboxes`` [G, 4], both (x1, y1, x2, y2) in pixels; needs
        ``img_meta['img_shape']`` = (h, w)."""
        if img_meta is None or 'img_shape' not in img_meta:
            raise KeyError('BBoxL1Cost needs img_meta["img_shape"] to normalize the boxes.')
        # Ground truths may come as box objects (HorizontalBoxes); the costs are tensor maths.
        pred_bboxes = get_box_tensor(pred_instances.bboxes)
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        if self.box_format == 'xywh':
            pred_bboxes = bbox_xyxy_to_cxcywh(pred_bboxes)
            gt_bboxes = bbox_xyxy_to_cxcywh(gt_bboxes)
        img_h, img_w = img_meta['img_shape'][:2]
        factor = gt_bboxes.new_tensor([img_w, img_h, img_w, img_h])
        cost = torch.cdist(pred_bboxes / factor, gt_bboxes / factor, p=1)
        return cost * self.weight  # [num_preds, num_gts]


@TASK_UTILS.register_module()
class IoUCost(BaseMatchCost):
    """Minus the overlap (IoU, IoF or GIoU) between boxes, (x1, y1, x2, y2) in pixels.

    The ``1 -`` of an IoU loss is left out: a constant does not change the matching.

    Args:
        iou_mode (str): ``'iou'``, ``'iof'`` or ``'giou'``. Defaults to ``'giou'``.
        weight (float | int): Multiplier of the cost matrix. Defaults to 1.
    """

    def __init__(self, iou_mode: str = 'giou', weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)
        self.iou_mode = iou_mode

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Cost [num_preds, num_gts]: ``-overlap(pred bboxes [N, 4], gt bboxes [G, 4])``."""
        pred_bboxes = get_box_tensor(pred_instances.bboxes)
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        out_dtype = pred_bboxes.dtype
        # Half-precision GIoU areas overflow: compute in fp32, hand back the input's dtype.
        if out_dtype in (torch.float16, torch.bfloat16):
            pred_bboxes = pred_bboxes.float()
        if gt_bboxes.dtype in (torch.float16, torch.bfloat16):
            gt_bboxes = gt_bboxes.float()
        overlaps = bbox_overlaps(pred_bboxes, gt_bboxes, mode=self.iou_mode)
        return -overlaps.to(out_dtype) * self.weight  # [num_preds, num_gts]


@TASK_UTILS.register_module()
class ClassificationCost(BaseMatchCost):
    """Minus the softmax probability each prediction gives to each ground truth's class.

    ``pred_instances.scores`` are logits [num_preds, num_classes (+1 background)];
    ``gt_instances.labels`` are [num_gts] class indices.

    Args:
        weight (float | int): Multiplier of the cost matrix. Defaults to 1.
    """

    def __init__(self, weight: Union[float, int] = 1) -> None:
        super().__init__(weight=weight)

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Cost [num_preds, num_gts]: ``-softmax(scores)[:, gt_labels]``."""
        probs = pred_instances.scores.softmax(-1)  # [num_preds, C]
        return -probs[:, gt_instances.labels] * self.weight  # [num_preds, num_gts]
