"""YOLOv3's training targets: the responsible grid cells and one target row per prior.

:class:`YOLOV3TargetsMixin` holds the target computation of :class:`~.yolo_head.YOLOV3Head`
(mmdetection defines these methods on the head; they live here so that the head file reads as
layers, forward, prediction and losses):

- ``responsible_flags``: on every level, the anchors of the grid cell holding a gt's centre;
- ``get_targets``: per image, ``GridAssigner`` assigns those priors, and each prior gets a
  target row ``[tx, ty, tw, th, objectness, class targets]`` and a negative flag, regrouped
  per level.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import InstanceList
from ..utils import images_to_levels


class YOLOV3HeadArgumentError(ValueError, AssertionError):
    """A YOLOV3Head argument or input is invalid (an AssertionError in mmdetection)."""


class YOLOV3TargetsMixin:
    """``responsible_flags`` and ``get_targets`` of YOLOv3.

    Expects the host head to have ``num_levels``, ``num_classes``, ``num_attrib``,
    ``featmap_strides``, ``one_hot_smoother``, ``prior_generator``, ``bbox_coder``,
    ``assigner`` and ``sampler``. Put it before the dense head in the bases
    (``class YOLOV3Head(YOLOV3TargetsMixin, BaseDenseHead)``).
    """

    def responsible_flags(self, featmap_sizes: List[Tuple[int, int]], gt_bboxes: Tensor,
                          device: torch.device) -> List[Tensor]:
        """Flag, on every level, the anchors of the grid cells holding a gt centre.

        Args:
            featmap_sizes (list[tuple]): (H_l, W_l) of each level.
            gt_bboxes (Tensor): Gt boxes [G, 4] (x1, y1, x2, y2) in input pixels.
            device (torch.device | str): Device of the flags.

        Returns:
            list[Tensor]: Per level uint8 [H_l * W_l * A], 1 on all A anchors of a
            responsible cell.
        """
        if len(featmap_sizes) != self.num_levels:
            raise YOLOV3HeadArgumentError(f'expected {self.num_levels} feature map sizes, got '
                                          f'{len(featmap_sizes)}')
        gt_cx = ((gt_bboxes[:, 0] + gt_bboxes[:, 2]) * 0.5).to(device)
        gt_cy = ((gt_bboxes[:, 1] + gt_bboxes[:, 3]) * 0.5).to(device)
        multi_level_flags = []
        for level, (feat_h, feat_w) in enumerate(featmap_sizes):
            stride_w, stride_h = self.prior_generator.strides[level]
            grid_x = torch.floor(gt_cx / stride_w).long()
            grid_y = torch.floor(gt_cy / stride_h).long()
            responsible_cells = torch.zeros(feat_h * feat_w, dtype=torch.uint8, device=device)
            responsible_cells[grid_y * feat_w + grid_x] = 1  # row-major cell index
            num_priors = self.prior_generator.num_base_priors[level]
            # Anchors are ordered (cell, anchor): repeat each cell's flag for its anchors.
            multi_level_flags.append(responsible_cells.repeat_interleave(num_priors))
        return multi_level_flags

    def get_targets(self, anchor_list: List[List[Tensor]],
                    responsible_flag_list: List[List[Tensor]],
                    batch_gt_instances: InstanceList) -> Tuple[List[Tensor], List[Tensor]]:
        """Target and negative maps of every image, regrouped per level.

        Args:
            anchor_list (list[list[Tensor]]): Per image, per level anchors [N_l, 4].
            responsible_flag_list (list[list[Tensor]]): Per image, per level uint8 [N_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.

        Returns:
            tuple: ``target_maps_list``, per level [B, N_l, 5 + C], and ``neg_maps_list``,
            per level uint8 [B, N_l].
        """
        num_imgs = len(anchor_list)
        if not len(responsible_flag_list) == len(batch_gt_instances) == num_imgs:
            raise YOLOV3HeadArgumentError(
                f'expected one entry per image ({num_imgs}) in responsible_flag_list '
                f'({len(responsible_flag_list)}) and batch_gt_instances '
                f'({len(batch_gt_instances)})')
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
        all_target_maps, all_neg_maps = [], []
        for anchors, flags, gt_instances in zip(anchor_list, responsible_flag_list,
                                                batch_gt_instances):
            target_map, neg_map = self._get_targets_single(anchors, flags, gt_instances)
            all_target_maps.append(target_map)
            all_neg_maps.append(neg_map)
        return (images_to_levels(all_target_maps, num_level_anchors),
                images_to_levels(all_neg_maps, num_level_anchors))

    def _get_targets_single(self, anchors: List[Tensor], responsible_flags: List[Tensor],
                            gt_instances: InstanceData) -> Tuple[Tensor, Tensor]:
        """Targets of every prior of one image (all levels concatenated).

        Args:
            anchors (list[Tensor]): Per level anchors [N_l, 4].
            responsible_flags (list[Tensor]): Per level uint8 [N_l].
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].

        Returns:
            tuple:

            - target_map (Tensor): [N, 5 + C]; on positives ``[tx, ty, tw, th, 1, class
              targets]``, zeros elsewhere.
            - neg_map (Tensor): uint8 [N], 1 on negatives.
        """
        gt_bboxes = get_box_tensor(gt_instances.bboxes)
        gt_labels = gt_instances.labels
        anchor_strides = torch.cat([
            torch.tensor(stride, device=gt_bboxes.device).repeat(len(level_anchors))
            for stride, level_anchors in zip(self.featmap_strides, anchors)
        ])  # [N]
        concat_anchors = torch.cat(anchors)  # [N, 4]
        concat_flags = torch.cat(responsible_flags)  # [N]
        pred_instances = InstanceData(priors=concat_anchors, responsible_flags=concat_flags)
        assign_result = self.assigner.assign(pred_instances, gt_instances)
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        pos_inds = sampling_result.pos_inds
        target_map = concat_anchors.new_zeros(concat_anchors.size(0), self.num_attrib)
        target_map[pos_inds, :4] = self.bbox_coder.encode(
            sampling_result.pos_priors, sampling_result.pos_gt_bboxes, anchor_strides[pos_inds])
        target_map[pos_inds, 4] = 1
        class_targets = F.one_hot(gt_labels, num_classes=self.num_classes).float()  # [G, C]
        if self.one_hot_smoother != 0:
            class_targets = class_targets * (1 - self.one_hot_smoother) + \
                self.one_hot_smoother / self.num_classes
        target_map[pos_inds, 5:] = class_targets[sampling_result.pos_assigned_gt_inds]

        neg_map = concat_anchors.new_zeros(concat_anchors.size(0), dtype=torch.uint8)
        neg_map[sampling_result.neg_inds] = 1
        return target_map, neg_map
