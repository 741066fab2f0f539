"""SOLO: segmenting objects by locations.

The image is cut into an ``S x S`` grid per level. The grid cell holding an object's centre
(and its neighbours within a "centre region") predicts the object's class, and mask channel
``i * S + j`` of that level predicts the object's mask::

    forward: 5 neck maps -> per level: mask logits [B, S_l**2, H_l, W_l] (stride 4 or more,
             the tower's input carries 2 coordinate channels) and class logits [B, C, S_l, S_l]
    loss:    gts whose sqrt(box area) falls in a level's scale range are positives of its
             centre-region cells; loss_mask: Dice of the positive cells' masks; loss_cls:
             focal loss over all cells
    predict: cells scoring above score_thr (local maxima only) -> masks > mask_thr ->
             maskness-weighted scores -> Matrix NMS -> masks at the original image size

The targets (which cells learn which gt) are :class:`~.solo_targets.SOLOTargetsMixin`, in
solo_targets.py. The grid geometry (centre-region cells, gt masks at the grid stride) lives in
:mod:`mmdet_lite.models.layers.solo_grid`, shared with the decoupled heads and SOLOv2; the
coordinate maps and mask centroids in :mod:`mmdet_lite.models.utils`.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, InstanceList, MultiConfig, OptConfigType
from ..layers.matrix_nms import mask_matrix_nms
from ..layers.solo_grid import keep_local_maxima
from ..utils import generate_coordinate
from .base_mask_head import BaseMaskHead
from .solo_targets import SOLOTargetsMixin


class SOLOArgumentError(ValueError, AssertionError):
    """Bad argument to a SOLO head (an AssertionError in mmdetection)."""


@MODELS.register_module()
class SOLOHead(SOLOTargetsMixin, BaseMaskHead):
    """SOLO mask head (`SOLO <https://arxiv.org/abs/1912.04488>`_); targets from
    :class:`~.solo_targets.SOLOTargetsMixin`.

    Args:
        num_classes (int): Object classes (background excluded).
        in_channels (int): Channels of each neck level.
        feat_channels (int): Channels of the towers. Defaults to 256.
        stacked_convs (int): Convs per tower (mask and class). Defaults to 4.
        strides (tuple): Stride of each level's features. Defaults to (4, 8, 16, 32, 64).
        scale_ranges (tuple[tuple[int, int]]): Per level, the range of ``sqrt(w * h)`` of
            the gt boxes it learns (inclusive). Defaults to ((8, 32), (16, 64), (32, 128),
            (64, 256), (128, 512)).
        pos_scale (float): Centre region half size, relative to half the box size.
            Defaults to 0.2.
        num_grids (list[int]): S of each level. Defaults to [40, 36, 24, 16, 12].
        cls_down_index (int): Class-tower conv before which the features are resized to
            S x S. Defaults to 0.
        loss_mask (dict): Mask loss. Defaults to DiceLoss(use_sigmoid=True, loss_weight=3.0).
        loss_cls (dict): Classification loss. Defaults to FocalLoss(gamma=2.0, alpha=0.25).
        norm_cfg (dict): Norm of the tower convs. Defaults to GN with 32 groups.
        train_cfg (dict, optional): Unused by SOLO; kept for the detector.
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``mask_thr``, ``filter_thr``,
            ``kernel``, ``sigma``, ``max_per_img``.
        init_cfg (dict | list[dict]): Normal(0.01) convs; mask and class predictors with a
            prior-probability 0.01 bias.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        stacked_convs: int = 4,
        strides: tuple = (4, 8, 16, 32, 64),
        scale_ranges: tuple = ((8, 32), (16, 64), (32, 128), (64, 256), (128, 512)),
        pos_scale: float = 0.2,
        num_grids: list = [40, 36, 24, 16, 12],
        cls_down_index: int = 0,
        loss_mask: ConfigType = dict(type='DiceLoss', use_sigmoid=True, loss_weight=3.0),
        loss_cls: ConfigType = dict(
            type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        norm_cfg: ConfigType = dict(type='GN', num_groups=32, requires_grad=True),
        train_cfg: OptConfigType = None,
        test_cfg: OptConfigType = None,
        init_cfg: MultiConfig = [
            dict(type='Normal', layer='Conv2d', std=0.01),
            dict(type='Normal', std=0.01, bias_prob=0.01,
                 override=dict(name='conv_mask_list')),
            dict(type='Normal', std=0.01, bias_prob=0.01, override=dict(name='conv_cls'))
        ]
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.cls_out_channels = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = strides
        self.num_grids = num_grids
        self.num_levels = len(strides)
        if not self.num_levels == len(scale_ranges) == len(num_grids):
            raise SOLOArgumentError(
                f'strides, scale_ranges and num_grids need one entry per level, got '
                f'{len(strides)}, {len(scale_ranges)} and {len(num_grids)}')
        self.scale_ranges = scale_ranges
        self.pos_scale = pos_scale
        self.cls_down_index = cls_down_index
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_mask = MODELS.build(loss_mask)
        self.norm_cfg = norm_cfg
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self._init_layers()

    def _init_layers(self) -> None:
        """Mask tower (its first conv reads 2 extra coordinate channels), class tower, a
        1x1 mask predictor per level and the 3x3 class predictor."""
        self.mask_convs = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            mask_in = self.in_channels + 2 if i == 0 else self.feat_channels
            cls_in = self.in_channels if i == 0 else self.feat_channels
            self.mask_convs.append(ConvModule(mask_in, self.feat_channels, 3, stride=1,
                                              padding=1, norm_cfg=self.norm_cfg))
            self.cls_convs.append(ConvModule(cls_in, self.feat_channels, 3, stride=1,
                                             padding=1, norm_cfg=self.norm_cfg))
        self.conv_mask_list = nn.ModuleList(
            nn.Conv2d(self.feat_channels, num_grid**2, 1) for num_grid in self.num_grids)
        self.conv_cls = nn.Conv2d(self.feat_channels, self.cls_out_channels, 3, padding=1)

    # ------------------------------------------------------------------------- forward
    def resize_feats(self, x: Sequence[Tensor]) -> List[Tensor]:
        """Halve the first level and bring the last to the size of the one before.

        With the COCO configs' P2-P6 this gives strides 8, 8, 16, 32, 32.
        """
        out = []
        for i, feat in enumerate(x):
            if i == 0:
                out.append(F.interpolate(feat, scale_factor=0.5, mode='bilinear'))
            elif i == len(x) - 1:
                out.append(F.interpolate(feat, size=x[i - 1].shape[-2:], mode='bilinear'))
            else:
                out.append(feat)
        return out

    def forward(self, x: Tuple[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Mask and class predictions of every level.

        Args:
            x (tuple[Tensor]): ``num_levels`` neck maps, each [B, C, H_l, W_l].

        Returns:
            tuple:

            - mlvl_mask_preds (list[Tensor]): Per level [B, S_l**2, 2 H_l', 2 W_l'] (H_l' the
              resized level); in eval mode sigmoid probabilities, all at level 0's size.
            - mlvl_cls_preds (list[Tensor]): Per level [B, C, S_l, S_l]; in eval mode
              sigmoid scores, zeroed except at 2 x 2 local maxima.
        """
        if len(x) != self.num_levels:
            raise SOLOArgumentError(f'{type(self).__name__} expects {self.num_levels} '
                                    f'feature levels, got {len(x)}')
        feats = self.resize_feats(x)
        mlvl_mask_preds, mlvl_cls_preds = [], []
        for i, feat in enumerate(feats):
            coord = generate_coordinate(feat.size(), feat.device)
            mask_feat = torch.cat([feat, coord], 1)  # [B, C + 2, H, W]
            for mask_conv in self.mask_convs:
                mask_feat = mask_conv(mask_feat)
            mask_feat = F.interpolate(mask_feat, scale_factor=2, mode='bilinear')
            mask_pred = self.conv_mask_list[i](mask_feat)  # [B, S**2, 2H, 2W]

            cls_feat = feat
            for j, cls_conv in enumerate(self.cls_convs):
                if j == self.cls_down_index:
                    cls_feat = F.interpolate(cls_feat, size=self.num_grids[i], mode='bilinear')
                cls_feat = cls_conv(cls_feat)
            cls_pred = self.conv_cls(cls_feat)  # [B, C, S, S]

            if not self.training:
                level0_h, level0_w = feats[0].shape[-2:]
                mask_pred = F.interpolate(mask_pred.sigmoid(), size=(level0_h * 2, level0_w * 2),
                                          mode='bilinear')
                cls_pred = keep_local_maxima(cls_pred.sigmoid())
            mlvl_mask_preds.append(mask_pred)
            mlvl_cls_preds.append(cls_pred)
        return mlvl_mask_preds, mlvl_cls_preds

    # ------------------------------------------------------------------------- loss
    def loss_by_feat(self, mlvl_mask_preds: List[Tensor], mlvl_cls_preds: List[Tensor],
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     **kwargs) -> dict:
        """Dice loss of the positive cells' masks and focal loss of all cells.

        Args:
            mlvl_mask_preds (list[Tensor]): Per level [B, S_l**2, h_l, w_l] logits.
            mlvl_cls_preds (list[Tensor]): Per level [B, C, S_l, S_l] logits.
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels``, ``masks``.
            batch_img_metas (list[dict]): Metas of each image.

        Returns:
            dict[str, Tensor]: ``loss_mask`` (summed over positives, divided by their
            number) and ``loss_cls`` (averaged over positives + 1).
        """
        featmap_sizes = [pred.size()[-2:] for pred in mlvl_mask_preds]
        targets = [self._get_targets_single(gt, featmap_sizes=featmap_sizes)
                   for gt in batch_gt_instances]

        loss_mask, num_pos, flat_labels, flat_cls_preds = [], 0, [], []
        for lvl in range(self.num_levels):
            pos_preds = torch.cat([mlvl_mask_preds[lvl][img_id, pos_masks[lvl]]
                                   for img_id, (_, _, pos_masks) in enumerate(targets)])
            pos_targets = torch.cat([mask_targets[lvl] for mask_targets, _, _ in targets])
            num_pos = num_pos + sum(pos_masks[lvl].sum() for _, _, pos_masks in targets)
            if len(pos_preds) == 0:
                loss_mask.append(pos_preds.sum().unsqueeze(0))  # 0, but keeps the graph
            else:
                loss_mask.append(self.loss_mask(pos_preds, pos_targets,
                                                reduction_override='none'))
            flat_labels.extend(labels[lvl].flatten() for _, labels, _ in targets)
            flat_cls_preds.append(
                mlvl_cls_preds[lvl].permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels))
        loss_mask = torch.cat(loss_mask)
        loss_mask = loss_mask.sum() / num_pos if num_pos > 0 else loss_mask.mean()
        loss_cls = self.loss_cls(torch.cat(flat_cls_preds), torch.cat(flat_labels),
                                 avg_factor=num_pos + 1)
        return dict(loss_mask=loss_mask, loss_cls=loss_cls)

    # ------------------------------------------------------------------------- predict
    def predict_by_feat(self, mlvl_mask_preds: List[Tensor], mlvl_cls_scores: List[Tensor],
                        batch_img_metas: List[dict], **kwargs) -> InstanceList:
        """Instance masks of each image from eval-mode ``forward`` outputs.

        Args:
            mlvl_mask_preds (list[Tensor]): Per level [B, S_l**2, h, w] probabilities.
            mlvl_cls_scores (list[Tensor]): Per level [B, C, S_l, S_l] scores.
            batch_img_metas (list[dict]): ``img_shape`` and ``ori_shape`` of each image.

        Returns:
            list[InstanceData]: ``masks`` bool [K, H_ori, W_ori], ``labels`` [K],
            ``scores`` [K] and ``bboxes`` [K, 4] (all zeros, as mmdetection: SOLO predicts
            no boxes).
        """
        if len(mlvl_mask_preds) != len(mlvl_cls_scores):
            raise SOLOArgumentError('mask and class predictions need the same number of '
                                    f'levels, got {len(mlvl_mask_preds)} and '
                                    f'{len(mlvl_cls_scores)}')
        results_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            cls_scores = torch.cat([  # [sum S_l**2, C], cells row-major per level
                scores[img_id].permute(1, 2, 0).reshape(-1, self.cls_out_channels)
                for scores in mlvl_cls_scores])
            mask_preds = torch.cat([preds[img_id] for preds in mlvl_mask_preds])
            results_list.append(
                self._predict_by_feat_single(cls_scores, mask_preds, img_meta=img_meta))
        return results_list

    def _predict_by_feat_single(self, cls_scores: Tensor, mask_preds: Tensor, img_meta: dict,
                                cfg: OptConfigType = None) -> InstanceData:
        """One image: ``cls_scores`` [N, C] and ``mask_preds`` [N, h, w] of all cells."""
        cfg = self.test_cfg if cfg is None else cfg
        if len(cls_scores) != len(mask_preds):
            raise SOLOArgumentError(f'{len(cls_scores)} cell scores but {len(mask_preds)} '
                                    'mask predictions')
        score_mask = cls_scores > cfg['score_thr']
        cls_scores = cls_scores[score_mask]
        if len(cls_scores) == 0:
            return empty_solo_results(cls_scores, img_meta['ori_shape'][:2])
        inds = score_mask.nonzero()  # [K, 2]: cell, class
        return self._masks_to_results(mask_preds[inds[:, 0]], cls_scores, inds[:, 1],
                                      self._cell_strides(inds[:, 0], cls_scores), img_meta,
                                      cfg, upsample_factor=4)

    def _cell_strides(self, cell_inds: Tensor, like: Tensor) -> Tensor:
        """Stride of the level of each cell index (cells of all levels concatenated)."""
        strides = like.new_ones(sum(n**2 for n in self.num_grids))
        start = 0
        for num_grid, stride in zip(self.num_grids, self.strides):
            strides[start:start + num_grid**2] *= stride
            start += num_grid**2
        return strides[cell_inds]

    def _masks_to_results(self, mask_preds: Tensor, cls_scores: Tensor, cls_labels: Tensor,
                          strides: Tensor, img_meta: dict, cfg: ConfigType,
                          upsample_factor: int) -> InstanceData:
        """Shared SOLO / SOLOv2 post-processing of the candidates above ``score_thr``.

        Masks no larger than their level's stride are dropped, each score is multiplied by
        its mask's mean probability inside the mask ("maskness"), Matrix NMS decays the
        duplicates, and the kept masks are upsampled by ``upsample_factor`` (to the padded
        input), cropped to ``img_shape`` and resized to ``ori_shape``.

        Args:
            mask_preds (Tensor): Probabilities [K, h, w].
            cls_scores (Tensor): Scores [K].
            cls_labels (Tensor): Classes [K].
            strides (Tensor): Level stride of each candidate [K].
            img_meta (dict): ``img_shape`` and ``ori_shape``.
            cfg (dict): ``mask_thr``, ``nms_pre``, ``max_per_img``, ``kernel``, ``sigma``,
                ``filter_thr``.
            upsample_factor (int): Input pixels per mask pixel.
        """
        ori_shape = img_meta['ori_shape'][:2]
        img_h, img_w = img_meta['img_shape'][:2]
        masks = mask_preds > cfg['mask_thr']
        sum_masks = masks.sum((1, 2)).float()
        keep = sum_masks > strides
        if keep.sum() == 0:
            return empty_solo_results(cls_scores, ori_shape)
        masks, mask_preds, sum_masks = masks[keep], mask_preds[keep], sum_masks[keep]
        cls_scores, cls_labels = cls_scores[keep], cls_labels[keep]
        maskness = (mask_preds * masks).sum((1, 2)) / sum_masks
        cls_scores = cls_scores * maskness

        scores, labels, _, keep_inds = mask_matrix_nms(
            masks, cls_labels, cls_scores, mask_area=sum_masks,
            nms_pre=cfg['nms_pre'], max_num=cfg['max_per_img'],
            kernel=cfg['kernel'], sigma=cfg['sigma'],
            filter_thr=cfg['filter_thr'])
        if len(keep_inds) == 0:
            return empty_solo_results(cls_scores, ori_shape)
        mask_preds = mask_preds[keep_inds][None]  # [1, K, h, w]
        upsampled_size = (mask_preds.shape[-2] * upsample_factor,
                          mask_preds.shape[-1] * upsample_factor)
        mask_preds = F.interpolate(mask_preds, size=upsampled_size, mode='bilinear',
                                   align_corners=False)[:, :, :img_h, :img_w]
        mask_preds = F.interpolate(mask_preds, size=ori_shape, mode='bilinear',
                                   align_corners=False)[0]

        results = InstanceData()
        results.masks = mask_preds > cfg['mask_thr']
        results.labels = labels
        results.scores = scores
        # No boxes: mmdetection stores zeros so that box-reading code does not break.
        results.bboxes = scores.new_zeros(len(scores), 4)
        return results


def empty_solo_results(like: Tensor, ori_shape: Tuple[int, int]) -> InstanceData:
    """No detections: as mmdetection, ``scores``, ``masks``, ``labels`` and ``bboxes`` are
    all float tensors of ``like``'s dtype (labels and masks too: an mmdetection quirk)."""
    results = InstanceData()
    results.scores = like.new_ones(0)
    results.masks = like.new_zeros(0, *ori_shape)
    results.labels = like.new_ones(0)
    results.bboxes = like.new_zeros(0, 4)
    return results
