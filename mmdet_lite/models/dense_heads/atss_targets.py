"""ATSS's training targets: which anchors are positives and what they regress.

:class:`ATSSTargetsMixin` holds the target computation of :class:`~.atss_head.ATSSHead`
(mmdetection defines these methods on the head itself; they live here so that the head file
reads as layers, forward and losses). Per image, the anchors inside the image are assigned
with ``train_cfg.assigner`` (ATSSAssigner: an adaptive IoU threshold among the anchors of
each level nearest to the gt, which is why the assigner also gets the number of inside
anchors per level), sampled (PseudoSampler), and turned into labels, label weights, box
targets and box weights; the per-image targets are then regrouped per level.

Users: ATSSHead and its subclasses (VFNetHead's ATSS targets, TOODHead's first epochs), and
GFLHead, which takes these functions without deriving from ATSSHead (as mmdetection's keeps a
copy of them).
"""
from typing import List, Optional

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import InstanceList, OptInstanceList
from ..task_modules.prior_generators import anchor_inside_flags
from ..task_modules.samplers import SamplingResult
from ..utils import images_to_levels, unmap


class ATSSHeadError(ValueError, AssertionError):
    """Inputs or targets an ATSS-style head cannot use (mmdetection asserts on them)."""


class ATSSTargetsMixin:
    """``get_targets`` and its per-image helpers for ATSS-style anchor heads.

    Expects the host head to have ``train_cfg`` (``assigner``, ``allowed_border``,
    ``pos_weight``), ``assigner``, ``sampler``, ``num_classes``, ``reg_decoded_bbox`` and
    ``bbox_coder``. Put it before the anchor head in the bases
    (``class ATSSHead(ATSSTargetsMixin, AnchorHead)``) so that its methods replace
    AnchorHead's.
    """

    def get_targets(self,
                    anchor_list: List[List[Tensor]],
                    valid_flag_list: List[List[Tensor]],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None,
                    unmap_outputs: bool = True) -> tuple:
        """Targets of every anchor of every image, regrouped per level.

        As :meth:`AnchorHead.get_targets`, except that the assigner also receives the number
        of anchors of each level inside the image, and that the anchors come back too,
        regrouped per level like the targets. GFLHead uses this method as well.

        Args:
            anchor_list (list[list[Tensor]]): Per image, per level anchors [N_l, 4].
            valid_flag_list (list[list[Tensor]]): Per image, per level bool [N_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta of each image (``img_shape``).
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.
            unmap_outputs (bool): Return targets for all anchors (else only for the anchors
                inside the image). Defaults to True.

        Returns:
            tuple: per level ``anchors`` [B, N_l, 4], ``labels`` [B, N_l] (``num_classes`` =
            background), ``label_weights`` [B, N_l], ``bbox_targets`` [B, N_l, 4] and
            ``bbox_weights`` [B, N_l, 4], then ``avg_factor``: the number of positives
            summed over the images (PseudoSampler).
        """
        if self.train_cfg is None:
            raise ValueError(f'{type(self).__name__} was built without train_cfg; the loss '
                             "needs train_cfg with an assigner, e.g. dict(type='ATSSAssigner', "
                             'topk=9)')
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == len(batch_gt_instances) == num_imgs:
            raise ATSSHeadError(
                f'expected one entry per image ({num_imgs}) in anchor_list '
                f'({len(anchor_list)}), valid_flag_list ({len(valid_flag_list)}) and '
                f'batch_gt_instances ({len(batch_gt_instances)})')
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs

        per_image = [
            self._get_targets_single(
                torch.cat(anchor_list[i]), torch.cat(valid_flag_list[i]), num_level_anchors,
                batch_gt_instances[i], batch_img_metas[i], batch_gt_instances_ignore[i],
                unmap_outputs=unmap_outputs) for i in range(num_imgs)
        ]
        # Per image: anchors, labels, label_weights, bbox_targets, bbox_weights, then
        # pos_inds, neg_inds and the sampling result.
        *targets, _, _, sampling_results = zip(*per_image)
        avg_factor = sum(result.avg_factor for result in sampling_results)
        return tuple(images_to_levels(list(target), num_level_anchors)
                     for target in targets) + (avg_factor, )

    def _get_targets_single(self,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            num_level_anchors: List[int],
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None,
                            unmap_outputs: bool = True) -> tuple:
        """Targets of every anchor of one image.

        Args:
            flat_anchors (Tensor): Anchors of all levels [N, 4].
            valid_flags (Tensor): Bool [N].
            num_level_anchors (list[int]): Anchors of each level (sums to N).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            img_meta (dict): Meta of the image (``img_shape``).
            gt_instances_ignore (InstanceData, optional): ``bboxes`` [K, 4] to ignore.
            unmap_outputs (bool): Scatter the targets back to all N anchors.

        Returns:
            tuple: ``anchors`` [N, 4], ``labels`` [N], ``label_weights`` [N],
            ``bbox_targets`` [N, 4], ``bbox_weights`` [N, 4], ``pos_inds`` and ``neg_inds``
            (indices among the inside anchors) and the SamplingResult.
        """
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'][:2],
                                           self.train_cfg.get('allowed_border', -1))
        if not inside_flags.any():
            raise ValueError('No anchor lies inside the image boundary; check the image size '
                             'and anchor sizes, or set train_cfg.allowed_border=-1')
        anchors = flat_anchors[inside_flags]  # [N_in, 4]
        num_level_anchors_inside = self.get_num_level_anchors_inside(num_level_anchors,
                                                                     inside_flags)
        pred_instances = InstanceData(priors=anchors)
        assign_result = self.assigner.assign(pred_instances, num_level_anchors_inside,
                                             gt_instances, gt_instances_ignore)
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        num_valid = anchors.size(0)
        labels = anchors.new_full((num_valid, ), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros(num_valid)
        bbox_targets = torch.zeros_like(anchors)
        bbox_weights = torch.zeros_like(anchors)
        pos_inds = sampling_result.pos_inds
        neg_inds = sampling_result.neg_inds
        if len(pos_inds) > 0:
            bbox_targets[pos_inds] = self._pos_bbox_targets(sampling_result).to(
                bbox_targets.dtype)
            bbox_weights[pos_inds] = 1.0
            labels[pos_inds] = sampling_result.pos_gt_labels.long()
            pos_weight = self.train_cfg.get('pos_weight', -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0

        if unmap_outputs:
            num_total = flat_anchors.size(0)
            anchors = unmap(anchors, num_total, inside_flags)
            labels = unmap(labels, num_total, inside_flags, fill=self.num_classes)
            label_weights = unmap(label_weights, num_total, inside_flags)
            bbox_targets = unmap(bbox_targets, num_total, inside_flags)
            bbox_weights = unmap(bbox_weights, num_total, inside_flags)
        return (anchors, labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds,
                sampling_result)

    def _pos_bbox_targets(self, sampling_result: SamplingResult) -> Tensor:
        """Regression targets [P, 4] of the positives: the gt boxes themselves with
        ``reg_decoded_bbox``, else their deltas from the anchors (GFLHead: always the boxes)."""
        if self.reg_decoded_bbox:
            return get_box_tensor(sampling_result.pos_gt_bboxes)
        return self.bbox_coder.encode(sampling_result.pos_priors, sampling_result.pos_gt_bboxes)

    def get_num_level_anchors_inside(self, num_level_anchors: List[int],
                                     inside_flags: Tensor) -> List[int]:
        """Number of anchors of each level that lie inside the image."""
        return [int(flags.sum()) for flags in torch.split(inside_flags, num_level_anchors)]
