"""RegionAssigner (Cascade RPN, stage 1): positives in a central region of each gt."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from .assign_result import AssignResult
from .base_assigner import AssignerError, BaseAssigner

Region = Tuple[Tensor, Tensor, Tensor, Tensor]


def calc_region(bbox: Tensor,
                ratio: float,
                stride: int,
                featmap_size: Optional[Tuple[int, int]] = None) -> Region:
    """The part of a box left after cutting ``ratio`` of its size from every side.

    Args:
        bbox (Tensor): One box [4] in pixels, (x1, y1, x2, y2).
        ratio (float): Fraction of the width / height removed at each side.
        stride (int): Stride of the feature map; the region is in its cell units.
        featmap_size (tuple[int, int], optional): (h, w) to clamp the region to.

    Returns:
        tuple[Tensor]: (x1, y1, x2, y2) of the region, rounded to cells.
    """
    f_bbox = bbox / stride
    x1 = torch.round((1 - ratio) * f_bbox[0] + ratio * f_bbox[2])
    y1 = torch.round((1 - ratio) * f_bbox[1] + ratio * f_bbox[3])
    x2 = torch.round(ratio * f_bbox[0] + (1 - ratio) * f_bbox[2])
    y2 = torch.round(ratio * f_bbox[1] + (1 - ratio) * f_bbox[3])
    if featmap_size is not None:
        x1 = x1.clamp(min=0, max=featmap_size[1])
        y1 = y1.clamp(min=0, max=featmap_size[0])
        x2 = x2.clamp(min=0, max=featmap_size[1])
        y2 = y2.clamp(min=0, max=featmap_size[0])
    return (x1, y1, x2, y2)


def anchor_ctr_inside_region_flags(anchors: Tensor, stride: int, region: Region) -> Tensor:
    """Bool [N]: anchor centers (in cell units of ``stride``) inside ``region``, borders
    included."""
    x1, y1, x2, y2 = region
    centers = (anchors[:, :2] + anchors[:, 2:4]) * 0.5 / stride
    x, y = centers[:, 0], centers[:, 1]
    return (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)


def _inside_image(anchors: Tensor, valid_flags: Tensor, img_shape: Sequence[int],
                  allowed_border: int) -> Tensor:
    """Valid anchors lying inside the image up to ``allowed_border`` (negative: all valid)."""
    if allowed_border < 0:
        return valid_flags
    img_h, img_w = img_shape[:2]
    return (valid_flags & (anchors[:, 0] >= -allowed_border) &
            (anchors[:, 1] >= -allowed_border) & (anchors[:, 2] < img_w + allowed_border) &
            (anchors[:, 3] < img_h + allowed_border))


@TASK_UTILS.register_module()
class RegionAssigner(BaseAssigner):
    """Assign anchors of the gt's level whose centers fall in its central region.

    Each gt is sent to level ``floor(log2(sqrt(area)) - log2(anchor_scale * strides[0])
    + 0.5)`` (clamped to the levels). On that level, anchors centered in the gt's ignore
    region (``ignore_ratio``) become -1, then those in its center region
    (``center_ratio``) become positive. Anchors in the ignore region on the two adjacent
    levels, and anchors outside the image, are -1 too. Everything else is negative (0).
    Labels are the gt label for positives and 0 elsewhere (as in mmdetection).

    Args:
        center_ratio (float): Size ratio of the positive region. Defaults to 0.2.
        ignore_ratio (float): Size ratio of the ignore region. Defaults to 0.5.
    """

    def __init__(self, center_ratio: float = 0.2, ignore_ratio: float = 0.5) -> None:
        self.center_ratio = center_ratio
        self.ignore_ratio = ignore_ratio

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               img_meta: dict,
               featmap_sizes: List[Tuple[int, int]],
               num_level_anchors: List[int],
               anchor_scale: int,
               anchor_strides: List[int],
               gt_instances_ignore: Optional[InstanceData] = None,
               allowed_border: int = 0) -> AssignResult:
        """Assign gts to anchors.

        Args:
            pred_instances (InstanceData): ``priors`` (anchors [N, 4], all levels) and
                ``valid_flags`` [N].
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            img_meta (dict): ``img_shape`` (h, w).
            featmap_sizes (list[tuple[int, int]]): (h, w) of each level.
            num_level_anchors (list[int]): Anchors per level.
            anchor_scale (int): Anchor scale (size = scale * stride).
            anchor_strides (list[int]): Stride of each level.
            gt_instances_ignore (InstanceData, optional): Not supported; must be None.
            allowed_border (int): How far anchors may stick out of the image.
                Defaults to 0.

        Returns:
            AssignResult: ``gt_inds`` [N], ``max_overlaps`` None (zeros [N] when there are
            no gts or anchors), ``labels`` [N].
        """
        if gt_instances_ignore is not None:
            raise NotImplementedError('RegionAssigner does not support ignored boxes.')
        num_gts, num_anchors = len(gt_instances), len(pred_instances)
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        flat_anchors = pred_instances.priors
        flat_valid_flags = pred_instances.valid_flags
        mlvl_anchors = torch.split(flat_anchors, num_level_anchors)

        if num_gts == 0 or num_anchors == 0:
            return AssignResult(num_gts, gt_bboxes.new_zeros((num_anchors, ), dtype=torch.long),
                                gt_bboxes.new_zeros((num_anchors, )),
                                gt_bboxes.new_full((num_anchors, ), -1, dtype=torch.long))

        num_lvls = len(mlvl_anchors)
        pos_ratio = (1 - self.center_ratio) / 2
        ignore_ratio = (1 - self.ignore_ratio) / 2
        scale = torch.sqrt((gt_bboxes[:, 2] - gt_bboxes[:, 0]) *
                           (gt_bboxes[:, 3] - gt_bboxes[:, 1]))
        min_anchor_size = scale.new_full((1, ), float(anchor_scale * anchor_strides[0]))
        target_lvls = torch.floor(torch.log2(scale) - torch.log2(min_anchor_size) + 0.5)
        target_lvls = target_lvls.clamp(min=0, max=num_lvls - 1).long()

        mlvl_gt_inds = [gt_bboxes.new_zeros((n, ), dtype=torch.long) for n in num_level_anchors]
        mlvl_ignored = [torch.zeros_like(inds, dtype=torch.bool) for inds in mlvl_gt_inds]

        def in_ignore_region(lvl: int, gt_bbox: Tensor) -> Tensor:
            region = calc_region(gt_bbox, ignore_ratio, anchor_strides[lvl], featmap_sizes[lvl])
            return anchor_ctr_inside_region_flags(mlvl_anchors[lvl], anchor_strides[lvl],
                                                  region)

        for gt_id in range(num_gts):
            lvl = int(target_lvls[gt_id])
            gt_bbox = gt_bboxes[gt_id, :4]
            mlvl_gt_inds[lvl][in_ignore_region(lvl, gt_bbox)] = -1
            ctr_region = calc_region(gt_bbox, pos_ratio, anchor_strides[lvl],
                                     featmap_sizes[lvl])
            in_center = anchor_ctr_inside_region_flags(mlvl_anchors[lvl], anchor_strides[lvl],
                                                       ctr_region)
            mlvl_gt_inds[lvl][in_center] = gt_id + 1
            # The neighbouring levels must not learn this gt as background.
            for adjacent in (lvl - 1, lvl + 1):
                if 0 <= adjacent < num_lvls:
                    mlvl_ignored[adjacent] |= in_ignore_region(adjacent, gt_bbox)

        for gt_inds, ignored in zip(mlvl_gt_inds, mlvl_ignored):
            gt_inds[ignored] = -1

        flat_gt_inds = torch.cat(mlvl_gt_inds)
        if not flat_gt_inds.shape[0] == flat_anchors.shape[0] == flat_valid_flags.shape[0]:
            raise AssignerError(
                f'RegionAssigner: num_level_anchors sum to {flat_gt_inds.shape[0]}, but there '
                f'are {flat_anchors.shape[0]} anchors and {flat_valid_flags.shape[0]} flags.')
        inside = _inside_image(flat_anchors, flat_valid_flags, img_meta['img_shape'],
                               allowed_border)
        flat_gt_inds[~inside] = -1

        assigned_labels = torch.zeros_like(flat_gt_inds)
        positive = flat_gt_inds > 0
        assigned_labels[positive] = gt_labels[flat_gt_inds[positive] - 1]
        return AssignResult(num_gts, flat_gt_inds, None, assigned_labels)
