"""CenterNet-update's training targets: heatmaps, box targets and the heatmap positives.

:class:`CenterNetUpdateTargetsMixin` holds the target computation of
:class:`~.centernet_update_head.CenterNetUpdateHead` (mmdetection defines these methods on the
head; they live here so that the head file reads as layers, forward and losses).

Targets, for every point of every level and every gt box (``get_targets``):

- *heatmap* (classification): ``exp(-d2 / r2)`` per class, the largest over that class's boxes,
  with ``d2`` the squared distance from the point to the box centre (0 at the point that holds
  the centre on each level) and ``r2 = max(2 * delta**2 * area, hm_min_radius**2)``,
  ``delta = (1 - hm_min_overlap) / (1 + hm_min_overlap)``; values below 1e-4 are 0. The
  heatmap covers every level, whatever the box size.
- *box*: a point regresses a box when it lies inside the box, within one stride of the box's
  discretised centre (the 3x3 cells around it) on a level whose range holds half the box
  diagonal; among several such boxes the one of smallest ``d2 / r2``. Others get -INF.

Positives of the heatmap loss (``add_cls_pos_inds``): for each box, of the 3x3 cells around its
centre on every level, those whose predicted box has a GIoU loss below
``min(more_pos_thresh, k-th smallest such loss)`` (``k = more_pos_topk``); the centre cell of a
level that fits the box counts as loss 0.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import bbox2distance
from mmdet_lite.utils import InstanceList
from .anchor_free_head import AnchorFreeHeadArgumentError

INF = 1000000000  # marks unassigned points and unusable candidate cells

# The 3x3 cells around a box centre, row by row; cell 4 is the centre itself.
_CELL_DX = (-1, 0, 1, -1, 0, 1, -1, 0, 1)
_CELL_DY = (-1, -1, -1, 0, 0, 0, 1, 1, 1)
_CENTRE_CELL = 4


class CenterNetUpdateTargetsMixin:
    """``get_targets`` (heatmaps and box targets) and ``add_cls_pos_inds`` (the heatmap
    positives) of CenterNetUpdateHead.

    Expects the host head to have ``num_classes``, ``strides``, ``regress_ranges``, ``delta``,
    ``hm_min_radius``, ``more_pos_thresh``, ``more_pos_topk``, ``bbox_coder`` and
    ``loss_bbox``. Put it before the point head in the bases
    (``class CenterNetUpdateHead(CenterNetUpdateTargetsMixin, AnchorFreeHead)``).
    """

    def get_targets(self, points: List[Tensor],
                    batch_gt_instances: InstanceList) -> Tuple[Tensor, Tensor]:
        """Heatmap and box targets of every point of every image.

        Args:
            points (list[Tensor]): Points of each level, [N_l, 2] as (x, y).
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.

        Returns:
            tuple: ``cls_targets`` [sum_l B * N_l, num_classes] (heatmaps) and
            ``bbox_targets`` [sum_l B * N_l, 4] (distances in strides, negative for points
            without a box), rows ordered level, image, position.
        """
        if len(points) != len(self.regress_ranges):
            raise AnchorFreeHeadArgumentError(
                f'regress_ranges has {len(self.regress_ranges)} levels but the head got '
                f'{len(points)} levels of points')
        num_points_per_lvl = [level.size(0) for level in points]
        concat_ranges = torch.cat([
            level.new_tensor(self.regress_ranges[i])[None].expand_as(level)
            for i, level in enumerate(points)])  # [N, 2]
        concat_strides = torch.cat([
            level.new_ones(len(level)) * self.strides[i] for i, level in enumerate(points)])
        concat_points = torch.cat(points)  # [N, 2]

        cls_per_img, bbox_per_img = [], []
        for gt_instances in batch_gt_instances:
            cls_target, bbox_target = self._get_targets_single(
                gt_instances, concat_points, concat_ranges, concat_strides)
            cls_per_img.append(cls_target.split(num_points_per_lvl))
            bbox_per_img.append(bbox_target.split(num_points_per_lvl))
        # Image-major per level -> level-major over the batch. An image without gts has an
        # integer heatmap; torch.cat promotes the batch's to float.
        cls_targets = torch.cat([t for lvl in zip(*cls_per_img) for t in lvl])
        bbox_targets = torch.cat([t for lvl in zip(*bbox_per_img) for t in lvl])
        return cls_targets, bbox_targets

    def _get_targets_single(self, gt_instances: InstanceData, points: Tensor,
                            regress_ranges: Tensor, strides: Tensor) -> Tuple[Tensor, Tensor]:
        """Heatmap [N, num_classes] and box targets [N, 4] of one image.

        Args:
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            points (Tensor): Points of all levels [N, 2].
            regress_ranges (Tensor): (min, max) of each point's level [N, 2].
            strides (Tensor): Stride of each point's level [N].
        """
        num_points, num_gts = points.size(0), len(gt_instances)
        gt_bboxes, gt_labels = gt_instances.bboxes, gt_instances.labels
        if num_gts == 0:
            # mmdetection's quirk, kept: the heatmap of an image without objects is an
            # integer tensor filled with num_classes (not zeros), which the focal loss's
            # (1 - target)**gamma turns into very large negative weights.
            return (gt_labels.new_full((num_points, self.num_classes), self.num_classes),
                    gt_bboxes.new_full((num_points, 4), -1))

        points = points[:, None].expand(num_points, num_gts, 2)
        gt_bboxes = gt_bboxes[None].expand(num_points, num_gts, 4)
        strides = strides[:, None, None].expand(num_points, num_gts, 2)
        bbox_target = bbox2distance(points, gt_bboxes)  # [N, G, 4]
        inside_box = bbox_target.min(dim=2)[0] > 0

        # The point of each level that holds the box centre, and its 3x3 neighbourhood.
        centers = (gt_bboxes[..., [0, 1]] + gt_bboxes[..., [2, 3]]) / 2  # [N, G, 2]
        centers_discrete = (centers / strides).trunc() * strides + strides / 2
        offsets = points - centers_discrete
        near_center = (offsets[..., 0].abs() <= strides[..., 0]) & \
            (offsets[..., 1].abs() <= strides[..., 0])

        # A level regresses the boxes whose half diagonal lies in its range.
        box_wh = bbox_target[..., :2] + bbox_target[..., 2:]
        half_diag = (box_wh**2).sum(dim=2)**0.5 / 2
        in_level = (half_diag >= regress_ranges[:, [0]]) & (half_diag <= regress_ranges[:, [1]])
        can_regress = inside_box & in_level & near_center

        # Squared distance to the true centre over the Gaussian's squared radius; the cell
        # holding the centre is a peak (0) on every level.
        norm_dist = ((points - centers)**2).sum(dim=2)  # [N, G]
        norm_dist[(offsets**2).sum(dim=2) == 0] = 0
        areas = (gt_bboxes[..., 2] - gt_bboxes[..., 0]) * (gt_bboxes[..., 3] - gt_bboxes[..., 1])
        radius2 = torch.clamp(self.delta**2 * 2 * areas, min=self.hm_min_radius**2)
        norm_dist = norm_dist / radius2

        # Each point regresses its nearest (normalised) box among those it can.
        bbox_dist = norm_dist.clone()
        bbox_dist[~can_regress] = INF * 1.0
        min_dist, min_inds = bbox_dist.min(dim=1)
        bbox_target = bbox_target[range(num_points), min_inds]  # [N, 4]
        bbox_target[min_dist == INF] = -INF
        bbox_target = bbox_target / strides[:, 0, :].repeat(1, 2)

        return self._create_heatmaps_from_dist(norm_dist, gt_labels), bbox_target

    def _create_heatmaps_from_dist(self, weighted_dist: Tensor, cls_labels: Tensor) -> Tensor:
        """Per-class heatmaps [N, num_classes] from normalised distances [N, G].

        Each class takes ``exp(-d)`` of its nearest box; values below 1e-4 become 0 and a
        class without boxes is 0 everywhere.
        """
        heatmaps = weighted_dist.new_zeros((weighted_dist.shape[0], self.num_classes))
        for c in cls_labels.unique().tolist():
            if not 0 <= c < self.num_classes:
                continue  # mmdetection fills only the classes 0..num_classes-1
            heat = torch.exp(-weighted_dist[:, cls_labels == c].min(dim=1)[0])
            heatmaps[:, c] = torch.where(heat < 1e-4, heat.new_zeros(()), heat)
        return heatmaps

    @torch.no_grad()
    def add_cls_pos_inds(self, flatten_points: Tensor, flatten_bbox_preds: Tensor,
                         featmap_sizes: Tensor, batch_gt_instances: InstanceList
                         ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Positives of the heatmap loss: the 3x3 centre cells whose box is already good.

        Args:
            flatten_points (Tensor): Point of every row of the flat predictions [M, 2].
            flatten_bbox_preds (Tensor): Flat distance predictions [M, 4] (stride units).
            featmap_sizes (Tensor): (h, w) of each level [L, 2].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.

        Returns:
            tuple: ``pos_inds`` [P] (rows of the flat predictions) and ``pos_labels`` [P];
            both None when the batch has no gt box.
        """
        labels, level_fits, cell_inds, cell_targets, cell_valid = \
            self._get_center3x3_region_index_targets(batch_gt_instances, featmap_sizes)
        num_gts, num_levels, num_cells = len(labels), len(self.strides), cell_valid.shape[-1]
        if num_gts == 0:
            return None, None

        cell_inds[~cell_valid] = 0  # any row; their loss is set to INF below
        cell_points = flatten_points[cell_inds].view(-1, 2)
        cell_preds = flatten_bbox_preds[cell_inds].view(-1, 4)
        cell_loss = self.loss_bbox(
            self.bbox_coder.decode(cell_points, cell_preds),
            self.bbox_coder.decode(cell_points, cell_targets.view(-1, 4).clamp(min=0)),
            None, reduction_override='none')
        # The plain GIoU loss, [G, L, 9].
        cell_loss = cell_loss.view(num_gts, num_levels, num_cells) / self.loss_bbox.loss_weight
        cell_loss[~cell_valid] = INF
        # The cell holding the centre, on a level that fits the box, is always a positive.
        cell_loss.view(-1, num_cells)[level_fits.view(-1), _CENTRE_CELL] = 0
        cell_loss = cell_loss.view(num_gts, -1)  # [G, L * 9]

        loss_thr = torch.kthvalue(cell_loss, self.more_pos_topk, dim=1)[0]
        loss_thr = loss_thr.clamp(max=self.more_pos_thresh)
        is_pos = cell_loss < loss_thr[:, None]
        pos_inds = cell_inds.view(num_gts, -1)[is_pos]
        pos_labels = labels[:, None].expand(num_gts, num_levels * num_cells)[is_pos]
        return pos_inds, pos_labels

    def _get_center3x3_region_index_targets(self, batch_gt_instances: InstanceList,
                                            shapes_per_level: Tensor) -> tuple:
        """The 3x3 cells around each gt box's centre on every level.

        Args:
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            shapes_per_level (Tensor): (h, w) of each level [L, 2].

        Returns:
            tuple: over the G boxes of the batch: ``labels`` [G]; ``level_fits`` [G, L]
            (the centre cell is inside the box and the level's range holds it); ``cell_inds``
            [G, L, 9] (rows of the flat predictions); ``cell_targets`` [G, L, 9, 4] (distances
            from each cell to the box sides, in strides); ``cell_valid`` [G, L, 9] (the cell
            is on the map and inside the box).
        """
        num_levels, num_imgs = len(self.strides), len(batch_gt_instances)
        shapes_per_level = shapes_per_level.long()
        area_per_level = shapes_per_level[:, 0] * shapes_per_level[:, 1]  # [L]
        dx = shapes_per_level.new_tensor(_CELL_DX).view(1, 1, -1)
        dy = shapes_per_level.new_tensor(_CELL_DY).view(1, 1, -1)
        ranges = shapes_per_level.new_tensor(self.regress_ranges).view(-1, 2)  # [L, 2]
        strides = shapes_per_level.new_tensor(self.strides)  # integer, as the cell indices
        # First flat row of each level (the flat predictions are level, image, position).
        level_starts = torch.cumsum(num_imgs * area_per_level, 0) - num_imgs * area_per_level
        level_starts = level_starts.view(1, num_levels, 1)
        widths = shapes_per_level[:, 1].view(1, num_levels, 1)
        heights = shapes_per_level[:, 0].view(1, num_levels, 1)

        labels, level_fits, cell_inds, cell_targets, cell_valid = [], [], [], [], []
        for img_id, gt_instances in enumerate(batch_gt_instances):
            num_gts = len(gt_instances)
            if num_gts == 0:
                continue
            labels.append(gt_instances.labels)
            gt_bboxes = gt_instances.bboxes[:, None].expand(num_gts, num_levels, 4)
            lvl_strides = strides[None, :, None].expand(num_gts, num_levels, 2)
            centers = (gt_bboxes[..., [0, 1]] + gt_bboxes[..., [2, 3]]) / 2
            center_cells = (centers / lvl_strides).long()  # [G, L, 2] (x, y) cell
            center_points = center_cells * lvl_strides + lvl_strides // 2
            targets = bbox2distance(center_points, gt_bboxes)  # [G, L, 4]

            box_wh = targets[..., :2] + targets[..., 2:]
            half_diag = (box_wh**2).sum(dim=2)**0.5 / 2
            fits = (half_diag >= ranges[None, :, 0]) & (half_diag <= ranges[None, :, 1])
            level_fits.append(fits & (targets.min(dim=2)[0] >= 0))

            cell_x = center_cells[..., 0:1] + dx  # [G, L, 9]
            cell_y = center_cells[..., 1:2] + dy
            cell_inds.append(level_starts + img_id * area_per_level.view(1, -1, 1) +
                             cell_y * widths + cell_x)
            on_map = (cell_y < heights) & (cell_y >= 0) & (cell_x < widths) & (cell_x >= 0)

            # Distances from each neighbouring cell's point, in strides.
            targets = targets / lvl_strides.repeat(1, 1, 2)
            cell_target = targets[..., None, :].expand(num_gts, num_levels, 9, 4).clone()
            cell_target[..., 0] += dx
            cell_target[..., 1] += dy
            cell_target[..., 2] -= dx
            cell_target[..., 3] -= dy
            cell_targets.append(cell_target)
            cell_valid.append(on_map & (cell_target.min(dim=3)[0] >= 0))

        if labels:
            return (torch.cat(labels), torch.cat(level_fits), torch.cat(cell_inds).long(),
                    torch.cat(cell_targets), torch.cat(cell_valid))
        return (shapes_per_level.new_zeros(0), shapes_per_level.new_zeros(
            (0, num_levels)).bool(), shapes_per_level.new_zeros((0, num_levels, 9)),
                shapes_per_level.new_zeros((0, num_levels, 9, 4)).float(),
                shapes_per_level.new_zeros((0, num_levels, 9)).bool())
