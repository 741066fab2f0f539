"""CenterNetHead: the head of the original CenterNet (Zhou et al., 2019, "Objects as Points").

One feature map (stride 4, from ``CTResNetNeck``) and three branches, each a 3x3 conv, a ReLU
and a 1x1 conv::

    x [B, in_channels, H, W] -> heatmap_head -> sigmoid -> [B, num_classes, H, W]
                             -> wh_head                 -> [B, 2, H, W]  box (w, h), map cells
                             -> offset_head             -> [B, 2, H, W]  sub-cell centre offset

Targets: a box with centre c (in map cells) marks the cell ``int(c)`` with a Gaussian peak of
radius ``gaussian_radius((h, w), 0.3)`` in its class's heatmap (the element-wise max over
boxes); that cell regresses the box size and ``c - int(c)``. Losses: GaussianFocalLoss over the
heatmap and L1 on the size and offset at the peak cells, all over the number of peaks.

Prediction keeps the local maxima of the heatmap (3x3 max pooling), takes the ``topk`` over
all classes and positions, and decodes a box around each; there is no NMS by default.

The Gaussian helpers are in :mod:`mmdet_lite.models.utils.gaussian_target`, as in mmdetection.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.config import ConfigDict
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import (ConfigType, InstanceList, OptConfigType, OptInstanceList,
                              OptMultiConfig)
from ..utils import (batched_nms, gaussian_radius, gen_gaussian_target, get_local_maximum,
                     get_topk_from_heatmap, transpose_and_gather_feat)
# Re-exported: tests/test_models/test_dense_heads/test_centernet_head.py imports it from here.
from ..utils import gaussian2D  # noqa: F401
from .anchor_free_head import AnchorFreeHeadArgumentError
from .base_dense_head import BaseDenseHead


@MODELS.register_module()
class CenterNetHead(BaseDenseHead):
    """CenterNet head: heatmap, size and offset branches on one stride-4 map.

    State dict: ``heatmap_head`` / ``wh_head`` / ``offset_head``, each ``0`` (3x3 conv
    ``in_channels`` -> ``feat_channels``) and ``2`` (1x1 conv to ``num_classes`` / 2 / 2).

    Args:
        in_channels (int): Channels of the input map.
        feat_channels (int): Channels of each branch's hidden layer.
        num_classes (int): Number of object classes (background excluded).
        loss_center_heatmap (dict): Heatmap loss. Defaults to GaussianFocalLoss.
        loss_wh (dict): Size loss. Defaults to L1Loss with loss_weight 0.1.
        loss_offset (dict): Offset loss. Defaults to L1Loss.
        train_cfg (dict, optional): Not used (kept for SingleStageDetector).
        test_cfg (dict, optional): ``topk``, ``local_maximum_kernel``, ``max_per_img`` (and
            ``nms`` when predicting with NMS).
        init_cfg (dict, optional): Ignored: :meth:`init_weights` sets the weights, as in
            mmdetection.
    """

    def __init__(self,
                 in_channels: int,
                 feat_channels: int,
                 num_classes: int,
                 loss_center_heatmap: ConfigType = dict(type='GaussianFocalLoss',
                                                        loss_weight=1.0),
                 loss_wh: ConfigType = dict(type='L1Loss', loss_weight=0.1),
                 loss_offset: ConfigType = dict(type='L1Loss', loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.heatmap_head = self._build_head(in_channels, feat_channels, num_classes)
        self.wh_head = self._build_head(in_channels, feat_channels, 2)
        self.offset_head = self._build_head(in_channels, feat_channels, 2)
        self.loss_center_heatmap = MODELS.build(loss_center_heatmap)
        self.loss_wh = MODELS.build(loss_wh)
        self.loss_offset = MODELS.build(loss_offset)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.fp16_enabled = False  # kept for code that reads mmdetection's attribute

    def _build_head(self, in_channels: int, feat_channels: int,
                    out_channels: int) -> nn.Sequential:
        """One branch: 3x3 conv, ReLU, 1x1 conv."""
        return nn.Sequential(
            nn.Conv2d(in_channels, feat_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True), nn.Conv2d(feat_channels, out_channels, kernel_size=1))

    def init_weights(self) -> None:
        """Heatmap bias for a prior probability of 0.1 (the rest of that branch keeps
        PyTorch's default init); the size and offset convs Normal(std=0.001), bias 0.

        As mmdetection, this replaces BaseModule's init: ``init_cfg`` is not applied.
        """
        self.heatmap_head[-1].bias.data.fill_(bias_init_with_prob(0.1))
        for head in (self.wh_head, self.offset_head):
            for module in head.modules():
                if isinstance(module, nn.Conv2d):
                    normal_init(module, std=0.001)

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Predict every input map (one, from CTResNetNeck).

        Returns:
            tuple: per map, heatmaps [B, num_classes, H, W] (probabilities), sizes
            [B, 2, H, W] and offsets [B, 2, H, W].
        """
        heatmaps, whs, offsets = [], [], []
        for feat in x:
            heatmap, wh, offset = self.forward_single(feat)
            heatmaps.append(heatmap)
            whs.append(wh)
            offsets.append(offset)
        return heatmaps, whs, offsets

    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Heatmap probabilities, sizes and offsets of one map."""
        return self.heatmap_head(x).sigmoid(), self.wh_head(x), self.offset_head(x)

    # ------------------------------------------------------------------ training

    def loss_by_feat(self,
                     center_heatmap_preds: List[Tensor],
                     wh_preds: List[Tensor],
                     offset_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Heatmap, size and offset losses.

        Args:
            center_heatmap_preds (list[Tensor]): One [B, num_classes, H, W].
            wh_preds (list[Tensor]): One [B, 2, H, W].
            offset_preds (list[Tensor]): One [B, 2, H, W].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image; the first's
                ``batch_input_shape`` gives the map-to-image ratio.
            batch_gt_instances_ignore (list, optional): Not used (as in mmdetection).

        Returns:
            dict[str, Tensor]: ``loss_center_heatmap``, ``loss_wh`` and ``loss_offset``.
        """
        if not len(center_heatmap_preds) == len(wh_preds) == len(offset_preds) == 1:
            raise AnchorFreeHeadArgumentError(
                f'CenterNetHead predicts one map, got {len(center_heatmap_preds)}, '
                f'{len(wh_preds)} and {len(offset_preds)} maps')
        center_heatmap_pred, wh_pred, offset_pred = (center_heatmap_preds[0], wh_preds[0],
                                                     offset_preds[0])
        targets, avg_factor = self.get_targets(
            [gt.bboxes for gt in batch_gt_instances], [gt.labels for gt in batch_gt_instances],
            center_heatmap_pred.shape, batch_img_metas[0]['batch_input_shape'])
        weight = targets['wh_offset_target_weight']
        # Size and offset have 2 channels per peak, hence twice the avg_factor.
        return dict(
            loss_center_heatmap=self.loss_center_heatmap(
                center_heatmap_pred, targets['center_heatmap_target'], avg_factor=avg_factor),
            loss_wh=self.loss_wh(wh_pred, targets['wh_target'], weight,
                                 avg_factor=avg_factor * 2),
            loss_offset=self.loss_offset(offset_pred, targets['offset_target'], weight,
                                         avg_factor=avg_factor * 2))

    def get_targets(self, gt_bboxes: List[Tensor], gt_labels: List[Tensor], feat_shape: tuple,
                    img_shape: tuple) -> Tuple[dict, object]:
        """Heatmap, size and offset targets of the batch.

        Args:
            gt_bboxes (list[Tensor]): Boxes of each image [G, 4] in input pixels.
            gt_labels (list[Tensor]): Class of each box [G].
            feat_shape (tuple): (B, C, H, W) of the map.
            img_shape (tuple): (h, w) of the batch input.

        Returns:
            tuple: a dict of ``center_heatmap_target`` [B, num_classes, H, W], ``wh_target``,
            ``offset_target`` and ``wh_offset_target_weight`` (each [B, 2, H, W]), and the
            number of heatmap peaks (at least 1).
        """
        img_h, img_w = img_shape[:2]
        bs, _, feat_h, feat_w = feat_shape
        width_ratio, height_ratio = float(feat_w / img_w), float(feat_h / img_h)
        heatmap = gt_bboxes[-1].new_zeros([bs, self.num_classes, feat_h, feat_w])
        wh_target = gt_bboxes[-1].new_zeros([bs, 2, feat_h, feat_w])
        offset_target = gt_bboxes[-1].new_zeros([bs, 2, feat_h, feat_w])
        weight = gt_bboxes[-1].new_zeros([bs, 2, feat_h, feat_w])
        for img_id in range(bs):
            boxes, labels = gt_bboxes[img_id], gt_labels[img_id]
            center_x = (boxes[:, [0]] + boxes[:, [2]]) * width_ratio / 2
            center_y = (boxes[:, [1]] + boxes[:, [3]]) * height_ratio / 2
            # Boxes in order: where two share a cell, the later one's size and offset win.
            for j, center in enumerate(torch.cat((center_x, center_y), dim=1)):
                cx_int, cy_int = (int(v) for v in center.int())
                box_h = (boxes[j][3] - boxes[j][1]) * height_ratio
                box_w = (boxes[j][2] - boxes[j][0]) * width_ratio
                radius = max(0, int(gaussian_radius([box_h, box_w], min_overlap=0.3)))
                gen_gaussian_target(heatmap[img_id, labels[j]], [cx_int, cy_int], radius)
                wh_target[img_id, 0, cy_int, cx_int] = box_w
                wh_target[img_id, 1, cy_int, cx_int] = box_h
                offset_target[img_id, 0, cy_int, cx_int] = center[0] - cx_int
                offset_target[img_id, 1, cy_int, cx_int] = center[1] - cy_int
                weight[img_id, :, cy_int, cx_int] = 1
        avg_factor = max(1, heatmap.eq(1).sum())
        return dict(center_heatmap_target=heatmap, wh_target=wh_target,
                    offset_target=offset_target, wh_offset_target_weight=weight), avg_factor

    # ------------------------------------------------------------------ inference

    def predict_by_feat(self,
                        center_heatmap_preds: List[Tensor],
                        wh_preds: List[Tensor],
                        offset_preds: List[Tensor],
                        batch_img_metas: Optional[List[dict]] = None,
                        rescale: bool = True,
                        with_nms: bool = False) -> InstanceList:
        """Detections of each image: ``topk`` local heatmap maxima decoded into boxes.

        Args:
            center_heatmap_preds (list[Tensor]): One [B, num_classes, H, W].
            wh_preds (list[Tensor]): One [B, 2, H, W].
            offset_preds (list[Tensor]): One [B, 2, H, W].
            batch_img_metas (list[dict]): ``batch_input_shape``, ``border`` (from
                RandomCenterCropPad) and, with ``rescale``, ``scale_factor``.
            rescale (bool): Map boxes back to the original image. Defaults to True.
            with_nms (bool): Apply ``test_cfg.nms``. Defaults to False.

        Returns:
            list[InstanceData]: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K] per image.
        """
        if not len(center_heatmap_preds) == len(wh_preds) == len(offset_preds) == 1:
            raise AnchorFreeHeadArgumentError('CenterNetHead predicts from exactly one map')
        return [
            self._predict_by_feat_single(center_heatmap_preds[0][i:i + 1],
                                         wh_preds[0][i:i + 1], offset_preds[0][i:i + 1],
                                         img_meta, rescale=rescale, with_nms=with_nms)
            for i, img_meta in enumerate(batch_img_metas)
        ]

    def _predict_by_feat_single(self, center_heatmap_pred: Tensor, wh_pred: Tensor,
                                offset_pred: Tensor, img_meta: dict, rescale: bool = True,
                                with_nms: bool = False) -> InstanceData:
        """Detections of one image (inputs [1, ..., H, W])."""
        det_bboxes, det_labels = self._decode_heatmap(
            center_heatmap_pred, wh_pred, offset_pred, img_meta['batch_input_shape'],
            k=self.test_cfg.topk, kernel=self.test_cfg.local_maximum_kernel)
        det_bboxes = det_bboxes.view([-1, 5])
        det_labels = det_labels.view(-1)
        # border = (top, bottom, left, right) of the image inside the padded input
        det_bboxes[..., :4] -= det_bboxes.new_tensor(img_meta['border'])[..., [2, 0, 2, 0]]
        if rescale and 'scale_factor' in img_meta:
            det_bboxes[..., :4] /= det_bboxes.new_tensor(img_meta['scale_factor']).repeat((1, 2))
        if with_nms:
            det_bboxes, det_labels = self._bboxes_nms(det_bboxes, det_labels, self.test_cfg)
        results = InstanceData()
        results.bboxes = det_bboxes[..., :4]
        results.scores = det_bboxes[..., 4]
        results.labels = det_labels
        return results

    def _decode_heatmap(self, center_heatmap_pred: Tensor, wh_pred: Tensor,
                        offset_pred: Tensor, img_shape: tuple, k: int = 100,
                        kernel: int = 3) -> Tuple[Tensor, Tensor]:
        """Boxes (x1, y1, x2, y2, score) [B, k, 5] in input pixels and labels [B, k]."""
        height, width = center_heatmap_pred.shape[2:]
        inp_h, inp_w = img_shape
        heat = get_local_maximum(center_heatmap_pred, kernel=kernel)
        scores, inds, labels, ys, xs = get_topk_from_heatmap(heat, k=k)
        wh = transpose_and_gather_feat(wh_pred, inds)  # [B, k, 2]
        offset = transpose_and_gather_feat(offset_pred, inds)
        xs = xs + offset[..., 0]
        ys = ys + offset[..., 1]
        bboxes = torch.stack([(xs - wh[..., 0] / 2) * (inp_w / width),
                              (ys - wh[..., 1] / 2) * (inp_h / height),
                              (xs + wh[..., 0] / 2) * (inp_w / width),
                              (ys + wh[..., 1] / 2) * (inp_h / height)], dim=2)
        return torch.cat((bboxes, scores[..., None]), dim=-1), labels

    def _bboxes_nms(self, bboxes: Tensor, labels: Tensor,
                    cfg: ConfigDict) -> Tuple[Tensor, Tensor]:
        """Class-wise NMS of (x1, y1, x2, y2, score) boxes, at most ``cfg.max_per_img``."""
        if labels.numel() > 0:
            max_num = cfg.max_per_img
            bboxes, keep = batched_nms(bboxes[:, :4], bboxes[:, -1].contiguous(), labels,
                                       cfg.nms)
            # As mmdetection: with max_per_img <= 0 the labels are not reordered.
            if max_num > 0:
                bboxes = bboxes[:max_num]
                labels = labels[keep][:max_num]
        return bboxes, labels
