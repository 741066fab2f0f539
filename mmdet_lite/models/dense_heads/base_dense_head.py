"""BaseDenseHead: the loss / predict entry points and box post-processing of dense heads.

A dense head predicts, at every position of every feature level, class scores and box
regressions for a few priors (anchors). Subclasses provide the layers (``forward``), the
training targets (``loss_by_feat``) and the priors (``self.prior_generator``); this class turns
data samples into those calls and raw outputs into per-image detections::

    loss():             forward() -> loss_by_feat()
    predict():          forward() -> predict_by_feat()
    loss_and_predict(): forward() -> loss_by_feat() -> predict_by_feat()   (RPN in training)
"""
from abc import ABCMeta, abstractmethod
from typing import List, Optional, Tuple

import torch
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.structures.bbox import get_box_wh, scale_boxes
from mmdet_lite.structures import SampleList
from mmdet_lite.utils import ConfigType, InstanceList, OptConfigType
from ..utils import (batched_nms, filter_scores_and_topk, select_single_mlvl,
                     unpack_gt_instances)


class BaseDenseHead(BaseModule, metaclass=ABCMeta):
    """Base class of dense heads.

    Subclasses must set ``prior_generator``, ``bbox_coder``, ``cls_out_channels``,
    ``use_sigmoid_cls`` and ``test_cfg`` and implement ``forward`` and ``loss_by_feat``.

    Args:
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    @abstractmethod
    def loss_by_feat(self, *args, **kwargs) -> dict:
        """Compute the losses from the raw head outputs and the ground truth."""

    def loss(self, x: Tuple[Tensor], batch_data_samples: SampleList) -> dict:
        """Forward the features and compute the losses.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, C, H_l, W_l].
            batch_data_samples (list[DetDataSample]): Ground truth and meta of each image.

        Returns:
            dict[str, Tensor | list[Tensor]]: Loss components.
        """
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = \
            unpack_gt_instances(batch_data_samples)
        outs = self(x)
        return self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas,
                                 batch_gt_instances_ignore)

    def loss_and_predict(self,
                         x: Tuple[Tensor],
                         batch_data_samples: SampleList,
                         proposal_cfg: OptConfigType = None) -> Tuple[dict, InstanceList]:
        """Compute the losses and the detections of one forward pass (used by the RPN).

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, C, H_l, W_l].
            batch_data_samples (list[DetDataSample]): Ground truth and meta of each image.
            proposal_cfg (dict, optional): Post-processing config of the predictions
                (e.g. ``train_cfg.rpn_proposal``); ``test_cfg`` when None.

        Returns:
            tuple: ``(losses, predictions)``, the predictions being one InstanceData per image
            with ``bboxes`` [K, 4] in input-image pixels, ``scores`` [K] and ``labels`` [K].
        """
        batch_gt_instances, batch_gt_instances_ignore, batch_img_metas = \
            unpack_gt_instances(batch_data_samples)
        outs = self(x)
        losses = self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas,
                                   batch_gt_instances_ignore)
        predictions = self.predict_by_feat(*outs, batch_img_metas=batch_img_metas,
                                           cfg=proposal_cfg)
        return losses, predictions

    def predict(self, x: Tuple[Tensor], batch_data_samples: SampleList,
                rescale: bool = False) -> InstanceList:
        """Forward the features and turn the outputs into detections.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, C, H_l, W_l].
            batch_data_samples (list[DetDataSample]): Meta of each image (``img_shape``,
                ``scale_factor``).
            rescale (bool): Whether to map boxes back to the original image size.

        Returns:
            list[InstanceData]: Per image, ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K].
        """
        batch_img_metas = [data_sample.metainfo for data_sample in batch_data_samples]
        outs = self(x)
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Turn the raw multi-level outputs of a batch into detections per image.

        Args:
            cls_scores (list[Tensor]): Per level [B, A * cls_out_channels, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, A * 4, H_l, W_l].
            score_factors (list[Tensor], optional): Per level [B, A, H_l, W_l] logits whose
                sigmoid multiplies the scores (centerness-style heads); None for anchor heads.
            batch_img_metas (list[dict]): Meta of each image.
            cfg (dict, optional): Post-processing config; ``test_cfg`` when None.
            rescale (bool): Whether to map boxes back to the original image size.
            with_nms (bool): Whether to run NMS.

        Returns:
            list[InstanceData]: Per image, ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K].
        """
        if len(cls_scores) != len(bbox_preds):
            raise ValueError(f'cls_scores has {len(cls_scores)} levels but bbox_preds has '
                             f'{len(bbox_preds)}; expected one tensor per level in each')
        if batch_img_metas is None:
            raise ValueError('batch_img_metas is required (img_shape and scale_factor of each '
                             'image)')
        cfg = self._resolve_cfg(cfg)
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        # The priors depend only on the feature map sizes, shared by every image.
        mlvl_priors = self.prior_generator.grid_priors(
            featmap_sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)

        result_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            score_factor_list = (select_single_mlvl(score_factors, img_id)
                                 if score_factors is not None else [None] * len(cls_scores))
            result_list.append(
                self._predict_by_feat_single(
                    cls_score_list=select_single_mlvl(cls_scores, img_id),
                    bbox_pred_list=select_single_mlvl(bbox_preds, img_id),
                    score_factor_list=score_factor_list,
                    mlvl_priors=mlvl_priors,
                    img_meta=img_meta,
                    cfg=cfg,
                    rescale=rescale,
                    with_nms=with_nms))
        return result_list

    def _resolve_cfg(self, cfg: OptConfigType) -> ConfigType:
        cfg = self.test_cfg if cfg is None else cfg
        if cfg is None:
            raise ValueError(f'{type(self).__name__} needs a post-processing config: pass cfg '
                             'or build the head with test_cfg (e.g. dict(nms_pre=1000, '
                             "max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7)))")
        return cfg

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Optional[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: ConfigType,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """Detections of one image: per-level score filter and top-k, decode, then NMS.

        Args:
            cls_score_list (list[Tensor]): Per level [A * cls_out_channels, H_l, W_l].
            bbox_pred_list (list[Tensor]): Per level [A * 4, H_l, W_l].
            score_factor_list (list[Tensor | None]): Per level [A, H_l, W_l] or None.
            mlvl_priors (list[Tensor]): Per level [H_l * W_l * A, 4].
            img_meta (dict): Meta of the image.
            cfg (dict): ``score_thr``, ``nms_pre``, ``min_bbox_size``, ``nms``,
                ``max_per_img``.
            rescale (bool): Whether to map boxes back to the original image size.
            with_nms (bool): Whether to run NMS.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K].
        """
        nms_pre = cfg.get('nms_pre', -1)
        score_thr = cfg.get('score_thr', 0)
        mlvl_deltas, mlvl_kept_priors, mlvl_scores, mlvl_labels, mlvl_factors = \
            [], [], [], [], []
        for cls_score, bbox_pred, score_factor, priors in zip(
                cls_score_list, bbox_pred_list, score_factor_list, mlvl_priors):
            # Channels are ordered (anchor, value), so a permute gives one row per prior.
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, 4)  # [H*W*A, 4]
            cls_score = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
            if self.use_sigmoid_cls:
                scores = cls_score.sigmoid()  # [H*W*A, num_classes]
            else:
                scores = cls_score.softmax(-1)[:, :-1]  # drop the background column
            scores, labels, keep_idxs, kept = filter_scores_and_topk(
                scores, score_thr, nms_pre, dict(bbox_pred=bbox_pred, priors=priors))
            mlvl_deltas.append(kept['bbox_pred'])
            mlvl_kept_priors.append(kept['priors'])
            mlvl_scores.append(scores)
            mlvl_labels.append(labels)
            if score_factor is not None:
                score_factor = score_factor.permute(1, 2, 0).reshape(-1)  # [H*W*A]
                mlvl_factors.append(score_factor[keep_idxs].sigmoid())

        results = InstanceData()
        results.bboxes = self.bbox_coder.decode(torch.cat(mlvl_kept_priors),
                                                torch.cat(mlvl_deltas),
                                                max_shape=img_meta['img_shape'])
        results.scores = torch.cat(mlvl_scores)
        results.labels = torch.cat(mlvl_labels)
        if mlvl_factors:
            results.scores = results.scores * torch.cat(mlvl_factors)
        return self._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms,
                                       img_meta=img_meta)

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigType,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """Rescale, drop tiny boxes, then class-wise NMS and keep the best ``max_per_img``.

        Args:
            results (InstanceData): ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N].
            cfg (dict): ``min_bbox_size`` (boxes with w or h <= it are dropped; negative keeps
                all), ``nms`` and ``max_per_img``.
            rescale (bool): Whether to divide the boxes by ``img_meta['scale_factor']``.
            with_nms (bool): Whether to run NMS (False keeps every box).
            img_meta (dict, optional): Meta of the image; required when rescaling.

        Returns:
            InstanceData: The kept results, highest score first when NMS ran.
        """
        if rescale:
            results.bboxes = _rescale_to_original(results.bboxes, img_meta)
        min_bbox_size = cfg.get('min_bbox_size', -1)
        if min_bbox_size >= 0:
            w, h = get_box_wh(results.bboxes)
            valid = (w > min_bbox_size) & (h > min_bbox_size)
            if not valid.all():
                results = results[valid]
        if with_nms and len(results) > 0:
            _, keep = batched_nms(results.bboxes, results.scores, results.labels, cfg['nms'])
            results = results[keep][:cfg.get('max_per_img', len(keep))]
        return results


def _rescale_to_original(bboxes: Tensor, img_meta: Optional[dict]) -> Tensor:
    """Map boxes [N, 4] from the resized input image back to the original image."""
    if img_meta is None or img_meta.get('scale_factor') is None:
        raise KeyError("rescale=True needs 'scale_factor' (w_scale, h_scale) in the image meta")
    w_scale, h_scale = img_meta['scale_factor'][:2]
    return scale_boxes(bboxes, (1.0 / w_scale, 1.0 / h_scale))
