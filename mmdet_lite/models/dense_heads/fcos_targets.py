"""FCOS's training targets: which points are positives of which gt box, and their distances.

:class:`FCOSTargetsMixin` holds the target computation of :class:`~.fcos_head.FCOSHead`
(mmdetection defines these methods on the head; they live here so that the head file reads as
layers, forward and losses). The rules are in the head's module docstring: a point is a
positive of a box it lies in (or, with ``center_sampling``, in whose central square it lies)
when its largest distance to the box's sides fits its level's ``regress_ranges``; of several
such boxes it takes the smallest.

Subclasses change one step: CondInst adds per-image outputs to ``_get_targets_single`` and
places the sampling squares at the mask centroids (``_sampling_centers``); VFNetHead calls
``get_targets`` when it does not use ATSS.
"""
from typing import List, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import InstanceList
from ..utils import images_to_levels
from .anchor_free_head import AnchorFreeHeadArgumentError

INF = 1e8  # the regression range of the last level is open-ended; also marks "no gt" areas


class FCOSTargetsMixin:
    """``get_targets`` and its per-image assignment for FCOS-style point heads.

    Expects the host head to have ``regress_ranges``, ``strides``, ``center_sampling``,
    ``center_sample_radius``, ``norm_on_bbox`` and ``num_classes``. Put it before the
    point head in the bases (``class FCOSHead(FCOSTargetsMixin, AnchorFreeHead)``).
    """

    def get_targets(self, points: List[Tensor],
                    batch_gt_instances: InstanceList) -> Tuple[List[Tensor], ...]:
        """Labels and box targets of every point of every image, grouped per level.

        Args:
            points (list[Tensor]): Points of each level, [N_l, 2] as (x, y).
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4] and ``labels`` [G] per
                image.

        Returns:
            tuple: ``labels`` per level [B * N_l] (image-major; ``num_classes`` for
            background), ``bbox_targets`` per level [B * N_l, 4] ((left, top, right, bottom)
            distances, divided by the level's stride with ``norm_on_bbox``), then per image
            any further outputs of a subclass's ``_get_targets_single`` (none for FCOS).
        """
        if len(points) != len(self.regress_ranges):
            raise AnchorFreeHeadArgumentError(
                f'regress_ranges has {len(self.regress_ranges)} levels but the head got '
                f'{len(points)} levels of points')
        num_points_per_lvl = [level.size(0) for level in points]
        # One (min, max) range row per point of all levels.
        concat_regress_ranges = torch.cat([
            level.new_tensor(self.regress_ranges[i])[None].expand_as(level)
            for i, level in enumerate(points)])  # [N, 2]
        concat_points = torch.cat(points)  # [N, 2]
        per_img = [self._get_targets_single(gt_instances, points=concat_points,
                                            regress_ranges=concat_regress_ranges,
                                            num_points_per_lvl=num_points_per_lvl)
                   for gt_instances in batch_gt_instances]

        # Per level, the images one after the other: [B * N_l] and [B * N_l, 4].
        labels = [lvl.flatten(0, 1) for lvl in images_to_levels(
            [outputs[0] for outputs in per_img], num_points_per_lvl)]
        bbox_targets = [lvl.flatten(0, 1) for lvl in images_to_levels(
            [outputs[1] for outputs in per_img], num_points_per_lvl)]
        if self.norm_on_bbox:
            bbox_targets = [targets / self.strides[lvl]
                            for lvl, targets in enumerate(bbox_targets)]
        extras_per_img = [list(extra) for extra in zip(*(outputs[2:] for outputs in per_img))]
        return (labels, bbox_targets, *extras_per_img)

    def _get_targets_single(self, gt_instances: InstanceData, points: Tensor,
                            regress_ranges: Tensor,
                            num_points_per_lvl: List[int]) -> Tuple[Tensor, Tensor]:
        """Labels [N] (``num_classes`` for background) and box targets [N, 4] (pixels) of the
        points of one image: :meth:`_assign_points` without the gt indices."""
        labels, bbox_targets, _ = self._assign_points(gt_instances, points, regress_ranges,
                                                      num_points_per_lvl)
        return labels, bbox_targets

    def _assign_points(self, gt_instances: InstanceData, points: Tensor,
                       regress_ranges: Tensor,
                       num_points_per_lvl: List[int]) -> Tuple[Tensor, Tensor, Tensor]:
        """FCOS's assignment of one image's points to its gt boxes.

        Args:
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G] (subclasses
                may read more, e.g. ``masks``, in :meth:`_sampling_centers`).
            points (Tensor): Points of all levels [N, 2].
            regress_ranges (Tensor): (min, max) of each point's level [N, 2].
            num_points_per_lvl (list[int]): Points of each level (sum N).

        Returns:
            tuple: labels [N] (``num_classes`` for background), bbox_targets [N, 4] (the
            distances to the sides of each point's assigned box, in pixels) and gt_inds [N]
            (the index of that box; meaningless at background points).
        """
        num_points = points.size(0)
        num_gts = len(gt_instances)
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        if num_gts == 0:
            return (gt_labels.new_full((num_points, ), self.num_classes),
                    gt_bboxes.new_zeros((num_points, 4)),
                    gt_bboxes.new_zeros((num_points, ), dtype=torch.int64))

        if self.center_sampling:
            center_xs, center_ys = self._sampling_centers(gt_instances, gt_bboxes)  # [G]
        areas = (gt_bboxes[:, 2] - gt_bboxes[:, 0]) * (gt_bboxes[:, 3] - gt_bboxes[:, 1])
        areas = areas[None].repeat(num_points, 1)  # [N, G], a copy: edited below
        regress_ranges = regress_ranges[:, None, :].expand(num_points, num_gts, 2)
        gt_bboxes = gt_bboxes[None].expand(num_points, num_gts, 4)
        xs = points[:, 0, None].expand(num_points, num_gts)
        ys = points[:, 1, None].expand(num_points, num_gts)
        # Distances from every point to the sides of every box: [N, G, 4].
        bbox_targets = torch.stack((xs - gt_bboxes[..., 0], ys - gt_bboxes[..., 1],
                                    gt_bboxes[..., 2] - xs, gt_bboxes[..., 3] - ys), -1)

        if self.center_sampling:
            # The central square of half-side radius * stride of the point's level, clipped
            # to the box: a large box still gets positives only near its centre.
            half_side = torch.cat([
                points.new_full((n, ), self.strides[lvl] * self.center_sample_radius)
                for lvl, n in enumerate(num_points_per_lvl)])[:, None]  # [N, 1]
            center_dists = torch.stack((  # [N, G, 4]
                xs - torch.maximum(center_xs - half_side, gt_bboxes[..., 0]),
                ys - torch.maximum(center_ys - half_side, gt_bboxes[..., 1]),
                torch.minimum(center_xs + half_side, gt_bboxes[..., 2]) - xs,
                torch.minimum(center_ys + half_side, gt_bboxes[..., 3]) - ys), -1)
            inside = center_dists.min(-1)[0] > 0  # [N, G]
        else:
            inside = bbox_targets.min(-1)[0] > 0  # [N, G]

        # Each level regresses only the boxes whose extent from the point fits its range.
        max_dist = bbox_targets.max(-1)[0]  # [N, G]
        in_range = (max_dist >= regress_ranges[..., 0]) & (max_dist <= regress_ranges[..., 1])

        # Of the boxes a point may regress, it takes the smallest.
        areas[~inside] = INF
        areas[~in_range] = INF
        min_area, min_area_inds = areas.min(dim=1)  # [N]
        labels = gt_labels[min_area_inds]
        labels[min_area == INF] = self.num_classes
        bbox_targets = bbox_targets[range(num_points), min_area_inds]  # [N, 4]
        return labels, bbox_targets, min_area_inds

    def _sampling_centers(self, gt_instances: InstanceData,
                          gt_bboxes: Tensor) -> Tuple[Tensor, Tensor]:
        """Centres (x [G], y [G]) of the ``center_sampling`` squares of one image's gt
        (``gt_instances``, boxes ``gt_bboxes`` [G, 4]): FCOS takes the box centres."""
        return (gt_bboxes[:, 0] + gt_bboxes[:, 2]) / 2, (gt_bboxes[:, 1] + gt_bboxes[:, 3]) / 2
