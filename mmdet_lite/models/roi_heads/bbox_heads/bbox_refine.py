"""Box refinement between the stages of a multi-stage RoI head (Cascade R-CNN style).

``refine_bboxes`` turns one stage's sampled RoIs and predictions into the next stage's
proposals; ``regress_by_class`` decodes each RoI with the deltas of its class.
"""
from typing import List, Optional

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.utils import InstanceList


class BBoxHeadArgumentError(ValueError, AssertionError):
    """A box head argument or input that mmdetection asserts on."""


class BBoxRefineMixin:
    """``refine_bboxes`` / ``regress_by_class`` of :class:`BBoxHead`.

    Expects the host to have ``num_classes``, ``reg_class_agnostic``, ``reg_dim``,
    ``bbox_coder``, ``custom_activation`` and ``loss_cls``.
    """

    def refine_bboxes(self, sampling_results: List, bbox_results: dict,
                      batch_img_metas: List[dict]) -> Optional[InstanceList]:
        """Regress each sampled RoI by its class, for the next stage of a cascade.

        The class of a RoI is its target label, or for a background RoI the best
        foreground class of ``cls_score``. RoIs that are ground-truth boxes added as
        proposals (``pos_is_gt``) are dropped.

        Args:
            sampling_results (list[SamplingResult | InstanceData]): Per image, with
                ``pos_is_gt`` [P_i] (1 for a GT box added as a proposal).
            bbox_results (dict): ``rois`` [K, 5], ``cls_score`` [K, num_classes (+ 1)],
                ``bbox_pred`` [K, num_classes * 4] and ``bbox_targets`` (whose first item is
                ``labels`` [K]).
            batch_img_metas (list[dict]): Image metas (``img_shape`` for clipping).

        Returns:
            list[InstanceData] | None: Per image the refined ``bboxes`` [K_i - G_i, 4];
            None when there are no RoIs at all.
        """
        pos_is_gts = [res.pos_is_gt for res in sampling_results]
        labels = bbox_results['bbox_targets'][0]
        cls_scores = bbox_results['cls_score']
        rois = bbox_results['rois']
        bbox_preds = bbox_results['bbox_pred']
        if self.custom_activation:
            cls_scores = self.loss_cls.get_activation(cls_scores)
        if cls_scores.numel() == 0:
            return None
        if cls_scores.shape[-1] == self.num_classes + 1:
            cls_scores = cls_scores[:, :-1]  # drop the background column
        elif cls_scores.shape[-1] != self.num_classes:
            raise ValueError(f'The last dim of cls_scores should be num_classes '
                             f'({self.num_classes}) or num_classes + 1, got '
                             f'{cls_scores.shape[-1]}')
        labels = torch.where(labels == self.num_classes, cls_scores.argmax(1), labels)
        num_img_ids = rois[:, 0].long().unique().numel()
        if num_img_ids > len(batch_img_metas):
            raise BBoxHeadArgumentError(f'rois hold {num_img_ids} image ids but '
                                        f'batch_img_metas has {len(batch_img_metas)} images')
        results_list = []
        for i, img_meta in enumerate(batch_img_metas):
            inds = torch.nonzero(rois[:, 0] == i, as_tuple=False).squeeze(1)
            bboxes = self.regress_by_class(rois[inds, 1:], labels[inds], bbox_preds[inds],
                                           img_meta)
            # Positives come first within an image, so pos_is_gt covers the first rows.
            pos_is_gt = pos_is_gts[i]
            keep = pos_is_gt.new_ones(inds.numel())
            keep[:len(pos_is_gt)] = 1 - pos_is_gt
            results_list.append(InstanceData(bboxes=bboxes[keep.bool()]))
        return results_list

    def regress_by_class(self, priors: Tensor, label: Tensor, bbox_pred: Tensor,
                         img_meta: dict) -> Tensor:
        """Decode, for each prior, the deltas of its class.

        Args:
            priors (Tensor): [N, 4] boxes (proposals or the previous stage's boxes).
            label (Tensor): [N] class of each prior (unused when class-agnostic).
            bbox_pred (Tensor): [N, num_classes * 4], or [N, 4] when class-agnostic.
            img_meta (dict): Image meta; boxes are clipped to ``img_shape``.

        Returns:
            Tensor: [N, 4] regressed boxes (a box object if the coder returns one).
        """
        reg_dim = self.reg_dim
        if not self.reg_class_agnostic:
            cols = label[:, None] * reg_dim + torch.arange(reg_dim, device=label.device)
            bbox_pred = torch.gather(bbox_pred, 1, cols)  # [N, reg_dim]
        if bbox_pred.size(1) != reg_dim:
            raise BBoxHeadArgumentError(f'bbox_pred must have {reg_dim} columns per box, '
                                        f'got {bbox_pred.size(1)}')
        return self.bbox_coder.decode(priors, bbox_pred, max_shape=img_meta['img_shape'])
