"""TOOD's training targets (Task Alignment Learning): ATSS's at first, then task-aligned.

:class:`TOODTargetsMixin` holds the target computation of :class:`~.tood_head.TOODHead`
(mmdetection defines these methods on the head; they live here so that the head file reads as
layers, forward, losses and prediction). The stage is chosen by the epoch, read from
mmengine's ``MessageHub``:

- before ``train_cfg.initial_epoch``: ATSS's targets (:class:`~.atss_targets.ATSSTargetsMixin`
  with ``initial_assigner``), the "alignment metric" of a positive being its box weight, 1;
- afterwards: ``TaskAlignedAssigner`` picks, for each gt, the priors of highest
  ``score ** alpha * IoU ** beta`` (scores and boxes of the current predictions), and each
  positive's metric is rescaled per gt so that the gt's best-aligned positive aims at the
  gt's best IoU.
"""
from typing import List, Optional

import torch
from mmengine.logging import MessageHub
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import InstanceList, OptInstanceList
from ..task_modules.prior_generators import anchor_inside_flags
from ..utils import images_to_levels, unmap
from .atss_targets import ATSSHeadError, ATSSTargetsMixin


class TOODTargetsMixin:
    """``get_targets`` of TOOD: ATSS's in the initial epochs, task-aligned afterwards.

    Expects the host head (an ATSSHead) to have ``train_cfg``, ``initial_epoch``,
    ``assigner`` (the initial ATSS assigner), ``alignment_assigner``, ``alpha``, ``beta``,
    ``sampler`` and ``num_classes``; sets ``self.epoch``, which the losses read. Put it before
    the head's base in the bases (``class TOODHead(TOODTargetsMixin, ATSSHead)``).
    """

    def get_targets(self,
                    cls_scores: Tensor,
                    bbox_preds: Tensor,
                    anchor_list: List[List[Tensor]],
                    valid_flag_list: List[List[Tensor]],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None,
                    unmap_outputs: bool = True) -> tuple:
        """Targets of every anchor of every image, regrouped per level.

        Reads the current epoch from the MessageHub into ``self.epoch``: before
        ``initial_epoch`` ATSS assigns (targets as ATSSHead; the "alignment metric" is 1 for
        positives), afterwards the task-aligned assigner does.

        Args:
            cls_scores (Tensor): [B, N, K] probabilities of all anchors.
            bbox_preds (Tensor): [B, N, 4] predicted boxes in pixels.
            anchor_list, valid_flag_list (list[list[Tensor]]): Per image, per level anchors
                [N_l, 4] and their bool flags [N_l].
            batch_gt_instances, batch_img_metas, batch_gt_instances_ignore: As in
                :meth:`loss_by_feat`.
            unmap_outputs (bool): Return targets for all anchors. Defaults to True.

        Returns:
            tuple: per level ``anchors`` [B, N_l, 4], ``labels`` [B, N_l],
            ``label_weights`` [B, N_l], ``bbox_targets`` [B, N_l, 4] and normalised
            ``alignment_metrics`` [B, N_l].
        """
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == num_imgs:
            raise ATSSHeadError(f'expected one entry per image ({num_imgs}) in anchor_list '
                                f'({len(anchor_list)}) and valid_flag_list '
                                f'({len(valid_flag_list)})')
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
        flat_anchors = [torch.cat(anchors) for anchors in anchor_list]
        flat_flags = [torch.cat(flags) for flags in valid_flag_list]
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs

        self.epoch = MessageHub.get_current_instance().get_info('epoch')
        if self.epoch is None:
            raise RuntimeError("TOODHead reads the current epoch from the MessageHub's "
                               "'epoch' info, which mmengine's RuntimeInfoHook sets during "
                               'training; outside a Runner, set it with MessageHub.'
                               "get_current_instance().update_info('epoch', epoch)")
        per_image = []
        for i in range(num_imgs):
            if self.epoch < self.initial_epoch:
                # ATSS's per-image targets, by name: this class's own takes other inputs.
                anchors, labels, label_weights, bbox_targets, bbox_weights, _, _, _ = \
                    ATSSTargetsMixin._get_targets_single(
                        self, flat_anchors[i], flat_flags[i], num_level_anchors,
                        batch_gt_instances[i], batch_img_metas[i],
                        batch_gt_instances_ignore[i], unmap_outputs=unmap_outputs)
                targets = (anchors, labels, label_weights, bbox_targets, bbox_weights[:, 0])
            else:
                targets = self._get_targets_single(
                    cls_scores[i], bbox_preds[i], flat_anchors[i], flat_flags[i],
                    batch_gt_instances[i], batch_img_metas[i], batch_gt_instances_ignore[i],
                    unmap_outputs=unmap_outputs)
            per_image.append(targets)
        return tuple(images_to_levels(list(target), num_level_anchors)
                     for target in zip(*per_image))

    def _get_targets_single(self,
                            cls_scores: Tensor,
                            bbox_preds: Tensor,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None,
                            unmap_outputs: bool = True) -> tuple:
        """Task-aligned targets of every anchor of one image.

        Each positive's metric is rescaled per gt: ``t / max(t of the gt's positives) *
        max(IoU of the gt's positives)``, so the best-aligned positive of a gt aims at that
        gt's best IoU rather than at 1.

        Args:
            cls_scores (Tensor): [N, K] probabilities.
            bbox_preds (Tensor): [N, 4] predicted boxes in pixels.
            flat_anchors (Tensor): Anchors of all levels [N, 4], ``valid_flags`` bool [N].
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            img_meta (dict): Meta of the image (``img_shape``).
            gt_instances_ignore (InstanceData, optional): Boxes to ignore.
            unmap_outputs (bool): Scatter the targets back to all N anchors.

        Returns:
            tuple: ``anchors`` [N, 4], ``labels`` [N], ``label_weights`` [N],
            ``bbox_targets`` [N, 4] (gt boxes in pixels) and ``norm_alignment_metrics`` [N].
        """
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'][:2],
                                           self.train_cfg['allowed_border'])
        if not inside_flags.any():
            raise ValueError('No anchor lies inside the image boundary; check the image size '
                             'and anchor sizes, or set train_cfg.allowed_border=-1')
        anchors = flat_anchors[inside_flags]  # [N_in, 4]
        pred_instances = InstanceData(priors=anchors, scores=cls_scores[inside_flags],
                                      bboxes=bbox_preds[inside_flags])
        assign_result = self.alignment_assigner.assign(pred_instances, gt_instances,
                                                       gt_instances_ignore, self.alpha,
                                                       self.beta)
        assign_ious = assign_result.max_overlaps
        assign_metrics = assign_result.assign_metrics
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        num_valid = anchors.size(0)
        bbox_targets = torch.zeros_like(anchors)
        labels = anchors.new_full((num_valid, ), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros(num_valid, dtype=torch.float)
        norm_alignment_metrics = anchors.new_zeros(num_valid, dtype=torch.float)
        pos_inds = sampling_result.pos_inds
        neg_inds = sampling_result.neg_inds
        if len(pos_inds) > 0:
            bbox_targets[pos_inds] = get_box_tensor(sampling_result.pos_gt_bboxes).to(
                bbox_targets.dtype)
            labels[pos_inds] = sampling_result.pos_gt_labels
            pos_weight = self.train_cfg['pos_weight']
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0

        for gt_ind in torch.unique(sampling_result.pos_assigned_gt_inds):
            gt_pos_inds = pos_inds[sampling_result.pos_assigned_gt_inds == gt_ind]
            metrics = assign_metrics[gt_pos_inds]
            # 10e-8 (= 1e-7) as mmdetection.
            norm_alignment_metrics[gt_pos_inds] = (metrics / (metrics.max() + 10e-8) *
                                                   assign_ious[gt_pos_inds].max())

        if unmap_outputs:
            num_total = flat_anchors.size(0)
            anchors = unmap(anchors, num_total, inside_flags)
            labels = unmap(labels, num_total, inside_flags, fill=self.num_classes)
            label_weights = unmap(label_weights, num_total, inside_flags)
            bbox_targets = unmap(bbox_targets, num_total, inside_flags)
            norm_alignment_metrics = unmap(norm_alignment_metrics, num_total, inside_flags)
        return anchors, labels, label_weights, bbox_targets, norm_alignment_metrics
