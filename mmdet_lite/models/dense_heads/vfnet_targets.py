"""VarifocalNet's training targets: ATSS's or FCOS's, expressed on VFNet's points.

:class:`VFNetTargetsMixin` holds the target computation of :class:`~.vfnet_head.VFNetHead`
(mmdetection defines these methods on the head; they live here so that the head file reads as
layers, forward and losses). VFNet predicts at points, but by default (``use_atss``) picks its
positives with ATSS on one square anchor per point: the anchors' targets come from
:class:`~.atss_targets.ATSSTargetsMixin` and their gt boxes are then turned into (left, top,
right, bottom) distances from the points. Without ATSS the targets are FCOS's
(:class:`~.fcos_targets.FCOSTargetsMixin`), which give distances directly.
"""
from typing import List, Tuple

import torch
from torch import Tensor

from mmdet_lite.utils import InstanceList, OptInstanceList
from .anchor_free_head import AnchorFreeHeadArgumentError
from .atss_targets import ATSSTargetsMixin
from .fcos_targets import FCOSTargetsMixin


class VFNetTargetsMixin:
    """``get_targets`` of VFNet, by ``use_atss`` from ATSS's or FCOS's target code.

    Expects the host head (a subclass of both ATSSHead and FCOSHead) to have ``use_atss``,
    ``atss_prior_generator`` (the anchors), ``fcos_prior_generator`` (the points) and
    ``bbox_coder``. Put it first in the bases (``class VFNetHead(VFNetTargetsMixin, ATSSHead,
    FCOSHead)``) so that its methods replace those of both heads.
    """

    def get_targets(self,
                    cls_scores: List[Tensor],
                    mlvl_points: List[Tensor],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None) -> tuple:
        """Targets of every point, from ATSS (``use_atss``) or FCOS's rules.

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l] (for the sizes).
            mlvl_points (list[Tensor]): Per level points [N_l, 2].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            tuple: ``labels`` (per level [B * N_l]), ``label_weights`` ([sum B * N_l], or None
            with FCOS), ``bbox_targets`` (per level [B * N_l, 4], (l, t, r, b) in pixels) and
            ``bbox_weights`` (or None with FCOS).
        """
        if self.use_atss:
            return self.get_atss_targets(cls_scores, mlvl_points, batch_gt_instances,
                                         batch_img_metas, batch_gt_instances_ignore)
        # FCOS's get_targets reads norm_on_bbox, an argument VFNetHead does not take.
        self.norm_on_bbox = False
        return self.get_fcos_targets(mlvl_points, batch_gt_instances)

    def _get_targets_single(self, *args, **kwargs) -> tuple:
        """ATSS's or FCOS's per-image targets, by ``use_atss``."""
        if self.use_atss:
            return ATSSTargetsMixin._get_targets_single(self, *args, **kwargs)
        return FCOSTargetsMixin._get_targets_single(self, *args, **kwargs)

    def get_fcos_targets(self, points: List[Tensor], batch_gt_instances: InstanceList) -> tuple:
        """FCOS targets: per level ``labels`` [B * N_l] and ``bbox_targets`` [B * N_l, 4],
        with None for the label and box weights."""
        labels, bbox_targets = FCOSTargetsMixin.get_targets(self, points, batch_gt_instances)
        return labels, None, bbox_targets, None

    def get_anchors(self, featmap_sizes: List[Tuple[int, int]], batch_img_metas: List[dict],
                    device: torch.device = 'cuda') -> tuple:
        """ATSS anchors of every image and their valid flags (inside ``pad_shape``).

        Returns:
            tuple: ``anchor_list`` and ``valid_flag_list``, per image, per level
            [N_l, 4] and bool [N_l].
        """
        mlvl_anchors = self.atss_prior_generator.grid_priors(featmap_sizes, device=device)
        anchor_list = [mlvl_anchors for _ in batch_img_metas]
        valid_flag_list = [
            self.atss_prior_generator.valid_flags(featmap_sizes, img_meta['pad_shape'],
                                                  device=device)
            for img_meta in batch_img_metas]
        return anchor_list, valid_flag_list

    def get_atss_targets(self,
                         cls_scores: List[Tensor],
                         mlvl_points: List[Tensor],
                         batch_gt_instances: InstanceList,
                         batch_img_metas: List[dict],
                         batch_gt_instances_ignore: OptInstanceList = None) -> tuple:
        """ATSS targets of the anchors, turned into (l, t, r, b) targets of their points.

        Returns:
            tuple: ``labels`` (per level [B * N_l]), ``label_weights`` [sum B * N_l],
            ``bbox_targets`` (per level [B * N_l, 4]) and ``bbox_weights``
            [sum B * N_l * 4].
        """
        featmap_sizes = [score.size()[-2:] for score in cls_scores]
        if not (len(featmap_sizes) == self.atss_prior_generator.num_levels ==
                self.fcos_prior_generator.num_levels):
            raise AnchorFreeHeadArgumentError(
                f'expected {self.atss_prior_generator.num_levels} levels of predictions, got '
                f'{len(featmap_sizes)}')
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=cls_scores[0].device)
        (_, labels_list, label_weights_list, bbox_targets_list, bbox_weights_list,
         _) = ATSSTargetsMixin.get_targets(self, anchor_list, valid_flag_list,
                                           batch_gt_instances, batch_img_metas,
                                           batch_gt_instances_ignore, unmap_outputs=True)
        bbox_targets_list = self.transform_bbox_targets(
            [targets.reshape(-1, 4) for targets in bbox_targets_list], mlvl_points,
            len(batch_img_metas))
        labels_list = [labels.reshape(-1) for labels in labels_list]
        label_weights = torch.cat([weights.reshape(-1) for weights in label_weights_list])
        bbox_weights = torch.cat([weights.reshape(-1) for weights in bbox_weights_list])
        return labels_list, label_weights, bbox_targets_list, bbox_weights

    def transform_bbox_targets(self, decoded_bboxes: List[Tensor], mlvl_points: List[Tensor],
                               num_imgs: int) -> List[Tensor]:
        """Boxes (x1, y1, x2, y2) [B * N_l, 4] per level -> (l, t, r, b) from the points."""
        if len(decoded_bboxes) != len(mlvl_points):
            raise AnchorFreeHeadArgumentError(
                f'{len(decoded_bboxes)} levels of boxes for {len(mlvl_points)} of points')
        return [self.bbox_coder.encode(points.repeat(num_imgs, 1), bboxes)
                for bboxes, points in zip(decoded_bboxes, mlvl_points)]
