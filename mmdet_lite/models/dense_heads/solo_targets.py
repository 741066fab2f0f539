"""SOLO's training targets: which grid cells learn which object, and their mask targets.

:class:`SOLOTargetsMixin` holds the target computation of :class:`~.solo_head.SOLOHead`
(mmdetection defines these methods on the head; they live here so that the head file reads as
layers, forward, loss and prediction). Per level, the gts whose ``sqrt(box area)`` falls in
the level's scale range are assigned to the grid cells of their centre region (around the
mask centroid, :func:`~mmdet_lite.models.layers.solo_grid.center_region_cells`); each such
cell takes the gt's label and its mask shrunk to the level's mask resolution. The decoupled
heads and SOLOv2 reuse ``_get_targets_single``.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from ..layers.solo_grid import CellBox, center_region_cells, gt_masks_as_tensor, rescale_masks
from ..utils import center_of_mass


class SOLOTargetsMixin:
    """``_get_targets_single`` of the SOLO family heads.

    Expects the host head to have ``num_classes``, ``scale_ranges``, ``strides``,
    ``num_grids`` and ``pos_scale``. Put it before the mask head in the bases
    (``class SOLOHead(SOLOTargetsMixin, BaseMaskHead)``).
    """

    def _level_positives(self, gt_instances: InstanceData, gt_masks: Tensor,
                         scale_range: Tuple[float, float], num_grid: int,
                         upsampled_size: Tuple[int, int]) -> List[Tuple[int, Tensor, CellBox]]:
        """The gts a level learns and the grid cells of each.

        A gt belongs to the level when ``sqrt(w * h)`` of its box lies in ``scale_range``
        (inclusive) and its mask is not empty; its cells come from
        :func:`center_region_cells` around the mask centroid, with a centre region of
        ``pos_scale`` times half the box.

        Returns:
            list[tuple]: (gt index, label, (top, down, left, right)) in gt order.
        """
        gt_bboxes = gt_instances.bboxes
        gt_areas = torch.sqrt((gt_bboxes[:, 2] - gt_bboxes[:, 0]) *
                              (gt_bboxes[:, 3] - gt_bboxes[:, 1]))
        lower, upper = scale_range
        positives = []
        for gt_idx in ((gt_areas >= lower) & (gt_areas <= upper)).nonzero().flatten().tolist():
            gt_mask = gt_masks[gt_idx]
            if gt_mask.sum() == 0:
                continue
            box = gt_bboxes[gt_idx]
            half_w = 0.5 * (box[2] - box[0]) * self.pos_scale
            half_h = 0.5 * (box[3] - box[1]) * self.pos_scale
            center_h, center_w = center_of_mass(gt_mask)
            cells = center_region_cells(center_h, center_w, half_h, half_w, upsampled_size,
                                        num_grid)
            positives.append((gt_idx, gt_instances.labels[gt_idx], cells))
        return positives

    def _get_targets_single(self, gt_instances: InstanceData,
                            featmap_sizes: Optional[list] = None) -> tuple:
        """Targets of one image.

        Every cell of a gt's centre region is positive, with the gt's label and its mask
        shrunk to the level's mask resolution (stride / 2); a later gt overwrites an earlier
        one in a shared cell.

        Args:
            gt_instances (InstanceData): ``bboxes`` [G, 4], ``labels`` [G], ``masks`` at the
                padded input size.
            featmap_sizes (list[torch.Size]): (h, w) of each level's mask predictions.

        Returns:
            tuple[list[Tensor]]: Per level: mask targets of the positive cells, uint8
            [P_l, h_l, w_l] in cell order; labels [S_l, S_l] (``num_classes`` =
            background); positive flags, bool [S_l**2].
        """
        device = gt_instances.labels.device
        gt_masks = gt_masks_as_tensor(gt_instances, device)  # [G, H, W]
        upsampled_size = (featmap_sizes[0][0] * 4, featmap_sizes[0][1] * 4)
        mlvl_pos_mask_targets, mlvl_labels, mlvl_pos_masks = [], [], []
        for scale_range, stride, featmap_size, num_grid in zip(
                self.scale_ranges, self.strides, featmap_sizes, self.num_grids):
            mask_target = torch.zeros([num_grid**2, featmap_size[0], featmap_size[1]],
                                      dtype=torch.uint8, device=device)
            labels = torch.full([num_grid, num_grid], self.num_classes, dtype=torch.int64,
                                device=device)
            pos_mask = torch.zeros([num_grid**2], dtype=torch.bool, device=device)
            output_stride = stride / 2  # the mask predictions are upsampled x2
            for gt_idx, label, (top, down, left, right) in self._level_positives(
                    gt_instances, gt_masks, scale_range, num_grid, upsampled_size):
                labels[top:down + 1, left:right + 1] = label
                small = rescale_masks(gt_masks[gt_idx:gt_idx + 1], 1. / output_stride)[0]
                rows = torch.arange(top, down + 1, device=device)
                cols = torch.arange(left, right + 1, device=device)
                cells = (rows[:, None] * num_grid + cols[None, :]).flatten()
                mask_target[cells, :small.shape[0], :small.shape[1]] = small
                pos_mask[cells] = True
            mlvl_pos_mask_targets.append(mask_target[pos_mask])
            mlvl_labels.append(labels)
            mlvl_pos_masks.append(pos_mask)
        return mlvl_pos_mask_targets, mlvl_labels, mlvl_pos_masks
