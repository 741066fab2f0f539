"""CondInst box head: FCOS plus, at every point, the parameters of an instance's mask convs.

:class:`CondInstBboxHead` is :class:`FCOSHead` with a 3x3 ``controller`` conv on the
regression tower predicting ``num_params`` numbers per point (169 for three 8-channel 1x1
layers over 8 mask features + 2 coordinates). It differs from FCOS in three places:

- ``forward`` returns a fourth output per level, ``param_preds`` [B, num_params, H, W];
- with gt masks, center sampling puts the central square around each mask's centroid
  (its first moments) instead of the box centre;
- ``loss_by_feat`` keeps, per image, which points are positives and of which gt
  (``get_positive_infos``): :class:`CondInstMaskHead` trains the masks of exactly those;
  ``predict_by_feat`` keeps each detection's parameters, point and stride so that the mask
  head can draw its mask.

The mask head (:class:`CondInstMaskHead`, :class:`MaskFeatModule`) lives in
``condinst_mask_head.py`` and is importable from here, where mmdetection keeps it.
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
from mmcv.cnn import Scale
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, OptInstanceList
from ..utils import filter_scores_and_topk, select_single_mlvl
from .anchor_free_head import AnchorFreeHead, AnchorFreeHeadArgumentError
from .condinst_mask_head import CondInstMaskHead, MaskFeatModule
from .fcos_head import FCOSHead

__all__ = ['CondInstBboxHead', 'CondInstMaskHead', 'MaskFeatModule']


@MODELS.register_module()
class CondInstBboxHead(FCOSHead):
    """FCOS head with a ``controller`` conv predicting dynamic mask parameters.

    State dict: FCOSHead's plus ``controller`` (3x3, ``feat_channels`` -> ``num_params``,
    with bias).

    Args:
        num_params (int): Dynamic parameters per instance; must equal the mask head's
            ``num_params``. Defaults to 169.
        *args, **kwargs: :class:`FCOSHead`'s.
    """

    def __init__(self, *args, num_params: int = 169, **kwargs) -> None:
        self.num_params = num_params  # read by _init_layers
        # What the last loss_by_feat saw, for get_positive_infos (mmdetection keeps this
        # dict on every dense head).
        self._raw_positive_infos = dict()
        super().__init__(*args, **kwargs)

    def _init_layers(self) -> None:
        """FCOS's layers and ``controller``."""
        super()._init_layers()
        self.controller = nn.Conv2d(self.feat_channels, self.num_params, 3, padding=1)

    # ------------------------------------------------------------------ forward

    def forward_single(self, x: Tensor, scale: Scale,
                       stride: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """FCOS's outputs of one level plus the ``controller``'s parameters (so ``forward``
        returns per level ``cls_scores``, ``bbox_preds``, ``centernesses`` and
        ``param_preds``).

        Returns:
            tuple: cls_score [B, num_classes, H, W], bbox_pred [B, 4, H, W], centerness
            [B, 1, H, W] and param_pred [B, num_params, H, W].
        """
        # AnchorFreeHead's towers, as FCOSHead.forward_single hides the regression features.
        cls_score, bbox_pred, cls_feat, reg_feat = AnchorFreeHead.forward_single(self, x)
        bbox_pred, centerness = self._distances_and_centerness(bbox_pred, cls_feat, reg_feat,
                                                               scale, stride)
        param_pred = self.controller(reg_feat)  # [B, num_params, H, W]
        return cls_score, bbox_pred, centerness, param_pred

    # ------------------------------------------------------------------ training

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     centernesses: List[Tensor],
                     param_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """FCOS's three losses; also records the positives for :meth:`get_positive_infos`.

        Args:
            cls_scores, bbox_preds, centernesses, param_preds (list[Tensor]): ``forward``'s
                outputs.
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels`` and optionally
                ``masks`` (their centroids centre the sampling squares).
            batch_img_metas (list[dict]): Unused.
            batch_gt_instances_ignore: Unused (as in mmdetection).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_centerness``.
        """
        # FCOS's get_targets calls ours, which records the positives.
        losses = super().loss_by_feat(cls_scores, bbox_preds, centernesses, batch_gt_instances,
                                      batch_img_metas, batch_gt_instances_ignore)
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        # Rows (x, y, stride_w, stride_h): the mask head needs each point's stride.
        points_strides = self.prior_generator.grid_priors(
            featmap_sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device,
            with_stride=True)
        self._raw_positive_infos.update(
            cls_scores=cls_scores, centernesses=centernesses, param_preds=param_preds,
            all_level_points=[p[:, :2] for p in points_strides],
            all_level_strides=[p[:, 2] for p in points_strides])
        return losses

    def get_targets(self, points: List[Tensor], batch_gt_instances: InstanceList
                    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor], List[Tensor]]:
        """FCOS's targets per level, plus each image's positives (also recorded for
        :meth:`get_positive_infos`).

        Args:
            points (list[Tensor]): Points of each level [N_l, 2].
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels`` (``masks``).

        Returns:
            tuple:

            - labels (list[Tensor]): Per level [B * N_l] (``num_classes`` background).
            - bbox_targets (list[Tensor]): Per level [B * N_l, 4] (in strides with
              ``norm_on_bbox``).
            - pos_inds_list (list[Tensor]): Per image, indices of the positives among all
              its points (levels concatenated) [P_i].
            - pos_gt_inds_list (list[Tensor]): Per image, their gt indices [P_i].
        """
        labels, bbox_targets, pos_inds_list, pos_gt_inds_list = super().get_targets(
            points, batch_gt_instances)
        self._raw_positive_infos.update(pos_inds_list=pos_inds_list,
                                        pos_gt_inds_list=pos_gt_inds_list)
        return labels, bbox_targets, pos_inds_list, pos_gt_inds_list

    def _get_targets_single(self, gt_instances: InstanceData, points: Tensor,
                            regress_ranges: Tensor, num_points_per_lvl: List[int]
                            ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """FCOS's assignment for one image, plus its positives.

        Returns:
            tuple: labels [N], bbox_targets [N, 4] (pixels), pos_inds [P] and pos_gt_inds [P].
        """
        labels, bbox_targets, gt_inds = self._assign_points(gt_instances, points,
                                                            regress_ranges, num_points_per_lvl)
        is_pos = (labels >= 0) & (labels < self.num_classes)
        return labels, bbox_targets, is_pos.nonzero().reshape(-1), gt_inds[is_pos]

    def _sampling_centers(self, gt_instances: InstanceData,
                          gt_bboxes: Tensor) -> Tuple[Tensor, Tensor]:
        """The (x, y) centroids [G] of the gt masks (from pixel indices; an empty mask gives
        0), or FCOS's box centres without ``masks``."""
        gt_masks = gt_instances.get('masks', None)
        if gt_masks is None:
            return super()._sampling_centers(gt_instances, gt_bboxes)
        device = gt_bboxes.device
        masks = gt_masks.to_tensor(dtype=torch.bool, device=device)  # [G, H, W]
        ys = torch.arange(0, gt_masks.height, dtype=torch.float32, device=device)
        xs = torch.arange(0, gt_masks.width, dtype=torch.float32, device=device)
        m00 = masks.sum(dim=-1).sum(dim=-1).clamp(min=1e-6)
        m10 = (masks * xs).sum(dim=-1).sum(dim=-1)
        m01 = (masks * ys[:, None]).sum(dim=-1).sum(dim=-1)
        return m10 / m00, m01 / m00

    def get_positive_infos(self) -> InstanceList:
        """The positives of the last ``loss_by_feat``, for the mask head.

        Returns:
            list[InstanceData]: Per image ``points`` [P, 2], ``strides`` [P], ``scores``
            [P, num_classes] and ``centernesses`` [P, 1] (logits), ``param_preds``
            [P, num_params], ``pos_assigned_gt_inds`` [P] and ``pos_inds`` [P].
        """
        if len(self._raw_positive_infos) == 0:
            raise AnchorFreeHeadArgumentError(
                'get_positive_infos needs a loss_by_feat call first')
        raw = self._raw_positive_infos
        num_imgs = len(raw['pos_gt_inds_list'])

        def per_image(maps: List[Tensor], channels: int) -> Tensor:
            # [B, C, H_l, W_l] per level -> [B, sum_l H_l * W_l, C]
            return torch.cat([m.permute(0, 2, 3, 1).reshape(num_imgs, -1, channels)
                              for m in maps], dim=1)

        cls_scores = per_image(raw['cls_scores'], self.num_classes)
        centernesses = per_image(raw['centernesses'], 1)
        param_preds = per_image(raw['param_preds'], self.num_params)
        all_points = torch.cat(raw['all_level_points'])  # [N, 2], the same for every image
        all_strides = torch.cat(raw['all_level_strides'])  # [N]

        positive_infos = []
        for i, (pos_gt_inds, pos_inds) in enumerate(zip(raw['pos_gt_inds_list'],
                                                        raw['pos_inds_list'])):
            info = InstanceData()
            info.points = all_points[pos_inds]
            info.strides = all_strides[pos_inds]
            info.scores = cls_scores[i][pos_inds]
            info.centernesses = centernesses[i][pos_inds]
            info.param_preds = param_preds[i][pos_inds]
            info.pos_assigned_gt_inds = pos_gt_inds
            info.pos_inds = pos_inds
            positive_infos.append(info)
        return positive_infos

    # ------------------------------------------------------------------ inference

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: Optional[List[Tensor]] = None,
                        param_preds: Optional[List[Tensor]] = None,
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: Optional[ConfigType] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Detections per image, each carrying its ``param_preds`` [K, num_params],
        ``points`` [K, 2] and ``strides`` [K] for the mask head.

        Args:
            cls_scores, bbox_preds (list[Tensor]): Per level [B, C, H_l, W_l] / [B, 4, ...].
            score_factors (list[Tensor], optional): Centerness logits per level.
            param_preds (list[Tensor]): Per level [B, num_params, H_l, W_l].
            batch_img_metas (list[dict]): ``img_shape`` (and ``scale_factor``).
            cfg (dict, optional): Post-processing config; ``test_cfg`` when None.
            rescale (bool): Boxes in original-image pixels.
            with_nms (bool): Run NMS.

        Returns:
            list[InstanceData]: ``bboxes``, ``scores``, ``labels``, ``param_preds``,
            ``points``, ``strides``.
        """
        if len(cls_scores) != len(bbox_preds):
            raise AnchorFreeHeadArgumentError(
                f'cls_scores has {len(cls_scores)} levels but bbox_preds has '
                f'{len(bbox_preds)}')
        if score_factors is not None and len(score_factors) != len(cls_scores):
            raise AnchorFreeHeadArgumentError(
                f'score_factors has {len(score_factors)} levels, expected {len(cls_scores)}')
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        points_strides = self.prior_generator.grid_priors(
            featmap_sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device,
            with_stride=True)
        points = [p[:, :2] for p in points_strides]
        strides = [p[:, 2] for p in points_strides]

        result_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            score_factor_list = (select_single_mlvl(score_factors, img_id, detach=True)
                                 if score_factors is not None else [None] * len(cls_scores))
            result_list.append(self._predict_by_feat_single(
                cls_score_list=select_single_mlvl(cls_scores, img_id, detach=True),
                bbox_pred_list=select_single_mlvl(bbox_preds, img_id, detach=True),
                score_factor_list=score_factor_list,
                param_pred_list=select_single_mlvl(param_preds, img_id, detach=True),
                mlvl_points=points, mlvl_strides=strides, img_meta=img_meta, cfg=cfg,
                rescale=rescale, with_nms=with_nms))
        return result_list

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Optional[Tensor]],
                                param_pred_list: List[Tensor],
                                mlvl_points: List[Tensor],
                                mlvl_strides: List[Tensor],
                                img_meta: dict,
                                cfg: Optional[ConfigType],
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """One image: per level score threshold and top ``nms_pre``, decode, then scores
        times sigmoid(centerness), NMS and ``max_per_img``.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K], ``param_preds``
            [K, num_params], ``points`` [K, 2], ``strides`` [K].
        """
        cfg = copy.deepcopy(self._resolve_cfg(cfg))
        nms_pre = cfg.get('nms_pre', -1)
        score_thr = cfg.get('score_thr', 0)
        kept = dict(bbox_pred=[], param_pred=[], points=[], strides=[], scores=[],
                    labels=[], factors=[])
        for cls_score, bbox_pred, score_factor, param_pred, level_points, level_strides in zip(
                cls_score_list, bbox_pred_list, score_factor_list, param_pred_list,
                mlvl_points, mlvl_strides):
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, self.bbox_coder.encode_size)
            cls_score = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
            scores = cls_score.sigmoid() if self.use_sigmoid_cls else \
                cls_score.softmax(-1)[:, :-1]
            param_pred = param_pred.permute(1, 2, 0).reshape(-1, self.num_params)
            scores, labels, keep_idxs, filtered = filter_scores_and_topk(
                scores, score_thr, nms_pre,
                dict(bbox_pred=bbox_pred, param_pred=param_pred, points=level_points,
                     strides=level_strides))
            for key in ('bbox_pred', 'param_pred', 'points', 'strides'):
                kept[key].append(filtered[key])
            kept['scores'].append(scores)
            kept['labels'].append(labels)
            if score_factor is not None:
                kept['factors'].append(score_factor.permute(1, 2, 0).reshape(-1)
                                       .sigmoid()[keep_idxs])

        results = InstanceData()
        priors = torch.cat(kept['points'])
        results.bboxes = get_box_tensor(self.bbox_coder.decode(
            priors, torch.cat(kept['bbox_pred']), max_shape=img_meta['img_shape']))
        results.scores = torch.cat(kept['scores'])
        if kept['factors']:
            results.scores = results.scores * torch.cat(kept['factors'])
        results.labels = torch.cat(kept['labels'])
        results.param_preds = torch.cat(kept['param_pred'])
        results.points = priors
        results.strides = torch.cat(kept['strides'])
        return self._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms,
                                       img_meta=img_meta)
