"""CenterRegionAssigner (FoveaBox-style): priors in a gt's core are positive, around it shadowed."""
from typing import Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType
from .assign_result import AssignResult
from .base_assigner import AssignerError, BaseAssigner


def _check_box_dim(bboxes: Tensor, name: str) -> None:
    if bboxes.size(1) != 4:
        raise AssignerError(f'{name} must have shape [N, 4], got {tuple(bboxes.shape)}.')


def scale_boxes(bboxes: Tensor, scale: float) -> Tensor:
    """Scale boxes about their centers.

    Args:
        bboxes (Tensor): Boxes [M, 4], (x1, y1, x2, y2).
        scale (float): Factor applied to width and height.

    Returns:
        Tensor: Scaled boxes [M, 4].
    """
    _check_box_dim(bboxes, 'bboxes')
    centers = (bboxes[:, :2] + bboxes[:, 2:]) * .5
    half_sizes = (bboxes[:, 2:] - bboxes[:, :2]) * .5 * scale
    return torch.cat([centers - half_sizes, centers + half_sizes], dim=1)


def is_located_in(points: Tensor, bboxes: Tensor) -> Tensor:
    """Which points lie strictly inside which boxes.

    Args:
        points (Tensor): Points [M, 2], (x, y).
        bboxes (Tensor): Boxes [N, 4], (x1, y1, x2, y2).

    Returns:
        Tensor: Bool [M, N].
    """
    if points.size(1) != 2:
        raise AssignerError(f'points must have shape [M, 2], got {tuple(points.shape)}.')
    _check_box_dim(bboxes, 'bboxes')
    x, y = points[:, 0:1], points[:, 1:2]  # [M, 1]
    return ((x > bboxes[:, 0]) & (x < bboxes[:, 2]) & (y > bboxes[:, 1]) &
            (y < bboxes[:, 3]))


def bboxes_area(bboxes: Tensor) -> Tensor:
    """Areas [M] of boxes [M, 4] (x1, y1, x2, y2)."""
    _check_box_dim(bboxes, 'bboxes')
    return (bboxes[:, 2] - bboxes[:, 0]) * (bboxes[:, 3] - bboxes[:, 1])


@TASK_UTILS.register_module()
class CenterRegionAssigner(BaseAssigner):
    """Assign priors by where their centers fall relative to each gt's core and shadow.

    A gt's core is the gt scaled by ``pos_scale`` about its center, its shadow the gt
    scaled by ``neg_scale``. A prior whose center is inside a gt and whose IoF with the core
    exceeds ``min_pos_iof`` is positive for that gt; if several gts claim it, the smallest
    gt wins and the others record it as shadowed. A prior in the shadow (IoF >
    ``min_pos_iof``) but not the core of a gt is shadowed for it. Shadowed (prior, gt)
    pairs are returned as the extra property ``shadowed_labels`` [S, 2] = (prior index,
    gt label); a prior positive with the same label as one of its shadowing gts is turned
    negative, unless ``foreground_dominate``, in which case the shadow pair is dropped.
    Priors whose centers lie in an ignored box scaled by ``ignore_gt_scale`` get -1.

    Args:
        pos_scale (float): Scale of the core region.
        neg_scale (float): Scale of the shadow region.
        min_pos_iof (float): Minimum IoF of a prior with a region. Defaults to 1e-2.
        ignore_gt_scale (float): Scale of the ignored boxes. Defaults to 0.5.
        foreground_dominate (bool): Keep positives over same-label shadows. Defaults to
            False.
        iou_calculator (dict): Config of the overlap calculator.
            Defaults to ``dict(type='BboxOverlaps2D')``.
    """

    def __init__(self,
                 pos_scale: float,
                 neg_scale: float,
                 min_pos_iof: float = 1e-2,
                 ignore_gt_scale: float = 0.5,
                 foreground_dominate: bool = False,
                 iou_calculator: ConfigType = dict(type='BboxOverlaps2D')) -> None:
        self.pos_scale = pos_scale
        self.neg_scale = neg_scale
        self.min_pos_iof = min_pos_iof
        self.ignore_gt_scale = ignore_gt_scale
        self.foreground_dominate = foreground_dominate
        self.iou_calculator = TASK_UTILS.build(iou_calculator)

    def get_gt_priorities(self, gt_bboxes: Tensor) -> Tensor:
        """Priority of each gt: smaller gts get larger priorities.

        Args:
            gt_bboxes (Tensor): Gt boxes [G, 4].

        Returns:
            Tensor: [G], a permutation of 0..G-1 (the largest gt gets 0).
        """
        order = bboxes_area(gt_bboxes).sort(descending=True).indices
        return order.argsort()

    def assign(self,
               pred_instances: InstanceData,
               gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None,
               **kwargs) -> AssignResult:
        """Assign gts to priors.

        Args:
            pred_instances (InstanceData): ``priors`` [N, 4].
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            gt_instances_ignore (InstanceData, optional): ``bboxes`` [K, 4] to ignore.

        Returns:
            AssignResult: ``gt_inds`` [N] (0 negative, -1 ignored, k + 1 for gt k),
            ``max_overlaps`` None, ``labels`` [N] (-1 where not positive), and the extra
            property ``shadowed_labels`` [S, 2].
        """
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        priors = pred_instances.priors
        if priors.size(1) != 4:
            raise AssignerError('CenterRegionAssigner: priors must have size of 4 '
                                f'([N, 4]), got {tuple(priors.shape)}.')

        prior_centers = (priors[:, 2:4] + priors[:, 0:2]) / 2
        core_iof = self.iou_calculator(priors, scale_boxes(gt_bboxes, self.pos_scale),
                                       mode='iof')  # [N, G]
        in_core = is_located_in(prior_centers, gt_bboxes) & (core_iof > self.min_pos_iof)
        shadow_iof = self.iou_calculator(priors, scale_boxes(gt_bboxes, self.neg_scale),
                                         mode='iof')
        in_shadow = (shadow_iof > self.min_pos_iof) & ~in_core

        num_gts, num_priors = gt_bboxes.size(0), priors.size(0)
        if num_gts == 0 or num_priors == 0:
            assigned_gt_ids = in_core.new_zeros((num_priors, ), dtype=torch.long)
            shadowed = assigned_gt_ids.new_empty((0, 2))
        else:
            assigned_gt_ids, shadowed = self.assign_one_hot_gt_indices(
                in_core, in_shadow, gt_priority=self.get_gt_priorities(gt_bboxes))

        if gt_instances_ignore is not None and gt_instances_ignore.bboxes.numel() > 0:
            ignore_regions = scale_boxes(get_box_tensor(gt_instances_ignore.bboxes),
                                         self.ignore_gt_scale)
            in_ignored = is_located_in(prior_centers, ignore_regions).any(dim=1)
            assigned_gt_ids[in_ignored] = -1

        assigned_labels = assigned_gt_ids.new_full((num_priors, ), -1)
        pos_inds = torch.nonzero(assigned_gt_ids > 0, as_tuple=True)[0]
        assigned_labels[pos_inds] = gt_labels[assigned_gt_ids[pos_inds] - 1]

        shadowed_labels = shadowed.clone()
        if shadowed.numel() > 0:
            prior_idx, gt_idx = shadowed[:, 0], shadowed[:, 1]
            if (assigned_gt_ids[prior_idx] == gt_idx).any():
                raise AssignerError('CenterRegionAssigner: some priors are both shadowed by '
                                    'and assigned to the same gt.')
            shadowed_labels[:, 1] = gt_labels[gt_idx - 1]
            same_label = assigned_labels[prior_idx] == shadowed_labels[:, 1]
            if self.foreground_dominate:
                shadowed_labels = shadowed_labels[~same_label]
            else:
                assigned_labels[prior_idx[same_label]] = -1
                assigned_gt_ids[prior_idx[same_label]] = 0

        result = AssignResult(num_gts, assigned_gt_ids, None, assigned_labels)
        result.set_extra_property('shadowed_labels', shadowed_labels)
        return result

    def assign_one_hot_gt_indices(self,
                                  is_prior_in_gt_core: Tensor,
                                  is_prior_in_gt_shadow: Tensor,
                                  gt_priority: Optional[Tensor] = None
                                  ) -> Tuple[Tensor, Tensor]:
        """Give each prior at most one gt: the core gt of highest priority.

        Args:
            is_prior_in_gt_core (Tensor): Bool [N, G], prior in the core of gt.
            is_prior_in_gt_shadow (Tensor): Bool [N, G], prior in the shadow of gt.
            gt_priority (Tensor, optional): [G]; higher wins. Defaults to the gt order.

        Returns:
            tuple[Tensor, Tensor]: ``assigned_gt_inds`` [N] (0 or 1-based gt index) and
            ``shadowed_gt_inds`` [S, 2] = (prior index, 1-based gt index): first the shadow
            pairs, then the core pairs that lost to a higher-priority gt.
        """
        num_priors, num_gts = is_prior_in_gt_core.shape
        if gt_priority is None:
            gt_priority = torch.arange(num_gts, device=is_prior_in_gt_core.device)
        if gt_priority.size(0) != num_gts:
            raise AssignerError(f'gt_priority has {gt_priority.size(0)} entries for '
                                f'{num_gts} gts.')
        assigned_gt_inds = is_prior_in_gt_core.new_zeros((num_priors, ), dtype=torch.long)
        shadowed_gt_inds = torch.nonzero(is_prior_in_gt_shadow, as_tuple=False)
        if not is_prior_in_gt_core.any():
            shadowed_gt_inds[:, 1] += 1
            return assigned_gt_inds, shadowed_gt_inds

        # Priority of each (prior, gt) core pair, -1 elsewhere; each prior takes the max.
        pair_priority = torch.where(is_prior_in_gt_core, gt_priority[None, :].long(),
                                    gt_priority.new_full((), -1).long())
        matched = is_prior_in_gt_core.any(dim=1)
        winner = pair_priority[matched].max(dim=1).indices
        assigned_gt_inds[matched] = winner + 1
        losers = is_prior_in_gt_core.clone()
        losers[matched, winner] = False
        shadowed_gt_inds = torch.cat(
            [shadowed_gt_inds, torch.nonzero(losers, as_tuple=False)], dim=0)
        shadowed_gt_inds[:, 1] += 1
        return assigned_gt_inds, shadowed_gt_inds
