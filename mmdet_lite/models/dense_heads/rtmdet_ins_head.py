"""RTMDet-Ins heads: RTMDet's boxes plus masks from per-instance dynamic convolutions.

On top of RTMDet's classification and box towers, a third tower predicts at every prior the
parameters of a small 1x1 conv stack (``rtm_kernel``, ``num_gen_params`` channels), and a
prototype branch (``mask_head``, :class:`MaskFeatModule`) turns the neck levels into
``num_prototypes`` maps at the first level's stride (8). A detection's mask is its own conv
stack run over the prototypes and its relative coordinates
(:mod:`mmdet_lite.models.layers.rtmdet_ins_layers`)::

    forward: feats -> per level (cls_score, bbox_pred, kernel_pred) + mask_feat [B, P, H/8, W/8]
    loss:    RTMDet's losses + loss_mask: Dice of the positives' masks at mask_loss_stride
    predict: RTMDet's boxes -> NMS -> masks of the kept boxes, upsampled, > mask_thr_binary

:class:`RTMDetInsSepBNHead`, the COCO configs' head, gives every level its own towers; it lives
in ``rtmdet_ins_sep_bn_head.py`` and is importable from here, where mmdetection keeps it.
"""
import copy
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor, get_box_wh, scale_boxes
from mmdet_lite.utils import (ConfigType, InstanceList, OptConfigType, OptInstanceList,
                              reduce_mean)
from ..layers.rtmdet_ins_layers import (MaskFeatModule, dynamic_conv_param_nums,
                                        dynamic_mask_convs, mask_logits_to_image,
                                        relative_coordinates, split_dynamic_params)
from ..layers.transformer.utils import inverse_sigmoid
from ..utils import (batched_nms, filter_scores_and_topk, select_single_mlvl,
                     sigmoid_geometric_mean)
from .rtmdet_head import RTMDetHead

# RTMDetInsSepBNHead is added to this module by the package (see dense_heads/__init__.py).
__all__ = ['RTMDetInsHead', 'MaskFeatModule']


class RTMDetInsArgumentError(ValueError, AssertionError):
    """Bad input to an RTMDet-Ins head (an AssertionError in mmdetection)."""


@MODELS.register_module()
class RTMDetInsHead(RTMDetHead):
    """RTMDet head with a kernel tower (``kernel_convs``, ``rtm_kernel``) and a prototype
    branch (``mask_head``).

    Unlike :class:`RTMDetHead`, distances are ``scale(rtm_reg(x)) * stride`` (no ``exp``).

    Args:
        num_prototypes (int): Prototype maps of ``mask_head``. Defaults to 8.
        dyconv_channels (int): Hidden channels of the dynamic convs. Defaults to 8.
        num_dyconvs (int): Number of dynamic conv layers. Defaults to 3.
        mask_loss_stride (int): Stride at which masks enter the loss: the stride-8 logits are
            upsampled to it and the gt masks sampled at it. Defaults to 4.
        loss_mask (dict): Mask loss. Defaults to DiceLoss(loss_weight=2.0, eps=5e-6).
        *args, **kwargs: :class:`RTMDetHead`'s (``num_classes``, ``in_channels``, ...).
    """

    def __init__(self,
                 *args,
                 num_prototypes: int = 8,
                 dyconv_channels: int = 8,
                 num_dyconvs: int = 3,
                 mask_loss_stride: int = 4,
                 loss_mask: ConfigType = dict(
                     type='DiceLoss', loss_weight=2.0, eps=5e-6, reduction='mean'),
                 **kwargs) -> None:
        # Read by _init_layers, which the base constructor calls.
        self.num_prototypes = num_prototypes
        self.num_dyconvs = num_dyconvs
        self.dyconv_channels = dyconv_channels
        self.mask_loss_stride = mask_loss_stride
        super().__init__(*args, **kwargs)
        self.loss_mask = MODELS.build(loss_mask)

    def _init_dynamic_params(self) -> None:
        self.weight_nums, self.bias_nums = dynamic_conv_param_nums(
            self.num_prototypes, self.dyconv_channels, self.num_dyconvs)
        self.num_gen_params = sum(self.weight_nums) + sum(self.bias_nums)

    def _mask_feat_module(self) -> MaskFeatModule:
        # Four convs whatever ``stacked_convs`` is, as in mmdetection.
        return MaskFeatModule(in_channels=self.in_channels, feat_channels=self.feat_channels,
                              stacked_convs=4, num_levels=len(self.prior_generator.strides),
                              num_prototypes=self.num_prototypes, act_cfg=self.act_cfg,
                              norm_cfg=self.norm_cfg)

    def _init_layers(self) -> None:
        """RTMDet's layers, then ``kernel_convs``, ``rtm_kernel`` and ``mask_head``."""
        super()._init_layers()
        self._init_dynamic_params()
        self.kernel_convs = nn.ModuleList(
            self._tower_conv(self.in_channels if i == 0 else self.feat_channels)
            for i in range(self.stacked_convs))
        self.rtm_kernel = self._pred_conv(self.num_gen_params)
        self.mask_head = self._mask_feat_module()

    def _level_layers(self, level: int) -> tuple:
        """(cls_convs, reg_convs, kernel_convs, rtm_cls, rtm_reg, rtm_kernel, rtm_obj or None)
        of a level; shared by all levels here."""
        return (self.cls_convs, self.reg_convs, self.kernel_convs, self.rtm_cls, self.rtm_reg,
                self.rtm_kernel, self.rtm_obj if self.with_objectness else None)

    def _distances(self, reg_out: Tensor, level: int, stride: int) -> Tensor:
        """Box distances in pixels from the raw ``rtm_reg`` output of a level."""
        return self.scales[level](reg_out) * stride

    def forward(self, feats: Tuple[Tensor, ...]) -> tuple:
        """Predict every level, and the prototypes.

        Args:
            feats (tuple[Tensor]): Neck levels, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: ``cls_scores`` per level [B, num_classes, H_l, W_l] (logits),
            ``bbox_preds`` per level [B, 4, H_l, W_l] ((left, top, right, bottom) distances
            in pixels), ``kernel_preds`` per level [B, num_gen_params, H_l, W_l] and
            ``mask_feat`` [B, num_prototypes, H_0, W_0].
        """
        mask_feat = self.mask_head(feats)  # [B, P, H_0, W_0]
        cls_scores, bbox_preds, kernel_preds = [], [], []
        for level, (x, stride) in enumerate(zip(feats, self.prior_generator.strides)):
            (cls_convs, reg_convs, kernel_convs, rtm_cls, rtm_reg, rtm_kernel,
             rtm_obj) = self._level_layers(level)
            cls_feat, reg_feat, kernel_feat = x, x, x
            for conv in cls_convs:
                cls_feat = conv(cls_feat)
            cls_score = rtm_cls(cls_feat)  # [B, num_classes, H, W]
            for conv in kernel_convs:
                kernel_feat = conv(kernel_feat)
            kernel_preds.append(rtm_kernel(kernel_feat))  # [B, num_gen_params, H, W]
            for conv in reg_convs:
                reg_feat = conv(reg_feat)
            if rtm_obj is not None:
                cls_score = inverse_sigmoid(sigmoid_geometric_mean(cls_score, rtm_obj(reg_feat)))
            cls_scores.append(cls_score)
            bbox_preds.append(self._distances(rtm_reg(reg_feat), level, stride[0]))
        return tuple(cls_scores), tuple(bbox_preds), tuple(kernel_preds), mask_feat

    def parse_dynamic_params(self, flatten_kernels: Tensor) -> Tuple[List[Tensor], List[Tensor]]:
        """Split [N, num_gen_params] kernels into grouped-conv weights and biases per layer."""
        return split_dynamic_params(flatten_kernels, self.weight_nums, self.bias_nums,
                                    self.dyconv_channels)

    def _mask_predict_by_feat_single(self, mask_feat: Tensor, kernels: Tensor,
                                     priors: Tensor) -> Tensor:
        """Mask logits [N, H, W] on the prototype grid of one image.

        Args:
            mask_feat (Tensor): Prototypes [P, H, W].
            kernels (Tensor): The instances' kernels [N, num_gen_params].
            priors (Tensor): Their priors [N, 4] as (x, y, stride_w, stride_h).
        """
        num_inst = priors.shape[0]
        height, width = mask_feat.shape[-2:]
        if num_inst < 1:
            return mask_feat.new_empty((0, height, width))
        # The prototype grid is the first level's grid of priors.
        points = self.prior_generator.single_level_grid_priors(
            (height, width), level_idx=0, device=mask_feat.device)  # [H*W, 2]
        coords = relative_coordinates(priors, points, height, width)  # [N, 2, H, W]
        mask_inputs = torch.cat([coords, mask_feat.repeat(num_inst, 1, 1, 1)], dim=1)
        return dynamic_mask_convs(mask_inputs, *self.parse_dynamic_params(kernels))

    # ------------------------------------------------------------------ predictions

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        kernel_preds: List[Tensor],
                        mask_feat: Tensor,
                        score_factors: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Detections with masks, per image.

        Args:
            cls_scores, bbox_preds, kernel_preds, mask_feat: :meth:`forward`'s outputs.
            score_factors (list[Tensor], optional): Per level [B, 1, H_l, W_l] logits whose
                sigmoid multiplies the scores (None in RTMDet-Ins).
            batch_img_metas (list[dict]): ``img_shape``, ``ori_shape``, ``scale_factor``.
            cfg (dict, optional): ``nms_pre``, ``score_thr``, ``min_bbox_size``, ``nms``,
                ``max_per_img``, ``mask_thr_binary``; ``test_cfg`` when None.
            rescale (bool): Map boxes and masks back to the original image.
            with_nms (bool): Must be True (as in mmdetection).

        Returns:
            list[InstanceData]: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K], ``masks``
            bool [K, H, W] (``ori_shape`` with ``rescale``, else the padded input size,
            8 x the prototype grid), and the ``priors`` and ``kernels`` they came from.
        """
        if len(cls_scores) != len(bbox_preds):
            raise RTMDetInsArgumentError(f'cls_scores has {len(cls_scores)} levels but '
                                         f'bbox_preds has {len(bbox_preds)}')
        mlvl_priors = self.prior_generator.grid_priors(
            [score.shape[-2:] for score in cls_scores], dtype=cls_scores[0].dtype,
            device=cls_scores[0].device, with_stride=True)  # per level [H_l * W_l, 4]
        result_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            factors = (select_single_mlvl(score_factors, img_id)
                       if score_factors is not None else [None] * len(cls_scores))
            result_list.append(self._predict_by_feat_single(
                select_single_mlvl(cls_scores, img_id), select_single_mlvl(bbox_preds, img_id),
                select_single_mlvl(kernel_preds, img_id), mask_feat[img_id], factors,
                mlvl_priors, img_meta, cfg, rescale=rescale, with_nms=with_nms))
        return result_list

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                kernel_pred_list: List[Tensor],
                                mask_feat: Tensor,
                                score_factor_list: List[Optional[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: OptConfigType,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """One image: per-level score filter and top-k, decoding, then
        :meth:`_bbox_mask_post_process`; inputs as :meth:`predict_by_feat`'s, one image."""
        cfg = copy.deepcopy(self.test_cfg if cfg is None else cfg)
        kept = dict(bbox_pred=[], priors=[], kernel_pred=[], scores=[], labels=[], factors=[])
        for cls_score, bbox_pred, kernel_pred, score_factor, priors in zip(
                cls_score_list, bbox_pred_list, kernel_pred_list, score_factor_list,
                mlvl_priors):
            cls_score = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
            if self.use_sigmoid_cls:
                scores = cls_score.sigmoid()  # [H*W, num_classes]
            else:
                scores = cls_score.softmax(-1)[:, :-1]  # drop the background column
            candidates = dict(
                bbox_pred=bbox_pred.permute(1, 2, 0).reshape(-1, self.bbox_coder.encode_size),
                priors=priors,
                kernel_pred=kernel_pred.permute(1, 2, 0).reshape(-1, self.num_gen_params))
            scores, labels, keep_idxs, filtered = filter_scores_and_topk(
                scores, cfg.get('score_thr', 0), cfg.get('nms_pre', -1), candidates)
            for key, value in filtered.items():
                kept[key].append(value)
            kept['scores'].append(scores)
            kept['labels'].append(labels)
            if score_factor is not None:
                kept['factors'].append(
                    score_factor.permute(1, 2, 0).reshape(-1).sigmoid()[keep_idxs])

        priors = torch.cat(kept['priors'])  # [K, 4] as (x, y, stride_w, stride_h)
        results = InstanceData()
        results.bboxes = self.bbox_coder.decode(priors[..., :2], torch.cat(kept['bbox_pred']),
                                                max_shape=img_meta['img_shape'])
        results.priors = priors
        results.scores = torch.cat(kept['scores'])
        results.labels = torch.cat(kept['labels'])
        results.kernels = torch.cat(kept['kernel_pred'])
        if kept['factors']:
            results.score_factors = torch.cat(kept['factors'])
        return self._bbox_mask_post_process(results, mask_feat, cfg, rescale=rescale,
                                            with_nms=with_nms, img_meta=img_meta)

    def _bbox_mask_post_process(self,
                                results: InstanceData,
                                mask_feat: Tensor,
                                cfg: ConfigType,
                                rescale: bool = False,
                                with_nms: bool = True,
                                img_meta: Optional[dict] = None) -> InstanceData:
        """Rescale boxes, drop tiny ones, NMS, keep ``max_per_img``, then the kept boxes'
        masks (``mask_feat`` [P, H_0, W_0] are the image's prototypes)."""
        if rescale:
            if img_meta.get('scale_factor') is None:
                raise RTMDetInsArgumentError("rescale=True needs 'scale_factor' in img_meta")
            results.bboxes = scale_boxes(results.bboxes,
                                         [1 / s for s in img_meta['scale_factor']])
        if hasattr(results, 'score_factors'):
            results.scores = results.scores * results.pop('score_factors')
        if cfg.get('min_bbox_size', -1) >= 0:
            w, h = get_box_wh(results.bboxes)
            valid = (w > cfg['min_bbox_size']) & (h > cfg['min_bbox_size'])
            if not valid.all():
                results = results[valid]
        if not with_nms:
            raise RTMDetInsArgumentError('with_nms must be True for RTMDet-Ins')

        if results.bboxes.numel() == 0:
            h, w = img_meta['ori_shape'][:2] if rescale else img_meta['img_shape'][:2]
            results.masks = torch.zeros((0, h, w), dtype=torch.bool,
                                        device=results.bboxes.device)
            return results
        det_bboxes, keep_idxs = batched_nms(get_box_tensor(results.bboxes), results.scores,
                                            results.labels, cfg['nms'])
        results = results[keep_idxs]
        results.scores = det_bboxes[:, -1]  # NMS variants such as soft-NMS rescore
        results = results[:cfg['max_per_img']]
        mask_logits = self._mask_predict_by_feat_single(mask_feat, results.kernels,
                                                        results.priors)  # [K, H_0, W_0]
        results.masks = mask_logits_to_image(mask_logits, self.prior_generator.strides[0][0],
                                             cfg['mask_thr_binary'], img_meta, rescale)
        return results

    # ------------------------------------------------------------------ training

    def loss_mask_by_feat(self, mask_feats: Tensor, flatten_kernels: Tensor,
                          sampling_results_list: list,
                          batch_gt_instances: InstanceList) -> Tensor:
        """Dice loss of the positive priors' masks against their gts' masks.

        The stride-8 logits are upsampled (bilinear) by ``8 // mask_loss_stride``; the gt
        masks are sampled every ``mask_loss_stride`` pixels from ``mask_loss_stride // 2``.
        The loss is averaged over the positives of the batch (over all ranks).

        Args:
            mask_feats (Tensor): Prototypes [B, P, H, W].
            flatten_kernels (Tensor): Kernels of all priors [B, num_priors, num_gen_params].
            sampling_results_list (list[SamplingResult]): Positives of each image.
            batch_gt_instances (list[InstanceData]): ``masks`` bool [G, H_img, W_img].

        Returns:
            Tensor: Scalar loss; zero (attached to ``mask_feats``) without positives.
        """
        pos_mask_logits, pos_gt_masks = [], []
        for mask_feat, kernels, sampling_results, gt_instances in zip(
                mask_feats, flatten_kernels, sampling_results_list, batch_gt_instances):
            pos_mask_logits.append(self._mask_predict_by_feat_single(
                mask_feat, kernels[sampling_results.pos_inds], sampling_results.pos_priors))
            gt_masks = gt_instances.masks
            if gt_masks.numel() > 0:
                gt_masks = gt_masks[sampling_results.pos_assigned_gt_inds, :]
            pos_gt_masks.append(gt_masks)
        pos_gt_masks = torch.cat(pos_gt_masks, 0)
        pos_mask_logits = torch.cat(pos_mask_logits, 0)  # [num_pos, H, W]

        num_pos = reduce_mean(mask_feats.new_tensor([pos_mask_logits.shape[0]]))
        num_pos = num_pos.clamp_(min=1).item()
        if pos_mask_logits.shape[0] == 0:
            return mask_feats.sum() * 0
        scale = self.prior_generator.strides[0][0] // self.mask_loss_stride
        pos_mask_logits = F.interpolate(pos_mask_logits.unsqueeze(0), scale_factor=scale,
                                        mode='bilinear', align_corners=False).squeeze(0)
        start, step = self.mask_loss_stride // 2, self.mask_loss_stride
        pos_gt_masks = pos_gt_masks[:, start::step, start::step]
        return self.loss_mask(pos_mask_logits, pos_gt_masks, weight=None, avg_factor=num_pos)

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     kernel_preds: List[Tensor],
                     mask_feat: Tensor,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """:class:`RTMDetHead`'s losses (the assigner centers the gts on their masks' center
        of mass), plus :meth:`loss_mask_by_feat` on the positives.

        Args:
            cls_scores, bbox_preds, kernel_preds, mask_feat: :meth:`forward`'s outputs.
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels`` and ``masks``
                (BitmapMasks, PolygonMasks or a [G, H, W] tensor) at the padded input size.
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData], optional): Passed on.

        Returns:
            dict: ``loss_cls`` and ``loss_bbox`` (one per level) and ``loss_mask``.
        """
        # mmdetection converts the gt masks in place; a converted copy gives the same numbers
        # and leaves the data samples as they were.
        batch_gt_instances = [
            _with_tensor_masks(gt, cls_scores[0].device) for gt in batch_gt_instances
        ]
        losses, sampling_results_list = self._bbox_losses_and_targets(
            cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
            batch_gt_instances_ignore)
        flatten_kernels = torch.cat([
            kernel.permute(0, 2, 3, 1).reshape(len(batch_img_metas), -1, self.num_gen_params)
            for kernel in kernel_preds
        ], 1)  # [B, num_priors, num_gen_params]
        losses['loss_mask'] = self.loss_mask_by_feat(mask_feat, flatten_kernels,
                                                     sampling_results_list, batch_gt_instances)
        return losses


def _with_tensor_masks(gt_instances: InstanceData, device: torch.device) -> InstanceData:
    """A shallow copy of ``gt_instances`` whose ``masks`` are a bool tensor [G, H, W]."""
    masks = gt_instances.masks
    if hasattr(masks, 'to_tensor'):  # BitmapMasks / PolygonMasks
        masks = masks.to_tensor(dtype=torch.bool, device=device)
    else:
        masks = torch.as_tensor(masks, device=device).bool()
    return gt_instances.new(**{**dict(gt_instances.items()), 'masks': masks})
