"""Cascade R-CNN's second stage: a chain of box heads, each refining the boxes of the last.

Stage ``s`` pools features for its RoIs, classifies them and regresses them; the regressed
boxes are the RoIs of stage ``s + 1``, trained with a stricter IoU threshold. At test time
the class scores of all stages are averaged and the last stage's deltas give the boxes.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from mmengine.model import ModuleList
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import bbox2roi, get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                              OptMultiConfig)
from ..test_time_augs.merge_augs import merge_aug_masks
from ..utils import empty_instances, unpack_gt_instances
from .base_roi_head import BaseRoIHead, RoIHeadArgumentError, gt_instances_with_area


@MODELS.register_module()
class CascadeRoIHead(BaseRoIHead):
    """RoI head of Cascade (Mask) R-CNN (https://arxiv.org/abs/1712.00726).

    Training, for each stage ``s``: assign and sample the current boxes with
    ``train_cfg[s]`` (IoU 0.5 / 0.6 / 0.7 in the COCO configs) -> box (and mask) losses,
    reported as ``s{s}.loss_cls``, ``s{s}.acc``, ``s{s}.loss_bbox`` (``s{s}.loss_mask``)
    and scaled by ``stage_loss_weights[s]`` -> ``refine_bboxes`` (without gradients) gives
    the next stage's proposals. Test: the proposals go through every stage in turn; the
    detections use the mean of the stages' class logits and the last stage's deltas, and
    their masks are the mean of every stage's mask probabilities.

    Args:
        num_stages (int): Number of box heads in the cascade.
        stage_loss_weights (list[float]): Weight of each stage's losses (``acc`` is not
            scaled).
        bbox_roi_extractor (dict | list[dict]): One config for every stage, or one per stage.
        bbox_head (dict | list[dict]): One config for every stage, or one per stage.
        mask_roi_extractor (dict | list[dict], optional): Per stage like the box ones; None
            with a mask head reuses the box extractors.
        mask_head (dict | list[dict], optional): Per stage like the box ones.
        shared_head (dict, optional): Not supported; must be None (as in mmdetection 3.x).
        train_cfg (list[dict], optional): ``train_cfg.rcnn``: one dict per stage with
            ``assigner``, ``sampler``, ``pos_weight`` (and ``mask_size``).
        test_cfg (dict, optional): ``score_thr``, ``nms``, ``max_per_img``
            (and ``mask_thr_binary``).
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    def __init__(self,
                 num_stages: int,
                 stage_loss_weights: Sequence[float],
                 bbox_roi_extractor: OptMultiConfig = None,
                 bbox_head: OptMultiConfig = None,
                 mask_roi_extractor: OptMultiConfig = None,
                 mask_head: OptMultiConfig = None,
                 shared_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if bbox_roi_extractor is None or bbox_head is None:
            raise RoIHeadArgumentError('CascadeRoIHead needs bbox_roi_extractor and bbox_head')
        if shared_head is not None:
            raise RoIHeadArgumentError('CascadeRoIHead does not support a shared_head (nor '
                                       'does mmdetection 3.x); got shared_head='
                                       f'{shared_head}')
        self.num_stages = num_stages
        self.stage_loss_weights = stage_loss_weights
        super().__init__(bbox_roi_extractor=bbox_roi_extractor, bbox_head=bbox_head,
                         mask_roi_extractor=mask_roi_extractor, mask_head=mask_head,
                         shared_head=shared_head, train_cfg=train_cfg, test_cfg=test_cfg,
                         init_cfg=init_cfg)

    # ------------------------------------------------------------------ building
    def _per_stage(self, cfg: MultiConfig, name: str) -> list:
        """``cfg`` repeated for every stage, or the given per-stage list checked."""
        cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg] * self.num_stages
        if len(cfgs) != self.num_stages:
            raise RoIHeadArgumentError(f'{name} has {len(cfgs)} configs but num_stages is '
                                       f'{self.num_stages}; give one config or one per stage')
        return cfgs

    def init_bbox_head(self, bbox_roi_extractor: MultiConfig, bbox_head: MultiConfig) -> None:
        """``bbox_roi_extractor`` and ``bbox_head``: one module per stage."""
        extractors = self._per_stage(bbox_roi_extractor, 'bbox_roi_extractor')
        heads = self._per_stage(bbox_head, 'bbox_head')
        self.bbox_roi_extractor = ModuleList([MODELS.build(cfg) for cfg in extractors])
        self.bbox_head = ModuleList([MODELS.build(cfg) for cfg in heads])

    def init_mask_head(self, mask_roi_extractor: OptMultiConfig,
                       mask_head: MultiConfig) -> None:
        """``mask_head`` per stage; without ``mask_roi_extractor`` the box extractors serve.

        Quirk kept from mmdetection: the mask heads sit in a plain ``nn.ModuleList``, which
        ``BaseModule.init_weights`` does not descend into, so ``FCNMaskHead.init_weights``
        (Kaiming init of ``upsample`` and ``conv_logits``) never runs for a cascade and those
        layers keep PyTorch's default init.
        """
        self.mask_head = nn.ModuleList(
            [MODELS.build(cfg) for cfg in self._per_stage(mask_head, 'mask_head')])
        if mask_roi_extractor is not None:
            self.share_roi_extractor = False
            self.mask_roi_extractor = ModuleList([
                MODELS.build(cfg)
                for cfg in self._per_stage(mask_roi_extractor, 'mask_roi_extractor')
            ])
        else:
            self.share_roi_extractor = True
            self.mask_roi_extractor = self.bbox_roi_extractor

    def init_assigner_sampler(self) -> None:
        """``bbox_assigner`` / ``bbox_sampler``: one per entry of ``train_cfg``."""
        self.bbox_assigner = []
        self.bbox_sampler = []
        if self.train_cfg is None:
            return
        if not isinstance(self.train_cfg, (list, tuple)):
            raise RoIHeadArgumentError('CascadeRoIHead needs train_cfg (train_cfg.rcnn) as '
                                       'a list with one dict per stage, got '
                                       f'{type(self.train_cfg).__name__}')
        for stage, stage_cfg in enumerate(self.train_cfg):
            self.bbox_assigner.append(TASK_UTILS.build(stage_cfg['assigner']))
            # Samplers that score RoIs with the head (OHEM) read their stage from here.
            self.current_stage = stage
            self.bbox_sampler.append(
                TASK_UTILS.build(stage_cfg['sampler'], default_args=dict(context=self)))

    # ------------------------------------------------------------------ forward parts
    def _bbox_forward(self, stage: int, x: Tuple[Tensor, ...], rois: Tensor) -> dict:
        """Stage ``stage``'s box head on ``rois`` [K, 5].

        Returns:
            dict: ``cls_score`` [K, C+1], ``bbox_pred`` [K, 4] (class-agnostic) or
            [K, C*4], and ``bbox_feats`` [K, 256, 7, 7].
        """
        extractor = self.bbox_roi_extractor[stage]
        bbox_feats = extractor(x[:extractor.num_inputs], rois)  # [K, 256, 7, 7]
        cls_score, bbox_pred = self.bbox_head[stage](bbox_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)

    def _mask_forward(self, stage: int, x: Tuple[Tensor, ...], rois: Tensor) -> dict:
        """Stage ``stage``'s mask logits ``mask_preds`` [K, C, 28, 28] of ``rois`` [K, 5]."""
        extractor = self.mask_roi_extractor[stage]
        mask_feats = extractor(x[:extractor.num_inputs], rois)  # [K, 256, 14, 14]
        return dict(mask_preds=self.mask_head[stage](mask_feats))

    def _mean_mask_probs(self, x: Tuple[Tensor, ...], rois: Tensor,
                         num_rois_per_img: Sequence[int],
                         batch_img_metas: List[dict]) -> List[Tensor]:
        """Per image, the mean over the stages of the mask probabilities of ``rois``.

        Returns:
            list[Tensor]: Per image [K_i, C, 28, 28] probabilities (after the sigmoid).
        """
        stage_probs = [
            self._mask_forward(stage, x, rois)['mask_preds'].sigmoid().detach().split(
                list(num_rois_per_img)) for stage in range(self.num_stages)
        ]
        return [
            merge_aug_masks([probs[i] for probs in stage_probs], img_meta)
            for i, img_meta in enumerate(batch_img_metas)
        ]

    def forward(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
                batch_data_samples: SampleList) -> tuple:
        """Raw outputs of the whole cascade ('tensor' mode; no NMS).

        Returns:
            tuple: ``cls_scores`` (per image [K_i, C+1], the mean of the stages' logits),
            ``bbox_preds`` (per image, the last stage's deltas [K_i, 4] or [K_i, C*4]) and
            with a mask head the per-image mean mask probabilities [K_i, C, 28, 28] of the
            RoIs the last stage saw.
        """
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        proposals = [res.bboxes for res in rpn_results_list]
        num_proposals_per_img = tuple(len(p) for p in proposals)
        rois = bbox2roi(proposals)
        results = ()
        if self.with_bbox:
            rois, cls_scores, bbox_preds = self._refine_roi(x, rois, batch_img_metas,
                                                            num_proposals_per_img)
            results = results + (cls_scores, bbox_preds)
        if self.with_mask:
            rois = torch.cat(rois)
            results = results + (self._mean_mask_probs(x, rois, num_proposals_per_img,
                                                       batch_img_metas), )
        return results

    # ------------------------------------------------------------------ training
    def loss(self, x: Tuple[Tensor, ...], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every stage.

        Args:
            x (tuple[Tensor]): Neck outputs, each [B, C, H_l, W_l].
            rpn_results_list (list[InstanceData]): Proposals per image (``bboxes``).
            batch_data_samples (list[DetDataSample]): With ``gt_instances``.

        Returns:
            dict: ``s{i}.loss_cls``, ``s{i}.acc``, ``s{i}.loss_bbox`` (and
            ``s{i}.loss_mask``) for each stage ``i``.
        """
        for name in ('train_cfg', 'stage_loss_weights'):
            given = getattr(self, name)
            if given is None or len(given) < self.num_stages:
                raise RoIHeadArgumentError(f'{name} needs one entry per stage '
                                           f'({self.num_stages}), got {given}')
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = \
            unpack_gt_instances(batch_data_samples)
        batch_gt_instances = [gt_instances_with_area(gt) for gt in batch_gt_instances]

        losses = dict()
        proposals = [res.bboxes for res in rpn_results_list]  # per image [N_i, 4]
        for stage in range(self.num_stages):
            self.current_stage = stage
            sampling_results = self.assign_and_sample(
                x, proposals, batch_gt_instances, batch_gt_instances_ignore,
                self.bbox_assigner[stage], self.bbox_sampler[stage])
            bbox_results = self.bbox_loss(stage, x, sampling_results)
            stage_losses = dict(bbox_results['loss_bbox'])
            if self.with_mask:
                stage_losses.update(self.mask_loss(stage, x, sampling_results,
                                                   batch_gt_instances)['loss_mask'])
            weight = self.stage_loss_weights[stage]
            for name, value in stage_losses.items():
                losses[f's{stage}.{name}'] = value * weight if 'loss' in name else value

            if stage < self.num_stages - 1:
                # The next stage trains on this stage's regressed boxes, as fixed inputs.
                with torch.no_grad():
                    refined = self.bbox_head[stage].refine_bboxes(
                        sampling_results, bbox_results, batch_img_metas)
                if refined is None:  # not a single RoI in the batch
                    break
                proposals = [res.bboxes for res in refined]
        return losses

    def bbox_loss(self, stage: int, x: Tuple[Tensor, ...], sampling_results: list) -> dict:
        """Stage ``stage``'s box head on its sampled RoIs, and its losses.

        Returns:
            dict: ``cls_score``, ``bbox_pred``, ``bbox_feats``, ``rois`` [K, 5],
            ``loss_bbox`` (a dict of losses) and ``bbox_targets`` (for ``refine_bboxes``).
        """
        rois = bbox2roi([res.priors for res in sampling_results])  # [K, 5]
        bbox_results = self._bbox_forward(stage, x, rois)
        bbox_results.update(rois=rois)
        bbox_results.update(self.bbox_head[stage].loss_and_target(
            cls_score=bbox_results['cls_score'], bbox_pred=bbox_results['bbox_pred'],
            rois=rois, sampling_results=sampling_results,
            rcnn_train_cfg=self.train_cfg[stage]))
        return bbox_results

    def mask_loss(self, stage: int, x: Tuple[Tensor, ...], sampling_results: list,
                  batch_gt_instances: InstanceList) -> dict:
        """Stage ``stage``'s mask head on the positive RoIs, and its loss.

        Returns:
            dict: ``mask_preds`` [P, C, 28, 28], ``loss_mask`` (a dict) and ``mask_targets``.
        """
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        mask_results = self._mask_forward(stage, x, pos_rois)
        mask_results.update(self.mask_head[stage].loss_and_target(
            mask_results['mask_preds'], sampling_results, batch_gt_instances,
            self.train_cfg[stage]))
        return mask_results

    # ------------------------------------------------------------------ inference
    def predict_bbox(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     rpn_results_list: InstanceList, rcnn_test_cfg: ConfigType,
                     rescale: bool = False, **kwargs) -> InstanceList:
        """Run the proposals through the cascade, then per-class NMS.

        Args:
            x (tuple[Tensor]): Features, each [B, C, H_l, W_l].
            batch_img_metas (list[dict]): Metas of each image.
            rpn_results_list (list[InstanceData]): Proposals (``bboxes``) per image.
            rcnn_test_cfg (dict, optional): ``score_thr``, ``nms``, ``max_per_img``; None
                returns the raw boxes and per-class scores.
            rescale (bool): Map the boxes to the original image.
            **kwargs: Passed on to ``_bbox_forward`` (for subclasses).

        Returns:
            list[InstanceData]: ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N] per image.
        """
        proposals = [res.bboxes for res in rpn_results_list]
        num_proposals_per_img = tuple(len(p) for p in proposals)
        rois = bbox2roi(proposals)
        last_head = self.bbox_head[-1]
        if rois.size(0) == 0:
            return empty_instances(batch_img_metas, rois.device, task_type='bbox',
                                   box_type=last_head.predict_box_type,
                                   num_classes=last_head.num_classes,
                                   score_per_cls=rcnn_test_cfg is None)
        rois, cls_scores, bbox_preds = self._refine_roi(x, rois, batch_img_metas,
                                                        num_proposals_per_img, **kwargs)
        return last_head.predict_by_feat(rois=rois, cls_scores=cls_scores,
                                         bbox_preds=bbox_preds,
                                         batch_img_metas=batch_img_metas,
                                         rcnn_test_cfg=rcnn_test_cfg, rescale=rescale)

    def predict_mask(self, x: Tuple[Tensor, ...], batch_img_metas: List[dict],
                     results_list: InstanceList, rescale: bool = False) -> InstanceList:
        """Masks of the detections: every stage's mask head, probabilities averaged.

        Returns:
            list[InstanceData]: The results with ``masks`` [N, H, W] added.
        """
        mask_rois = bbox2roi([res.bboxes for res in results_list])
        if mask_rois.size(0) == 0:
            return empty_instances(batch_img_metas, mask_rois.device, task_type='mask',
                                   instance_results=results_list,
                                   mask_thr_binary=self.test_cfg['mask_thr_binary'])
        mean_probs = self._mean_mask_probs(x, mask_rois, [len(res) for res in results_list],
                                           batch_img_metas)
        return self.mask_head[-1].predict_by_feat(
            mask_preds=mean_probs, results_list=results_list,
            batch_img_metas=batch_img_metas, rcnn_test_cfg=self.test_cfg, rescale=rescale,
            activate_map=True)

    def _refine_roi(self, x: Tuple[Tensor, ...], rois: Tensor, batch_img_metas: List[dict],
                    num_proposals_per_img: Sequence[int], **kwargs) -> tuple:
        """Pass ``rois`` [K, 5] through every stage, regressing them between stages.

        Each stage but the last regresses every RoI with the deltas of its best foreground
        class (the only deltas when class-agnostic).

        Returns:
            tuple:

            - rois (tuple[Tensor]): Per image [K_i, 5], the RoIs the last stage saw.
            - cls_scores (list[Tensor]): Per image [K_i, C+1], the mean of the stages' logits
              (the softmax comes after the mean, in ``predict_by_feat``).
            - bbox_preds (tuple[Tensor]): Per image, the last stage's deltas.
        """
        num_proposals_per_img = list(num_proposals_per_img)
        stage_scores = []
        for stage in range(self.num_stages):
            bbox_results = self._bbox_forward(stage=stage, x=x, rois=rois, **kwargs)
            cls_scores = bbox_results['cls_score'].split(num_proposals_per_img)
            stage_scores.append(cls_scores)
            bbox_preds = bbox_results['bbox_pred']
            if bbox_preds is None:
                bbox_preds = (None, ) * len(batch_img_metas)
            elif isinstance(bbox_preds, Tensor):
                bbox_preds = bbox_preds.split(num_proposals_per_img)
            else:  # heads whose prediction is not one tensor (e.g. SABL) split it themselves
                bbox_preds = self.bbox_head[stage].bbox_pred_split(bbox_preds,
                                                                   num_proposals_per_img)
            if stage < self.num_stages - 1:
                rois = self._regress_rois(stage, rois.split(num_proposals_per_img),
                                          cls_scores, bbox_preds, batch_img_metas)
        mean_scores = [
            sum(scores[i] for scores in stage_scores) / float(len(stage_scores))
            for i in range(len(batch_img_metas))
        ]
        return rois.split(num_proposals_per_img), mean_scores, bbox_preds

    def _regress_rois(self, stage: int, rois: Tuple[Tensor, ...],
                      cls_scores: Tuple[Tensor, ...], bbox_preds: tuple,
                      batch_img_metas: List[dict]) -> Tensor:
        """Stage ``stage``'s regressed boxes of each image's ``rois``, as RoIs [K, 5]."""
        bbox_head = self.bbox_head[stage]
        if bbox_head.custom_activation:
            cls_scores = [bbox_head.loss_cls.get_activation(s) for s in cls_scores]
        refined = []
        for img_rois, scores, deltas, img_meta in zip(rois, cls_scores, bbox_preds,
                                                      batch_img_metas):
            if img_rois.size(0) == 0:
                refined.append(img_rois)
                continue
            labels = scores[:, :-1].argmax(dim=1)  # best foreground class of each RoI
            boxes = get_box_tensor(
                bbox_head.regress_by_class(img_rois[:, 1:], labels, deltas, img_meta))
            refined.append(torch.cat([img_rois[:, :1], boxes], dim=1))  # keep batch index
        return torch.cat(refined)
