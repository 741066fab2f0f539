"""RPNHead: the region proposal network of Faster R-CNN.

A shared 3x3 conv, then per anchor one objectness logit and four box deltas. Proposals are the
best-scoring decoded anchors of each level, merged and de-duplicated with NMS run separately
per level.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import empty_box_as, get_box_wh, scale_boxes
from mmdet_lite.utils import ConfigType, InstanceList, MultiConfig, OptInstanceList
from ..utils import batched_nms
from .anchor_head import AnchorHead


class RPNArgumentError(ValueError, AssertionError):
    """An RPNHead argument mmdetection asserts on (``num_classes``, ``with_nms``)."""


@MODELS.register_module()
class RPNHead(AnchorHead):
    """Region proposal head: class-agnostic objectness and box deltas for every anchor.

    Args:
        in_channels (int): Channels of each input feature map.
        num_classes (int): Must be 1 (object vs background).
        init_cfg (dict or list[dict]): Initialization config.
        num_convs (int): Number of shared 3x3 convs before the predictors.
        **kwargs: Remaining AnchorHead arguments (``feat_channels``, ``anchor_generator``,
            ``bbox_coder``, ``loss_cls``, ``loss_bbox``, ``train_cfg``, ``test_cfg`` ...).
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int = 1,
                 init_cfg: MultiConfig = dict(type='Normal', layer='Conv2d', std=0.01),
                 num_convs: int = 1,
                 **kwargs) -> None:
        if num_classes != 1:
            raise RPNArgumentError(f'RPNHead is class-agnostic: num_classes must be 1, '
                                   f'got {num_classes}')
        if num_convs < 1:
            raise ValueError(f'num_convs must be >= 1, got {num_convs}')
        self.num_convs = num_convs
        super().__init__(num_classes=num_classes, in_channels=in_channels, init_cfg=init_cfg,
                         **kwargs)

    def _init_layers(self) -> None:
        """Create ``rpn_conv``, ``rpn_cls`` and ``rpn_reg``."""
        if self.num_convs > 1:
            # inplace=False as in mmdet, which hit autograd errors with in-place ReLUs here.
            self.rpn_conv = nn.Sequential(*[
                ConvModule(self.in_channels if i == 0 else self.feat_channels,
                           self.feat_channels, 3, padding=1, inplace=False)
                for i in range(self.num_convs)
            ])
        else:
            self.rpn_conv = nn.Conv2d(self.in_channels, self.feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(self.feat_channels,
                                 self.num_base_priors * self.cls_out_channels, 1)
        self.rpn_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * 4, 1)

    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Predict one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].

        Returns:
            tuple: objectness logits [B, A * cls_out_channels, H, W] and box deltas
            [B, A * 4, H, W].
        """
        x = F.relu(self.rpn_conv(x))  # [B, feat_channels, H, W]
        return self.rpn_cls(x), self.rpn_reg(x)

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Objectness and box losses; every ground-truth box counts as class 0 (object).

        Args:
            cls_scores (list[Tensor]): Per level [B, A * cls_out_channels, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, A * 4, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4] per image (``labels``
                are ignored).
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            dict: ``loss_rpn_cls`` and ``loss_rpn_bbox``, each a list with one scalar per
            level.
        """
        agnostic_gt_instances = []
        for gt_instances in batch_gt_instances:
            bboxes = gt_instances.bboxes
            agnostic_gt_instances.append(
                InstanceData(bboxes=bboxes,
                             labels=torch.zeros(len(bboxes), dtype=torch.long,
                                                device=bboxes.device)))
        losses = super().loss_by_feat(cls_scores, bbox_preds, agnostic_gt_instances,
                                      batch_img_metas, batch_gt_instances_ignore)
        return dict(loss_rpn_cls=losses['loss_cls'], loss_rpn_bbox=losses['loss_bbox'])

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Optional[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: ConfigType,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """Proposals of one image.

        Per level: objectness, keep the ``nms_pre`` best anchors. Then decode (clipped to
        ``img_shape``), drop boxes with w or h <= ``min_bbox_size``, NMS within each level
        and keep the ``max_per_img`` best.

        Args:
            cls_score_list (list[Tensor]): Per level [A * cls_out_channels, H_l, W_l].
            bbox_pred_list (list[Tensor]): Per level [A * 4, H_l, W_l].
            score_factor_list (list): Unused, for the BaseDenseHead interface.
            mlvl_priors (list[Tensor]): Per level anchors [H_l * W_l * A, 4].
            img_meta (dict): Meta of the image (``img_shape``, ``scale_factor``).
            cfg (dict): ``nms_pre``, ``min_bbox_size``, ``nms``, ``max_per_img``.
            rescale (bool): Whether to map boxes back to the original image size.
            with_nms (bool): Must be True: proposals are always de-duplicated.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K] (highest first) and ``labels``
            [K] (all 0).
        """
        if not with_nms:
            raise RPNArgumentError('RPNHead always runs NMS on its proposals: with_nms must '
                                   'be True')
        nms_pre = cfg.get('nms_pre', -1)
        mlvl_scores, mlvl_deltas, mlvl_anchors, level_ids = [], [], [], []
        for level, (cls_score, bbox_pred, anchors) in enumerate(
                zip(cls_score_list, bbox_pred_list, mlvl_priors)):
            # Channels are ordered (anchor, value), so a permute gives one row per anchor.
            cls_score = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
            if self.use_sigmoid_cls:
                scores = cls_score.sigmoid()[:, 0]  # [H*W*A]
            else:
                scores = cls_score.softmax(-1)[:, 0]  # column 0 is "object"
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, 4)  # [H*W*A, 4]
            if 0 < nms_pre < scores.numel():
                scores, topk_inds = scores.topk(nms_pre)
                bbox_pred = bbox_pred[topk_inds]
                anchors = anchors[topk_inds]
            mlvl_scores.append(scores)
            mlvl_deltas.append(bbox_pred)
            mlvl_anchors.append(anchors)
            level_ids.append(scores.new_full((scores.numel(), ), level, dtype=torch.long))

        results = InstanceData()
        results.bboxes = self.bbox_coder.decode(torch.cat(mlvl_anchors), torch.cat(mlvl_deltas),
                                                max_shape=img_meta['img_shape'])
        results.scores = torch.cat(mlvl_scores)
        # Level ids group the NMS so that it never suppresses across levels.
        results.level_ids = torch.cat(level_ids)
        return self._bbox_post_process(results, cfg, rescale=rescale, with_nms=True,
                                       img_meta=img_meta)

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigType,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """Rescale, drop small boxes, then NMS within each level and keep ``max_per_img``.

        Args:
            results (InstanceData): ``bboxes`` [N, 4], ``scores`` [N] and ``level_ids`` [N]
                (the feature level of each box: NMS never compares boxes of two levels;
                without ``level_ids`` all boxes form one group).
            cfg (dict): ``min_bbox_size`` (boxes with w or h <= it are dropped; negative
                keeps all), ``nms`` and ``max_per_img``.
            rescale (bool): Divide the boxes by ``img_meta['scale_factor']``.
            with_nms (bool): Must be True.
            img_meta (dict, optional): Meta of the image; required when rescaling.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K] (highest first, as NMS returned
            them) and ``labels`` [K] (long, all 0: the single "object" class); no
            ``level_ids``.
        """
        if not with_nms:
            raise RPNArgumentError('RPNHead always runs NMS on its proposals: with_nms must '
                                   'be True')
        if rescale:
            if img_meta is None or img_meta.get('scale_factor') is None:
                raise RPNArgumentError("rescale=True needs 'scale_factor' in the image meta")
            results.bboxes = scale_boxes(results.bboxes,
                                         [1 / s for s in img_meta['scale_factor']])
        min_bbox_size = cfg.get('min_bbox_size', -1)
        if min_bbox_size >= 0:
            w, h = get_box_wh(results.bboxes)
            valid = (w > min_bbox_size) & (h > min_bbox_size)
            if not valid.all():
                results = results[valid]

        if len(results) == 0:
            # A fresh result drops whatever extra fields the input carried.
            empty = InstanceData()
            empty.bboxes = empty_box_as(results.bboxes)
            empty.scores = results.scores.new_zeros(0)
            empty.labels = results.scores.new_zeros(0, dtype=torch.long)
            return empty
        groups = results.level_ids if 'level_ids' in results else \
            results.scores.new_zeros(len(results), dtype=torch.long)
        dets, keep = batched_nms(results.bboxes, results.scores, groups, cfg['nms'])
        results = results[keep]
        results.scores = dets[:, -1]  # an NMS may re-weight the scores
        results = results[:cfg.get('max_per_img', len(results))]
        if 'level_ids' in results:
            del results.level_ids
        results.labels = results.scores.new_zeros(len(results), dtype=torch.long)
        return results
