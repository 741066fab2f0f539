"""Faster / Mask R-CNN's second stage: RoI features -> box head (-> mask head)."""
from typing import Dict, List, Tuple

from torch import Tensor

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import bbox2roi
from mmdet_lite.utils import ConfigType, InstanceList, OptConfigType, OptMultiConfig
from ..utils import empty_instances, unpack_gt_instances
from .base_roi_head import BaseRoIHead, RoIHeadArgumentError, gt_instances_with_area


@MODELS.register_module()
class StandardRoIHead(BaseRoIHead):
    """Assign and sample proposals, pool their features, classify/refine boxes, segment.

    Training (per image): proposals -> ``assigner`` (IoU with GT) -> ``sampler``
    (512 RoIs, 25% positive) -> RoI features (-> ``shared_head``) -> box losses; the
    positive RoIs also go through the mask branch. Test: proposals -> box head -> per-class
    NMS -> masks of the kept detections.

    Args:
        bbox_roi_extractor (dict): e.g. ``SingleRoIExtractor`` with 7x7 RoIAlign.
        bbox_head (dict): e.g. ``Shared2FCBBoxHead``, or ``BBoxHead`` after a shared head.
        mask_roi_extractor (dict, optional): 14x14 RoIAlign extractor for masks; None with
            a mask head reuses the box extractor.
        mask_head (dict, optional): e.g. ``FCNMaskHead``.
        shared_head (dict, optional): e.g. the C4 ``ResLayer`` (ResNet ``layer4`` per RoI).
        train_cfg (dict, optional): ``assigner``, ``sampler``, ``pos_weight``, ``mask_size``.
        test_cfg (dict, optional): ``score_thr``, ``nms``, ``max_per_img``,
            ``mask_thr_binary``.
        init_cfg (dict, optional): Initialization config.
        share_roi_extractor (bool): Reuse the box extractor for masks even when
            ``mask_roi_extractor`` is given (mmdet_lite's spelling of leaving it None).
    """

    def __init__(self,
                 bbox_roi_extractor: OptConfigType = None,
                 bbox_head: OptConfigType = None,
                 mask_roi_extractor: OptConfigType = None,
                 mask_head: OptConfigType = None,
                 shared_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 share_roi_extractor: bool = False) -> None:
        if bbox_head is None:
            raise RoIHeadArgumentError('StandardRoIHead needs bbox_head (and '
                                       'bbox_roi_extractor)')
        if share_roi_extractor:
            mask_roi_extractor = None
        super().__init__(bbox_roi_extractor=bbox_roi_extractor, bbox_head=bbox_head,
                         mask_roi_extractor=mask_roi_extractor, mask_head=mask_head,
                         shared_head=shared_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         init_cfg=init_cfg)

    def init_assigner_sampler(self) -> None:
        """``bbox_assigner`` / ``bbox_sampler`` from ``train_cfg`` (None without one)."""
        self.bbox_assigner = None
        self.bbox_sampler = None
        if self.train_cfg:
            self.bbox_assigner = TASK_UTILS.build(self.train_cfg['assigner'])
            self.bbox_sampler = TASK_UTILS.build(self.train_cfg['sampler'],
                                                 default_args=dict(context=self))

    def init_bbox_head(self, bbox_roi_extractor: ConfigType, bbox_head: ConfigType) -> None:
        """Build ``bbox_roi_extractor`` and ``bbox_head``."""
        self.bbox_roi_extractor = MODELS.build(bbox_roi_extractor)
        self.bbox_head = MODELS.build(bbox_head)

    def init_mask_head(self, mask_roi_extractor: OptConfigType, mask_head: ConfigType) -> None:
        """Build ``mask_head``; without ``mask_roi_extractor`` the box extractor is shared."""
        self.mask_roi_extractor = self._build_or_share_extractor(mask_roi_extractor)
        self.mask_head = MODELS.build(mask_head)

    def _build_or_share_extractor(self, extractor_cfg: OptConfigType):
        """A branch's RoI extractor: built from ``extractor_cfg``, or ``bbox_roi_extractor``
        itself when that is None (``share_roi_extractor`` records which)."""
        self.share_roi_extractor = extractor_cfg is None
        if extractor_cfg is None:
            return self.bbox_roi_extractor
        return MODELS.build(extractor_cfg)

    # ------------------------------------------------------------------ forward parts
    def _bbox_forward(self, x: Tuple[Tensor, ...], rois: Tensor) -> Dict[str, Tensor]:
        """Box head outputs of ``rois`` [K, 5].

        Returns:
            dict: ``cls_score`` [K, C+1], ``bbox_pred`` [K, C*4] and ``bbox_feats`` (the
            RoI features after the shared head, e.g. [K, 2048, 7, 7] for C4).
        """
        bbox_feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        cls_score, bbox_pred = self.bbox_head(bbox_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)

    def _mask_forward(self, x: Tuple[Tensor, ...], rois: Tensor) -> Dict[str, Tensor]:
        """Mask logits [K, C, 28, 28] (and the features) of ``rois`` [K, 5]."""
        mask_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs],
                                             rois)  # [K, 256, 14, 14]
        if self.with_shared_head:
            mask_feats = self.shared_head(mask_feats)
        return dict(mask_preds=self.mask_head(mask_feats), mask_feats=mask_feats)

    def forward(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
                batch_data_samples: SampleList = None) -> tuple:
        """Raw head outputs for all proposals ('tensor' mode; no post-processing).

        Returns:
            tuple: ``cls_score``, ``bbox_pred`` and with a mask head the mask logits of the
            first 100 RoIs.
        """
        rois = bbox2roi([res.bboxes for res in rpn_results_list])
        outs = ()
        if self.with_bbox:
            bbox_results = self._bbox_forward(x, rois)
            outs = outs + (bbox_results['cls_score'], bbox_results['bbox_pred'])
        if self.with_mask:
            outs = outs + (self._mask_forward(x, rois[:100])['mask_preds'], )
        return outs

    # ------------------------------------------------------------------ training
    def loss(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of the box (and mask) branch.

        Args:
            x (tuple[Tensor]): Neck outputs.
            rpn_results_list (list[InstanceData]): Proposals per image (``bboxes``).
            batch_data_samples (list[DetDataSample]): With ``gt_instances``.

        Returns:
            dict: ``loss_cls``, ``acc``, ``loss_bbox`` (and ``loss_mask``).
        """
        batch_gt_instances, batch_gt_instances_ignore, _ = unpack_gt_instances(batch_data_samples)
        batch_gt_instances = [gt_instances_with_area(gt) for gt in batch_gt_instances]
        sampling_results = self.assign_and_sample(
            x, [res.bboxes for res in rpn_results_list], batch_gt_instances,
            batch_gt_instances_ignore, self.bbox_assigner, self.bbox_sampler)

        losses = dict()
        if self.with_bbox:
            bbox_results = self.bbox_loss(x, sampling_results)
            losses.update(bbox_results['loss_bbox'])
        if self.with_mask:
            mask_results = self.mask_loss(x, sampling_results, batch_gt_instances)
            losses.update(mask_results['loss_mask'])
        return losses

    def bbox_loss(self, x: Tuple[Tensor, ...], sampling_results: List) -> dict:
        """Box head forward on the sampled RoIs and its losses.

        Args:
            x (tuple[Tensor]): Features, each [B, C, H_l, W_l].
            sampling_results (list[SamplingResult]): Per-image sampled RoIs.

        Returns:
            dict: ``cls_score``, ``bbox_pred``, ``bbox_feats``, ``loss_bbox`` (a dict of
            losses), plus ``rois`` [K, 5] and ``bbox_targets`` for multi-stage heads.
        """
        rois = bbox2roi([res.priors for res in sampling_results])  # [K, 5]
        bbox_results = self._bbox_forward(x, rois)
        bbox_out = self.bbox_head.loss_and_target(
            cls_score=bbox_results['cls_score'], bbox_pred=bbox_results['bbox_pred'],
            rois=rois, sampling_results=sampling_results, rcnn_train_cfg=self.train_cfg)
        bbox_results.update(loss_bbox=bbox_out['loss_bbox'], rois=rois,
                            bbox_targets=bbox_out['bbox_targets'])
        return bbox_results

    def mask_loss(self, x: Tuple[Tensor, ...], sampling_results: List,
                  batch_gt_instances: InstanceList) -> dict:
        """Mask head forward on the positive RoIs and its loss.

        Returns:
            dict: ``mask_preds`` [P, C, 28, 28], ``mask_feats``, ``loss_mask`` (a dict) and
            ``mask_targets`` [P, 28, 28] (for heads that build on the masks, e.g. MS R-CNN).
        """
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        mask_results = self._mask_forward(x, pos_rois)
        mask_out = self.mask_head.loss_and_target(mask_results['mask_preds'],
                                                  sampling_results, batch_gt_instances,
                                                  self.train_cfg)
        mask_results.update(loss_mask=mask_out['loss_mask'],
                            mask_targets=mask_out.get('mask_targets'))
        return mask_results

    # ------------------------------------------------------------------ inference
    def predict_bbox(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     rpn_results_list: InstanceList, rcnn_test_cfg: OptConfigType,
                     rescale: bool = False) -> InstanceList:
        """Classify and refine the proposals, then per-class NMS.

        Args:
            x (tuple[Tensor]): Features, each [B, C, H_l, W_l].
            batch_img_metas (list[dict]): Metas of each image.
            rpn_results_list (list[InstanceData]): Proposals (``bboxes``) per image.
            rcnn_test_cfg (dict, optional): ``score_thr``, ``nms``, ``max_per_img``; None
                returns the raw per-class boxes and scores.
            rescale (bool): Map the boxes to the original image.

        Returns:
            list[InstanceData]: ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N] per image.
        """
        proposals = [res.bboxes for res in rpn_results_list]
        rois = bbox2roi(proposals)
        if rois.size(0) == 0:
            return empty_instances(batch_img_metas, rois.device, task_type='bbox',
                                   box_type=self.bbox_head.predict_box_type,
                                   num_classes=self.bbox_head.num_classes,
                                   score_per_cls=rcnn_test_cfg is None)
        bbox_results = self._bbox_forward(x, rois)
        num_per_img = tuple(len(p) for p in proposals)
        bbox_preds = bbox_results['bbox_pred']
        bbox_preds = bbox_preds.split(num_per_img) if bbox_preds is not None else \
            (None, ) * len(proposals)
        return self.bbox_head.predict_by_feat(
            rois=rois.split(num_per_img), cls_scores=bbox_results['cls_score'].split(
                num_per_img), bbox_preds=bbox_preds, batch_img_metas=batch_img_metas,
            rcnn_test_cfg=rcnn_test_cfg, rescale=rescale)

    def predict_mask(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     results_list: InstanceList, rescale: bool = False) -> InstanceList:
        """Predict a mask for every kept detection (``masks`` [N, H, W] per image)."""
        rois = bbox2roi([res.bboxes for res in results_list])
        if rois.size(0) == 0:
            return empty_instances(batch_img_metas, rois.device, task_type='mask',
                                   instance_results=results_list,
                                   mask_thr_binary=self.test_cfg['mask_thr_binary'])
        mask_preds = self._mask_forward(x, rois)['mask_preds']
        num_per_img = [len(res) for res in results_list]
        return self.mask_head.predict_by_feat(mask_preds.split(num_per_img), results_list,
                                              batch_img_metas, self.test_cfg, rescale)
