"""SOLOv2: SOLO with dynamic mask kernels and Matrix NMS.

Instead of ``S**2`` mask channels per level, every grid cell predicts the weights of a
``dynamic_conv_size`` conv (``E * k * k`` values), and one unified mask feature map
(:class:`MaskFeatModule`, stride 4, ``E`` channels) is shared by all cells::

    forward: neck maps -> mask_feats [B, E, H/4, W/4] (P2-P5 fused, P5 with CoordConv)
             and per level kernels [B, E k k, S_l, S_l] (kernel tower on CoordConv input)
             and class logits [B, C, S_l, S_l]
    loss:    SOLO's centre-region positives; a positive cell's mask is its kernel convolved
             over its image's mask_feats; Dice loss on those, focal loss on all cells
    predict: cells above score_thr (2 x 2 local maxima) -> dynamic conv -> sigmoid -> SOLO's
             maskness and Matrix NMS -> masks at the original image size
"""
import copy
import warnings
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, InstanceList, MultiConfig, OptConfigType
from ..layers.solo_grid import gt_masks_as_tensor, keep_local_maxima, rescale_masks
from ..utils import generate_coordinate
from .solo_head import SOLOArgumentError, SOLOHead, empty_solo_results


class MaskFeatModule(BaseModule):
    """SOLOv2's unified mask feature branch: levels ``start_level..end_level`` fused at the
    first one's resolution.

    Level ``i`` (counted from 0) goes through ``i`` conv + 2x-upsample steps (level 0 through
    one conv); the last level also reads 2 coordinate channels (CoordConv). The sum goes
    through a 1x1 ``conv_pred``.

    Args:
        in_channels (int): Channels of the neck maps.
        feat_channels (int): Channels of the per-level convs.
        start_level (int): First neck level used.
        end_level (int): Last neck level used (inclusive).
        out_channels (int): Channels E of the mask features (the dynamic kernels' input).
        mask_stride (int): Stride of the mask features. Defaults to 4.
        conv_cfg (dict, optional): Conv config. Defaults to None.
        norm_cfg (dict, optional): Norm config. Defaults to None.
        init_cfg (dict | list[dict]): Defaults to Normal(std=0.01) on the convs.
    """

    def __init__(self,
                 in_channels: int,
                 feat_channels: int,
                 start_level: int,
                 end_level: int,
                 out_channels: int,
                 mask_stride: int = 4,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 init_cfg: MultiConfig = [dict(type='Normal', layer='Conv2d', std=0.01)]) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.start_level = start_level
        self.end_level = end_level
        self.mask_stride = mask_stride
        if not (start_level >= 0 and end_level >= start_level):
            raise SOLOArgumentError(f'MaskFeatModule needs 0 <= start_level <= end_level, got '
                                    f'start_level={start_level}, end_level={end_level}')
        self.out_channels = out_channels
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self._init_layers()
        self.fp16_enabled = False

    def _conv(self, in_channels: int) -> ConvModule:
        return ConvModule(in_channels, self.feat_channels, 3, padding=1, conv_cfg=self.conv_cfg,
                          norm_cfg=self.norm_cfg, inplace=False)

    def _init_layers(self) -> None:
        """``convs_all_levels.{l}`` holds ``conv{j}`` (+ ``upsample{j}``) for j < level."""
        self.convs_all_levels = nn.ModuleList()
        for level in range(self.start_level, self.end_level + 1):
            convs = nn.Sequential()
            if level == 0:
                convs.add_module('conv0', self._conv(self.in_channels))
            for j in range(level):
                if j == 0:
                    # The deepest level also reads the 2 coordinate channels.
                    in_channels = self.in_channels + 2 if level == self.end_level \
                        else self.in_channels
                else:
                    in_channels = self.feat_channels
                convs.add_module(f'conv{j}', self._conv(in_channels))
                convs.add_module(
                    f'upsample{j}',
                    nn.Upsample(scale_factor=2, mode='bilinear', align_corners=False))
            self.convs_all_levels.append(convs)
        self.conv_pred = ConvModule(self.feat_channels, self.out_channels, 1, padding=0,
                                    conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)

    def forward(self, x: Tuple[Tensor]) -> Tensor:
        """Fused mask features.

        Args:
            x (tuple[Tensor]): Neck maps; levels ``start_level..end_level`` are used.

        Returns:
            Tensor: [B, out_channels, H_s, W_s] at ``start_level``'s resolution.
        """
        inputs = x[self.start_level:self.end_level + 1]
        if len(inputs) != self.end_level - self.start_level + 1:
            raise SOLOArgumentError(f'MaskFeatModule needs levels {self.start_level}..'
                                    f'{self.end_level}, got {len(x)} feature maps')
        fused = self.convs_all_levels[0](inputs[0])  # [B, F, H_s, W_s]
        for i in range(1, len(inputs)):
            level_input = inputs[i]
            if i == len(inputs) - 1:
                coord = generate_coordinate(level_input.size(), level_input.device)
                level_input = torch.cat([level_input, coord], 1)
            fused = fused + self.convs_all_levels[i](level_input)
        return self.conv_pred(fused)


@MODELS.register_module()
class SOLOV2Head(SOLOHead):
    """SOLOv2 mask head (`SOLOv2 <https://arxiv.org/abs/2003.10152>`_).

    ``cls_down_index`` is accepted but unused (as in mmdetection): the kernel and class
    towers both start from the S x S resized features.

    Args:
        mask_feature_head (dict): :class:`MaskFeatModule` arguments; ``in_channels`` is
            set to the head's (with a warning when it differs).
        dynamic_conv_size (int): Kernel size k of the dynamic convs. Defaults to 1.
        dcn_cfg (dict, optional): Conv config (e.g. ``dict(type='DCNv2')``) of the towers.
            Defaults to None.
        dcn_apply_to_all_conv (bool): Use ``dcn_cfg`` in every tower conv (True) or only the
            last one (the light model). Defaults to True.
        init_cfg (dict | list[dict]): Normal(0.01) convs, ``conv_cls`` with a prior 0.01
            bias.
        *args, **kwargs: :class:`SOLOHead`'s (``num_classes``, ``in_channels``, ...).
    """

    def __init__(self,
                 *args,
                 mask_feature_head: ConfigType,
                 dynamic_conv_size: int = 1,
                 dcn_cfg: OptConfigType = None,
                 dcn_apply_to_all_conv: bool = True,
                 init_cfg: MultiConfig = [
                     dict(type='Normal', layer='Conv2d', std=0.01),
                     dict(type='Normal', std=0.01, bias_prob=0.01,
                          override=dict(name='conv_cls'))
                 ],
                 **kwargs) -> None:
        if not (dcn_cfg is None or isinstance(dcn_cfg, dict)):
            raise SOLOArgumentError(f'dcn_cfg must be None or a dict, got {dcn_cfg!r}')
        self.dcn_cfg = dcn_cfg
        self.with_dcn = dcn_cfg is not None
        self.dcn_apply_to_all_conv = dcn_apply_to_all_conv
        self.dynamic_conv_size = dynamic_conv_size
        # Read by _init_layers, which SOLOHead's constructor calls.
        self.kernel_out_channels = \
            mask_feature_head.get('out_channels') * dynamic_conv_size * dynamic_conv_size
        super().__init__(*args, init_cfg=init_cfg, **kwargs)

        mask_feature_head = copy.deepcopy(mask_feature_head)
        feat_in = mask_feature_head.get('in_channels', None)
        if feat_in is not None and feat_in != self.in_channels:
            warnings.warn('The `in_channels` of SOLOv2MaskFeatHead and SOLOv2Head should be '
                          f'same, changing mask_feature_head.in_channels to {self.in_channels}')
        mask_feature_head['in_channels'] = self.in_channels
        self.mask_feature_head = MaskFeatModule(**mask_feature_head)
        self.mask_stride = self.mask_feature_head.mask_stride
        self.fp16_enabled = False

    def _init_layers(self) -> None:
        """Kernel tower (CoordConv input), class tower, ``conv_cls`` and ``conv_kernel``."""
        self.cls_convs = nn.ModuleList()
        self.kernel_convs = nn.ModuleList()
        conv_cfg = None
        for i in range(self.stacked_convs):
            # DCN in every conv, or (the light models) in the last one only.
            if self.with_dcn and (self.dcn_apply_to_all_conv or i == self.stacked_convs - 1):
                conv_cfg = self.dcn_cfg
            kernel_in = self.in_channels + 2 if i == 0 else self.feat_channels
            cls_in = self.in_channels if i == 0 else self.feat_channels
            for tower, in_channels in ((self.kernel_convs, kernel_in), (self.cls_convs, cls_in)):
                tower.append(ConvModule(in_channels, self.feat_channels, 3, stride=1, padding=1,
                                        conv_cfg=conv_cfg, norm_cfg=self.norm_cfg,
                                        bias=self.norm_cfg is None))
        self.conv_cls = nn.Conv2d(self.feat_channels, self.cls_out_channels, 3, padding=1)
        self.conv_kernel = nn.Conv2d(self.feat_channels, self.kernel_out_channels, 3, padding=1)

    def forward(self, x: Tuple[Tensor]) -> Tuple[List[Tensor], List[Tensor], Tensor]:
        """Kernels and class logits of every cell, plus the shared mask features.

        Args:
            x (tuple[Tensor]): ``num_levels`` neck maps, each [B, C, H_l, W_l].

        Returns:
            tuple:

            - mlvl_kernel_preds (list[Tensor]): Per level [B, E k k, S_l, S_l].
            - mlvl_cls_preds (list[Tensor]): Per level [B, C, S_l, S_l] logits.
            - mask_feats (Tensor): [B, E, H/4, W/4] with the COCO configs.
        """
        if len(x) != self.num_levels:
            raise SOLOArgumentError(f'{type(self).__name__} expects {self.num_levels} '
                                    f'feature levels, got {len(x)}')
        mask_feats = self.mask_feature_head(x)
        mlvl_kernel_preds, mlvl_cls_preds = [], []
        for i, feat in enumerate(self.resize_feats(x)):
            coord = generate_coordinate(feat.size(), feat.device)
            kernel_feat = F.interpolate(torch.cat([feat, coord], 1), size=self.num_grids[i],
                                        mode='bilinear', align_corners=False)  # [B, C+2, S, S]
            cls_feat = kernel_feat[:, :-2].contiguous()  # the class tower skips the coords
            kernel_feat = kernel_feat.contiguous()
            for kernel_conv in self.kernel_convs:
                kernel_feat = kernel_conv(kernel_feat)
            for cls_conv in self.cls_convs:
                cls_feat = cls_conv(cls_feat)
            mlvl_kernel_preds.append(self.conv_kernel(kernel_feat))  # [B, E k k, S, S]
            mlvl_cls_preds.append(self.conv_cls(cls_feat))  # [B, C, S, S]
        return mlvl_kernel_preds, mlvl_cls_preds, mask_feats

    # ------------------------------------------------------------------------- targets
    def _get_targets_single(self, gt_instances: InstanceData,
                            featmap_sizes: Optional[list] = None) -> tuple:
        """Targets of one image (see :meth:`SOLOHead._get_targets_single`).

        Unlike SOLO, each (gt, cell) pair is a separate positive: a cell inside the centre
        regions of two gts gets two mask targets (and the later gt's label).

        Args:
            gt_instances (InstanceData): ``bboxes``, ``labels``, ``masks`` at the padded
                input size.
            featmap_sizes (torch.Size): (h, w) of the mask features.

        Returns:
            tuple[list]: Per level: mask targets uint8 [P_l, h, w]; labels [S_l, S_l];
            positive flags bool [S_l**2]; positive cell indices (a list of P_l ints, in the
            order of the targets).
        """
        device = gt_instances.labels.device
        gt_masks = gt_masks_as_tensor(gt_instances, device)
        feat_h, feat_w = featmap_sizes[0], featmap_sizes[1]
        upsampled_size = (feat_h * self.mask_stride, feat_w * self.mask_stride)
        mlvl_pos_mask_targets, mlvl_labels, mlvl_pos_masks, mlvl_pos_indexes = [], [], [], []
        for scale_range, num_grid in zip(self.scale_ranges, self.num_grids):
            mask_targets, pos_indexes = [], []
            labels = torch.full([num_grid, num_grid], self.num_classes, dtype=torch.int64,
                                device=device)
            pos_mask = torch.zeros([num_grid**2], dtype=torch.bool, device=device)
            for gt_idx, label, (top, down, left, right) in self._level_positives(
                    gt_instances, gt_masks, scale_range, num_grid, upsampled_size):
                labels[top:down + 1, left:right + 1] = label
                small = rescale_masks(gt_masks[gt_idx:gt_idx + 1], 1. / self.mask_stride)[0]
                target = torch.zeros([feat_h, feat_w], dtype=torch.uint8, device=device)
                target[:small.shape[0], :small.shape[1]] = small
                for i in range(top, down + 1):
                    for j in range(left, right + 1):
                        mask_targets.append(target)
                        pos_mask[i * num_grid + j] = True
                        pos_indexes.append(i * num_grid + j)
            mlvl_pos_mask_targets.append(
                torch.stack(mask_targets) if mask_targets else
                torch.zeros([0, feat_h, feat_w], dtype=torch.uint8, device=device))
            mlvl_labels.append(labels)
            mlvl_pos_masks.append(pos_mask)
            mlvl_pos_indexes.append(pos_indexes)
        return mlvl_pos_mask_targets, mlvl_labels, mlvl_pos_masks, mlvl_pos_indexes

    def _dynamic_masks(self, mask_feats: Tensor, kernels: Tensor) -> Tensor:
        """Masks of K cells of one image: their kernels [K, E k k] over its mask features
        [1, E, h, w] (no padding) -> [K, h', w']."""
        size = self.dynamic_conv_size
        weight = kernels.view(kernels.size(0), -1, size, size)
        return F.conv2d(mask_feats, weight, stride=1)[0]

    # ------------------------------------------------------------------------- loss
    def loss_by_feat(self, mlvl_kernel_preds: List[Tensor], mlvl_cls_preds: List[Tensor],
                     mask_feats: Tensor, batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict], **kwargs) -> dict:
        """Dice loss of the positives' dynamic masks and focal loss of all cells.

        Args:
            mlvl_kernel_preds (list[Tensor]): Per level [B, E k k, S_l, S_l].
            mlvl_cls_preds (list[Tensor]): Per level [B, C, S_l, S_l] logits.
            mask_feats (Tensor): [B, E, h, w].
            batch_gt_instances (list[InstanceData]): ``bboxes``, ``labels``, ``masks``.
            batch_img_metas (list[dict]): Metas of each image.

        Returns:
            dict[str, Tensor]: ``loss_mask`` (summed over the (gt, cell) positives, divided
            by the number of positive cells) and ``loss_cls`` (over positive cells + 1).
        """
        feat_h, feat_w = mask_feats.shape[-2:]
        targets = [self._get_targets_single(gt, featmap_sizes=mask_feats.size()[-2:])
                   for gt in batch_gt_instances]
        # Unique positive cells; a cell shared by two gts counts once here but has two masks
        # in the loss (as mmdetection).
        num_pos = sum(int(pos_masks[lvl].sum()) for _, _, pos_masks, _ in targets
                      for lvl in range(self.num_levels))

        loss_mask, flat_labels, flat_cls_preds = [], [], []
        for lvl, kernel_preds in enumerate(mlvl_kernel_preds):
            lvl_preds = []
            for img_id, (_, _, _, pos_indexes) in enumerate(targets):
                if len(pos_indexes[lvl]) == 0:
                    continue
                kernels = kernel_preds[img_id].flatten(1)[:, pos_indexes[lvl]].t()  # [P, Ekk]
                lvl_preds.append(self._dynamic_masks(mask_feats[[img_id]], kernels)
                                 .view(-1, feat_h, feat_w))
            if lvl_preds:
                lvl_targets = torch.cat([mask_targets[lvl] for mask_targets, _, _, _ in targets])
                loss_mask.append(self.loss_mask(torch.cat(lvl_preds), lvl_targets,
                                                reduction_override='none'))
            flat_labels.append(torch.cat([labels[lvl].flatten() for _, labels, _, _ in targets]))
            flat_cls_preds.append(
                mlvl_cls_preds[lvl].permute(0, 2, 3, 1).reshape(-1, self.num_classes))
        if num_pos > 0:
            loss_mask = torch.cat(loss_mask).sum() / num_pos
        else:
            loss_mask = mask_feats.sum() * 0  # keeps the graph
        loss_cls = self.loss_cls(torch.cat(flat_cls_preds), torch.cat(flat_labels),
                                 avg_factor=num_pos + 1)
        return dict(loss_mask=loss_mask, loss_cls=loss_cls)

    # ------------------------------------------------------------------------- predict
    def predict_by_feat(self, mlvl_kernel_preds: List[Tensor], mlvl_cls_scores: List[Tensor],
                        mask_feats: Tensor, batch_img_metas: List[dict],
                        **kwargs) -> InstanceList:
        """Instance masks of each image.

        Args:
            mlvl_kernel_preds (list[Tensor]): Per level [B, E k k, S_l, S_l].
            mlvl_cls_scores (list[Tensor]): Per level [B, C, S_l, S_l] logits.
            mask_feats (Tensor): [B, E, h, w].
            batch_img_metas (list[dict]): ``img_shape`` and ``ori_shape`` of each image.

        Returns:
            list[InstanceData]: ``masks`` bool [K, H_ori, W_ori], ``labels`` [K],
            ``scores`` [K] and ``bboxes`` [K, 4] (zeros, as mmdetection).
        """
        if len(mlvl_kernel_preds) != len(mlvl_cls_scores):
            raise SOLOArgumentError('kernel and class predictions need the same number of '
                                    f'levels, got {len(mlvl_kernel_preds)} and '
                                    f'{len(mlvl_cls_scores)}')
        # [B, S, S, C] scores, zero outside 2 x 2 local maxima.
        mlvl_scores = [keep_local_maxima(scores.sigmoid()).permute(0, 2, 3, 1)
                       for scores in mlvl_cls_scores]
        results_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            cls_scores = torch.cat(
                [scores[img_id].reshape(-1, self.cls_out_channels) for scores in mlvl_scores])
            kernel_preds = torch.cat([
                kernels[img_id].permute(1, 2, 0).reshape(-1, self.kernel_out_channels)
                for kernels in mlvl_kernel_preds])
            results_list.append(self._predict_by_feat_single(
                kernel_preds, cls_scores, mask_feats[[img_id]], img_meta=img_meta))
        return results_list

    def _predict_by_feat_single(self, kernel_preds: Tensor, cls_scores: Tensor,
                                mask_feats: Tensor, img_meta: dict,
                                cfg: OptConfigType = None) -> InstanceData:
        """One image: ``kernel_preds`` [N, E k k] and ``cls_scores`` [N, C] of all cells,
        ``mask_feats`` [1, E, h, w]."""
        cfg = self.test_cfg if cfg is None else cfg
        if len(kernel_preds) != len(cls_scores):
            raise SOLOArgumentError(f'{len(cls_scores)} cell scores but {len(kernel_preds)} '
                                    'kernels')
        score_mask = cls_scores > cfg['score_thr']
        cls_scores = cls_scores[score_mask]
        if len(cls_scores) == 0:
            return empty_solo_results(cls_scores, img_meta['ori_shape'][:2])
        inds = score_mask.nonzero()  # [K, 2]: cell, class
        kernel_preds = kernel_preds[inds[:, 0]]
        mask_preds = self._dynamic_masks(mask_feats, kernel_preds).sigmoid()  # [K, h, w]
        return self._masks_to_results(mask_preds, cls_scores, inds[:, 1],
                                      self._cell_strides(inds[:, 0], kernel_preds), img_meta,
                                      cfg, upsample_factor=self.mask_stride)
