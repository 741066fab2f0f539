"""Decoupled SOLO heads: a cell's mask is the product of an x mask and a y mask.

Instead of ``S**2`` mask channels, a level predicts ``S`` "column" masks and ``S`` "row"
masks; cell (i, j) gets ``sigmoid(y_i) * sigmoid(x_j)``::

    forward: per level: x masks [B, S_l, h, w], y masks [B, S_l, h, w] and class logits
             [B, C, S_l, S_l] (eval mode: probabilities, classes at 2 x 2 local maxima)
    loss:    SOLO's targets; Dice loss (on probabilities) of x * y of the positive cells
    predict: SOLO's post-processing with x * y as the cell masks

mmdetection defines these heads in ``solo_head.py``; the package makes them importable from
there too.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import InstanceList, MultiConfig, OptConfigType
from ..layers.solo_grid import keep_local_maxima
from ..utils import generate_coordinate
from .solo_head import SOLOArgumentError, SOLOHead


def _xy_init_cfg() -> list:
    return [
        dict(type='Normal', layer='Conv2d', std=0.01),
        dict(type='Normal', std=0.01, bias_prob=0.01, override=dict(name='conv_mask_list_x')),
        dict(type='Normal', std=0.01, bias_prob=0.01, override=dict(name='conv_mask_list_y')),
        dict(type='Normal', std=0.01, bias_prob=0.01, override=dict(name='conv_cls'))
    ]


@MODELS.register_module()
class DecoupledSOLOHead(SOLOHead):
    """Decoupled SOLO head: x and y mask towers (each reads its one coordinate channel).

    Args:
        init_cfg (dict | list[dict]): Normal(0.01) convs; x/y mask and class predictors with
            a prior-probability 0.01 bias.
        *args, **kwargs: :class:`SOLOHead`'s.
    """

    def __init__(self, *args, init_cfg: MultiConfig = _xy_init_cfg(), **kwargs) -> None:
        super().__init__(*args, init_cfg=init_cfg, **kwargs)

    def _conv(self, in_channels: int, conv_cfg: OptConfigType = None) -> ConvModule:
        return ConvModule(in_channels, self.feat_channels, 3, stride=1, padding=1,
                          conv_cfg=conv_cfg, norm_cfg=self.norm_cfg)

    def _init_xy_predictors(self) -> None:
        self.conv_mask_list_x = nn.ModuleList(
            nn.Conv2d(self.feat_channels, num_grid, 3, padding=1) for num_grid in self.num_grids)
        self.conv_mask_list_y = nn.ModuleList(
            nn.Conv2d(self.feat_channels, num_grid, 3, padding=1) for num_grid in self.num_grids)
        self.conv_cls = nn.Conv2d(self.feat_channels, self.cls_out_channels, 3, padding=1)

    def _init_layers(self) -> None:
        self.mask_convs_x = nn.ModuleList()
        self.mask_convs_y = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            mask_in = self.in_channels + 1 if i == 0 else self.feat_channels
            self.mask_convs_x.append(self._conv(mask_in))
            self.mask_convs_y.append(self._conv(mask_in))
            self.cls_convs.append(self._conv(self.in_channels if i == 0 else self.feat_channels))
        self._init_xy_predictors()

    # ------------------------------------------------------------------------- forward
    def _xy_mask_feats(self, feat: Tensor, coord: Tensor) -> Tuple[Tensor, Tensor]:
        """x and y mask features at twice the level's resolution."""
        feat_x = torch.cat([feat, coord[:, 0:1]], 1)
        feat_y = torch.cat([feat, coord[:, 1:2]], 1)
        for conv_x, conv_y in zip(self.mask_convs_x, self.mask_convs_y):
            feat_x, feat_y = conv_x(feat_x), conv_y(feat_y)
        return (F.interpolate(feat_x, scale_factor=2, mode='bilinear'),
                F.interpolate(feat_y, scale_factor=2, mode='bilinear'))

    def forward(self, x: Tuple[Tensor]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """x masks, y masks and class predictions of every level.

        Args:
            x (tuple[Tensor]): ``num_levels`` neck maps, each [B, C, H_l, W_l].

        Returns:
            tuple: ``mlvl_mask_preds_x``, ``mlvl_mask_preds_y`` (per level [B, S_l, h, w];
            eval mode: probabilities at level 0's size) and ``mlvl_cls_preds`` (per level
            [B, C, S_l, S_l]; eval mode: local-maximum scores).
        """
        if len(x) != self.num_levels:
            raise SOLOArgumentError(f'{type(self).__name__} expects {self.num_levels} '
                                    f'feature levels, got {len(x)}')
        feats = self.resize_feats(x)
        mask_preds_x, mask_preds_y, cls_preds = [], [], []
        for i, feat in enumerate(feats):
            coord = generate_coordinate(feat.size(), feat.device)  # [B, 2, H, W]
            mask_feat_x, mask_feat_y = self._xy_mask_feats(feat, coord)
            mask_pred_x = self.conv_mask_list_x[i](mask_feat_x)  # [B, S, 2H, 2W]
            mask_pred_y = self.conv_mask_list_y[i](mask_feat_y)

            cls_feat = feat
            for j, cls_conv in enumerate(self.cls_convs):
                if j == self.cls_down_index:
                    cls_feat = F.interpolate(cls_feat, size=self.num_grids[i], mode='bilinear')
                cls_feat = cls_conv(cls_feat)
            cls_pred = self.conv_cls(cls_feat)  # [B, C, S, S]

            if not self.training:
                size = (feats[0].shape[-2] * 2, feats[0].shape[-1] * 2)
                mask_pred_x = F.interpolate(mask_pred_x.sigmoid(), size=size, mode='bilinear')
                mask_pred_y = F.interpolate(mask_pred_y.sigmoid(), size=size, mode='bilinear')
                cls_pred = keep_local_maxima(cls_pred.sigmoid())
            mask_preds_x.append(mask_pred_x)
            mask_preds_y.append(mask_pred_y)
            cls_preds.append(cls_pred)
        return mask_preds_x, mask_preds_y, cls_preds

    # ------------------------------------------------------------------------- loss
    def _get_targets_single(self, gt_instances: InstanceData,
                            featmap_sizes: Optional[list] = None) -> tuple:
        """SOLO's targets, with the positives as (row, column) cells [P_l, 2] per level
        (row-major, the order of the mask targets) instead of flags."""
        mask_targets, labels, _ = super()._get_targets_single(gt_instances,
                                                              featmap_sizes=featmap_sizes)
        xy_pos_indexes = [(lvl_labels - self.num_classes).nonzero() for lvl_labels in labels]
        return mask_targets, labels, xy_pos_indexes

    def loss_by_feat(self, mlvl_mask_preds_x: List[Tensor], mlvl_mask_preds_y: List[Tensor],
                     mlvl_cls_preds: List[Tensor], batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict], **kwargs) -> dict:
        """Dice loss of ``sigmoid(y_row) * sigmoid(x_col)`` of the positive cells (the
        configs build the Dice loss with ``activate=False``) and focal loss of all cells.

        Returns:
            dict[str, Tensor]: ``loss_mask`` and ``loss_cls``.
        """
        featmap_sizes = [pred.size()[-2:] for pred in mlvl_mask_preds_x]
        targets = [self._get_targets_single(gt, featmap_sizes=featmap_sizes)
                   for gt in batch_gt_instances]

        loss_mask, num_pos, flat_labels, flat_cls_preds = [], 0., [], []
        for lvl in range(self.num_levels):
            pred_x = torch.cat([mlvl_mask_preds_x[lvl][img_id, xy[lvl][:, 1]]
                                for img_id, (_, _, xy) in enumerate(targets)])
            pred_y = torch.cat([mlvl_mask_preds_y[lvl][img_id, xy[lvl][:, 0]]
                                for img_id, (_, _, xy) in enumerate(targets)])
            lvl_targets = torch.cat([mask_targets[lvl] for mask_targets, _, _ in targets])
            if len(pred_x) == 0:
                loss_mask.append((pred_x.sum() + pred_y.sum()).unsqueeze(0))  # keeps grads
            else:
                num_pos += len(pred_x)
                loss_mask.append(self.loss_mask(pred_y.sigmoid() * pred_x.sigmoid(),
                                                lvl_targets, reduction_override='none'))
            flat_labels.extend(labels[lvl].flatten() for _, labels, _ in targets)
            flat_cls_preds.append(
                mlvl_cls_preds[lvl].permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels))
        loss_mask = torch.cat(loss_mask)
        loss_mask = loss_mask.sum() / num_pos if num_pos > 0 else loss_mask.mean()
        loss_cls = self.loss_cls(torch.cat(flat_cls_preds), torch.cat(flat_labels),
                                 avg_factor=num_pos + 1)
        return dict(loss_mask=loss_mask, loss_cls=loss_cls)

    # ------------------------------------------------------------------------- predict
    def predict_by_feat(self, mlvl_mask_preds_x: List[Tensor], mlvl_mask_preds_y: List[Tensor],
                        mlvl_cls_scores: List[Tensor], batch_img_metas: List[dict],
                        **kwargs) -> InstanceList:
        """Instance masks of each image from eval-mode ``forward`` outputs.

        Returns:
            list[InstanceData]: ``masks`` bool [K, H_ori, W_ori], ``labels``, ``scores`` and
            zero ``bboxes``, as :meth:`SOLOHead.predict_by_feat`.
        """
        if len(mlvl_mask_preds_x) != len(mlvl_cls_scores):
            raise SOLOArgumentError('mask and class predictions need the same number of '
                                    f'levels, got {len(mlvl_mask_preds_x)} and '
                                    f'{len(mlvl_cls_scores)}')
        results_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            cls_scores = torch.cat([
                scores[img_id].permute(1, 2, 0).reshape(-1, self.cls_out_channels).detach()
                for scores in mlvl_cls_scores])
            preds_x = torch.cat([preds[img_id] for preds in mlvl_mask_preds_x])  # [sum S, h, w]
            preds_y = torch.cat([preds[img_id] for preds in mlvl_mask_preds_y])
            results_list.append(
                self._predict_by_feat_single(cls_scores, preds_x, preds_y, img_meta=img_meta))
        return results_list

    def _predict_by_feat_single(self, cls_scores: Tensor, mask_preds_x: Tensor,
                                mask_preds_y: Tensor, img_meta: dict,
                                cfg: OptConfigType = None) -> InstanceData:
        """One image: ``cls_scores`` [sum S_l**2, C]; x and y masks [sum S_l, h, w]."""
        cfg = self.test_cfg if cfg is None else cfg
        score_mask = cls_scores > cfg['score_thr']
        cls_scores = cls_scores[score_mask]
        inds = score_mask.nonzero()  # [K, 2]: cell, class
        cell_inds = inds[:, 0]
        # Level of each cell, then its row and column, then the matching x / y channels.
        cells_per_level = inds.new_tensor(self.num_grids).pow(2)
        level = torch.bucketize(cell_inds, cells_per_level.cumsum(0), right=True)
        level_start = (cells_per_level.cumsum(0) - cells_per_level)[level]
        num_grid = inds.new_tensor(self.num_grids)[level]
        channel_start = (inds.new_tensor(self.num_grids).cumsum(0) -
                         inds.new_tensor(self.num_grids))[level]
        rows = (cell_inds - level_start) // num_grid
        cols = (cell_inds - level_start) % num_grid
        mask_preds = mask_preds_x[channel_start + cols] * mask_preds_y[channel_start + rows]
        # Without candidates every mask is "too small": the shared step returns no results.
        strides = cls_scores.new_tensor(self.strides)[level]
        return self._masks_to_results(mask_preds, cls_scores, inds[:, 1], strides, img_meta,
                                      cfg, upsample_factor=4)


@MODELS.register_module()
class DecoupledSOLOLightHead(DecoupledSOLOHead):
    """Light decoupled SOLO head: one mask tower (both coordinate channels) feeding the x
    and y predictors; ``dcn_cfg`` (e.g. DCNv2) in the last conv of each tower.

    Args:
        dcn_cfg (dict, optional): Conv config of the last tower convs. Defaults to None.
        init_cfg (dict | list[dict]): As :class:`DecoupledSOLOHead`.
        *args, **kwargs: :class:`SOLOHead`'s.
    """

    def __init__(self, *args, dcn_cfg: OptConfigType = None,
                 init_cfg: MultiConfig = _xy_init_cfg(), **kwargs) -> None:
        if not (dcn_cfg is None or isinstance(dcn_cfg, dict)):
            raise SOLOArgumentError(f'dcn_cfg must be None or a dict, got {dcn_cfg!r}')
        self.dcn_cfg = dcn_cfg
        super().__init__(*args, init_cfg=init_cfg, **kwargs)

    def _init_layers(self) -> None:
        self.mask_convs = nn.ModuleList()
        self.cls_convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            conv_cfg = self.dcn_cfg if i == self.stacked_convs - 1 else None
            mask_in = self.in_channels + 2 if i == 0 else self.feat_channels
            cls_in = self.in_channels if i == 0 else self.feat_channels
            self.mask_convs.append(self._conv(mask_in, conv_cfg))
            self.cls_convs.append(self._conv(cls_in, conv_cfg))
        self._init_xy_predictors()

    def _xy_mask_feats(self, feat: Tensor, coord: Tensor) -> Tuple[Tensor, Tensor]:
        mask_feat = torch.cat([feat, coord], 1)
        for conv in self.mask_convs:
            mask_feat = conv(mask_feat)
        mask_feat = F.interpolate(mask_feat, scale_factor=2, mode='bilinear')
        return mask_feat, mask_feat
