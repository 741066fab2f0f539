"""Mask Scoring R-CNN's RoI head: Mask R-CNN's head plus a mask IoU branch."""
from typing import List, Tuple

import torch
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import bbox2roi
from mmdet_lite.utils import ConfigType, InstanceList
from ..utils import empty_instances
from .base_roi_head import RoIHeadArgumentError
from .standard_roi_head import StandardRoIHead


@MODELS.register_module()
class MaskScoringRoIHead(StandardRoIHead):
    """StandardRoIHead with a ``MaskIoUHead`` that learns the quality of each mask.

    Training adds ``loss_mask_iou``: the IoU head sees the mask features and the mask
    logits of each positive's GT class and regresses the IoU of that (binarized) mask with
    the object's full GT mask. At test time each detection's score becomes
    ``class score * predicted mask IoU of its class`` (the raw regression output, not
    clamped), which ranks good masks above well-classified but badly segmented ones.

    Args:
        mask_iou_head (dict): e.g. ``MaskIoUHead`` with ``num_classes`` of the dataset.
        **kwargs: :class:`StandardRoIHead` arguments (with a mask head).
    """

    def __init__(self, mask_iou_head: ConfigType, **kwargs) -> None:
        if mask_iou_head is None:
            raise RoIHeadArgumentError('MaskScoringRoIHead needs mask_iou_head, e.g. '
                                       "dict(type='MaskIoUHead', num_classes=80)")
        super().__init__(**kwargs)
        self.mask_iou_head = MODELS.build(mask_iou_head)

    def forward(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
                batch_data_samples: SampleList = None) -> tuple:
        """Raw head outputs for all proposals ('tensor' mode; no post-processing).

        Returns:
            tuple: ``cls_score`` [K, C+1], ``bbox_pred`` [K, C*4] and with the mask branch
            the mask logits [min(K, 100), C, 28, 28] and mask IoUs [min(K, 100), C] of the
            first 100 RoIs, each taken at the RoI's best-scoring object class.
        """
        rois = bbox2roi([res.bboxes for res in rpn_results_list])
        outs = ()
        if self.with_bbox:
            bbox_results = self._bbox_forward(x, rois)
            outs = outs + (bbox_results['cls_score'], bbox_results['bbox_pred'])
        if self.with_mask:
            mask_results = self._mask_forward(x, rois[:100])
            mask_preds = mask_results['mask_preds']  # [k, C, 28, 28]
            cls_score = bbox_results['cls_score'][:100]
            _, labels = cls_score[:, :self.bbox_head.num_classes].max(dim=1)
            rows = torch.arange(labels.size(0), device=labels.device)
            mask_iou_preds = self.mask_iou_head(mask_results['mask_feats'],
                                                mask_preds[rows, labels])
            outs = outs + (mask_preds, mask_iou_preds)
        return outs

    def mask_loss(self, x: Tuple[Tensor, ...], sampling_results: List,
                  batch_gt_instances: InstanceList) -> dict:
        """Mask loss (see :class:`StandardRoIHead`) plus ``loss_mask_iou``.

        Returns:
            dict: ``mask_preds``, ``mask_feats``, ``mask_targets`` and ``loss_mask`` (a dict
            with ``loss_mask`` and ``loss_mask_iou``).
        """
        mask_results = super().mask_loss(x, sampling_results, batch_gt_instances)
        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])  # [P]
        rows = torch.arange(pos_labels.size(0), device=pos_labels.device)
        pos_mask_preds = mask_results['mask_preds'][rows, pos_labels]  # [P, 28, 28]
        mask_iou_preds = self.mask_iou_head(mask_results['mask_feats'], pos_mask_preds)
        loss_mask_iou = self.mask_iou_head.loss_and_target(
            mask_iou_preds[rows, pos_labels], pos_mask_preds, mask_results['mask_targets'],
            sampling_results, batch_gt_instances, self.train_cfg)
        mask_results['loss_mask'].update(loss_mask_iou)
        return mask_results

    def predict_mask(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     results_list: InstanceList, rescale: bool = False) -> InstanceList:
        """Masks of the kept detections, and their scores multiplied by the mask IoUs.

        Returns:
            list[InstanceData]: ``masks`` [N, H, W] added and ``scores`` [N] rescored, per
            image.
        """
        mask_rois = bbox2roi([res.bboxes for res in results_list])
        if mask_rois.size(0) == 0:
            return empty_instances(batch_img_metas, mask_rois.device, task_type='mask',
                                   instance_results=results_list,
                                   mask_thr_binary=self.test_cfg['mask_thr_binary'])
        mask_results = self._mask_forward(x, mask_rois)
        mask_preds = mask_results['mask_preds']  # [N, C, 28, 28]
        labels = torch.cat([res.labels for res in results_list])
        rows = torch.arange(labels.size(0), device=labels.device)
        mask_iou_preds = self.mask_iou_head(mask_results['mask_feats'],
                                            mask_preds[rows, labels])  # [N, C]
        num_per_img = [len(res) for res in results_list]
        results_list = self.mask_head.predict_by_feat(mask_preds.split(num_per_img),
                                                      results_list, batch_img_metas,
                                                      self.test_cfg, rescale)
        return self.mask_iou_head.predict_by_feat(mask_iou_preds.split(num_per_img),
                                                  results_list)
