"""DETRHead: class and box predictions for every object query, set-based losses.

The head of the DETR family. A member's head (``<member>_head.py``) subclasses it and writes
its branches (``_init_layers``), ``forward`` (e.g. taking ``references``), ``loss``/``predict``
taking its detector's extra head inputs, and ``loss_by_feat`` when it adds losses (encoder,
denoising). It reuses the matching and targets (``get_targets``), one layer's losses
(``loss_by_feat_single``), the ``d{i}.`` auxiliary names and the top-k decoding.
"""
import copy
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures import SampleList
from mmdet_lite.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh, get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, OptInstanceList, OptMultiConfig,
                              reduce_mean)
from ..layers.transformer import FFN
from ..utils import unpack_gt_instances


# One-to-one matching on DETR's costs (class, L1 on normalized boxes, GIoU on pixels).
_DEFAULT_TRAIN_CFG = dict(assigner=dict(
    type='HungarianAssigner',
    match_costs=[dict(type='ClassificationCost', weight=1.),
                 dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
                 dict(type='IoUCost', iou_mode='giou', weight=2.0)]))


@MODELS.register_module()
class DETRHead(BaseModule):
    """Head of DETR: a linear classifier and a 3-layer box MLP on each decoder output.

    Boxes are predicted as sigmoid (cx, cy, w, h) relative to the image size (``img_shape``).
    In training, every decoder layer's predictions are matched one-to-one to the ground truth
    (``HungarianAssigner``) and get their own classification, L1 and GIoU losses; the last
    layer's are ``loss_cls``, ``loss_bbox``, ``loss_iou``, the others ``d{i}.loss_*``.

    Args:
        num_classes (int): Number of object classes (background excluded); the softmax
            classifier has ``num_classes + 1`` outputs, background last.
        embed_dims (int): Channels of the decoder outputs. Defaults to 256.
        num_reg_fcs (int): Linear layers of ``reg_ffn`` (before ``fc_reg``). Defaults to 2.
        sync_cls_avg_factor (bool): Average the classification normalizer over distributed
            ranks. Defaults to False.
        loss_cls (dict): Classification loss. ``class_weight`` (float) weights the object
            classes and ``bg_cls_weight`` (float) the no-object class, as in DETR.
        loss_bbox (dict): L1 loss on normalized (cx, cy, w, h). Defaults to weight 5.
        loss_iou (dict): GIoU loss on pixel (x1, y1, x2, y2). Defaults to weight 2.
        train_cfg (dict, optional): ``assigner`` config (no sampler: DETR samples nothing).
        test_cfg (dict, optional): ``max_per_img``. Defaults to ``dict(max_per_img=100)``.
        init_cfg (dict, optional): Initialization config.
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_reg_fcs: int = 2,
                 sync_cls_avg_factor: bool = False,
                 loss_cls: ConfigType = dict(type='CrossEntropyLoss', bg_cls_weight=0.1,
                                             use_sigmoid=False, loss_weight=1.0,
                                             class_weight=1.0),
                 loss_bbox: ConfigType = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: ConfigType = dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg: Optional[ConfigType] = _DEFAULT_TRAIN_CFG,
                 test_cfg: Optional[ConfigType] = dict(max_per_img=100),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.num_reg_fcs = num_reg_fcs
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg if test_cfg is not None else dict(max_per_img=100)

        loss_cls = dict(copy.deepcopy(loss_cls))
        self.bg_cls_weight = 0.
        if not loss_cls.get('use_sigmoid', False) and (
                'class_weight' in loss_cls or 'bg_cls_weight' in loss_cls):
            loss_cls['class_weight'], self.bg_cls_weight = self._class_weights(loss_cls)
            loss_cls.pop('bg_cls_weight', None)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.cls_out_channels = num_classes if self.loss_cls.use_sigmoid else num_classes + 1

        if train_cfg:
            if 'assigner' not in train_cfg:
                raise KeyError('DETRHead: train_cfg needs an "assigner" config, got keys '
                               f'{sorted(train_cfg)}.')
            if train_cfg.get('sampler') is not None:
                raise ValueError('DETRHead: DETR matches one-to-one and uses no sampler; '
                                 'remove train_cfg.sampler.')
            self.assigner = TASK_UTILS.build(train_cfg['assigner'])
        self._init_layers()

    def _class_weights(self, loss_cls: dict) -> Tuple[List[float], float]:
        """Per-class weights [num_classes + 1] (background last) and the background weight."""
        class_weight = loss_cls.get('class_weight', 1.0)
        class_weight = 1.0 if class_weight is None else class_weight
        bg_cls_weight = loss_cls.get('bg_cls_weight', class_weight)
        for name, value in (('class_weight', class_weight), ('bg_cls_weight', bg_cls_weight)):
            if not isinstance(value, (float, int)) or isinstance(value, bool):
                raise TypeError(f'DETRHead: loss_cls.{name} must be a float, got '
                                f'{type(value).__name__} ({value!r}).')
        return [float(class_weight)] * self.num_classes + [float(bg_cls_weight)], \
            float(bg_cls_weight)

    def _init_layers(self) -> None:
        """Classifier ``fc_cls``; box branch ``reg_ffn`` -> ReLU -> ``fc_reg``."""
        self.fc_cls = nn.Linear(self.embed_dims, self.cls_out_channels)
        self.activate = nn.ReLU()
        self.reg_ffn = FFN(self.embed_dims, self.embed_dims, self.num_reg_fcs,
                           act_cfg=dict(type='ReLU', inplace=True), ffn_drop=0.,
                           add_identity=False)
        self.fc_reg = nn.Linear(self.embed_dims, 4)

    def forward(self, hidden_states: Tensor) -> Tuple[Tensor, Tensor]:
        """Predict classes and boxes from every decoder layer's output.

        Args:
            hidden_states (Tensor): Decoder outputs, [num_layers, B, Q, embed_dims].

        Returns:
            tuple[Tensor, Tensor]: Class logits [num_layers, B, Q, cls_out_channels] and
            boxes [num_layers, B, Q, 4] as sigmoid (cx, cy, w, h) relative to the image.
        """
        all_cls_scores = self.fc_cls(hidden_states)
        all_bbox_preds = self.fc_reg(self.activate(self.reg_ffn(hidden_states))).sigmoid()
        return all_cls_scores, all_bbox_preds

    def loss(self, hidden_states: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of every decoder layer; ignored instances (crowd boxes) are not used.

        Args:
            hidden_states (Tensor): [num_layers, B, Q, embed_dims].
            batch_data_samples (list[DetDataSample]): Ground truth and meta of each image.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` (last layer) and
            ``d{i}.loss_cls`` ... for the earlier layers.
        """
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(batch_data_samples)
        all_cls_scores, all_bbox_preds = self(hidden_states)
        return self.loss_by_feat(all_cls_scores, all_bbox_preds, batch_gt_instances,
                                 batch_img_metas)

    def loss_by_feat(self,
                     all_cls_scores: Tensor,
                     all_bbox_preds: Tensor,
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Losses from the head outputs of all decoder layers (names: see ``loss``).

        Args:
            all_cls_scores (Tensor): [num_layers, B, Q, cls_out_channels].
            all_bbox_preds (Tensor): [num_layers, B, Q, 4], normalized (cx, cy, w, h).
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4] pixels, ``labels`` [G].
            batch_img_metas (list[dict]): ``img_shape`` of each image.
            batch_gt_instances_ignore (list, optional): Must be None (or all None).
        """
        if batch_gt_instances_ignore is not None and any(
                ignore is not None for ignore in batch_gt_instances_ignore):
            raise ValueError('DETRHead does not use ignored instances; pass '
                             'batch_gt_instances_ignore=None.')
        per_layer = [
            self.loss_by_feat_single(cls_scores, bbox_preds, batch_gt_instances,
                                     batch_img_metas)
            for cls_scores, bbox_preds in zip(all_cls_scores, all_bbox_preds)
        ]
        names = ('loss_cls', 'loss_bbox', 'loss_iou')
        losses = dict(zip(names, per_layer[-1]))  # the last decoder layer
        for i, layer_losses in enumerate(per_layer[:-1]):  # auxiliary losses
            losses.update({f'd{i}.{name}': loss for name, loss in zip(names, layer_losses)})
        return losses

    def loss_by_feat_single(self, cls_scores: Tensor, bbox_preds: Tensor,
                            batch_gt_instances: InstanceList,
                            batch_img_metas: List[dict]) -> Tuple[Tensor, Tensor, Tensor]:
        """``loss_cls``, ``loss_bbox`` and ``loss_iou`` of one decoder layer.

        Args:
            cls_scores (Tensor): [B, Q, cls_out_channels].
            bbox_preds (Tensor): [B, Q, 4], normalized (cx, cy, w, h).
            batch_gt_instances (list[InstanceData]): Ground truth of each image.
            batch_img_metas (list[dict]): ``img_shape`` of each image.
        """
        (labels, label_weights, bbox_targets, bbox_weights, num_total_pos,
         num_total_neg) = self.get_targets(list(cls_scores), list(bbox_preds),
                                           batch_gt_instances, batch_img_metas)
        # Images concatenated: [B*Q], [B*Q], [B*Q, 4], [B*Q, 4].
        labels, label_weights, bbox_targets, bbox_weights = (
            torch.cat(t) for t in (labels, label_weights, bbox_targets, bbox_weights))

        # The no-object queries count bg_cls_weight each in the normalizer, as in DETR.
        cls_avg_factor = num_total_pos * 1.0 + num_total_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_scores.new_tensor([cls_avg_factor])).item()
        cls_avg_factor = max(cls_avg_factor, 1)
        loss_cls = self.loss_cls(cls_scores.reshape(-1, self.cls_out_channels), labels,
                                 label_weights, avg_factor=cls_avg_factor)

        # Box losses are averaged over the ground truths (of all ranks).
        num_total_pos = reduce_mean(loss_cls.new_tensor([num_total_pos]))
        num_total_pos = torch.clamp(num_total_pos, min=1).item()

        factors = torch.cat([
            bbox_preds.new_tensor([w, h, w, h]).expand(bbox_preds.size(1), 4)
            for h, w in (meta['img_shape'][:2] for meta in batch_img_metas)
        ])  # [B*Q, 4]: (w, h, w, h) of each query's image
        bbox_preds = bbox_preds.reshape(-1, 4)
        # GIoU is computed in pixels; L1 on the normalized (cx, cy, w, h) DETR regresses.
        bboxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        bboxes_gt = bbox_cxcywh_to_xyxy(bbox_targets) * factors
        loss_iou = self.loss_iou(bboxes, bboxes_gt, bbox_weights, avg_factor=num_total_pos)
        loss_bbox = self.loss_bbox(bbox_preds, bbox_targets, bbox_weights,
                                   avg_factor=num_total_pos)
        return loss_cls, loss_bbox, loss_iou

    def get_targets(self, cls_scores_list: List[Tensor], bbox_preds_list: List[Tensor],
                    batch_gt_instances: InstanceList, batch_img_metas: List[dict]) -> tuple:
        """Training targets of one decoder layer for every image (``_get_targets_single``).

        Returns:
            tuple: Per-image lists ``labels`` [Q], ``label_weights`` [Q], ``bbox_targets``
            [Q, 4] and ``bbox_weights`` [Q, 4], then ``num_total_pos`` and ``num_total_neg``.
        """
        targets = [
            self._get_targets_single(*args) for args in zip(
                cls_scores_list, bbox_preds_list, batch_gt_instances, batch_img_metas)
        ]
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds = zip(*targets)
        num_total_pos = sum(inds.numel() for inds in pos_inds)
        num_total_neg = sum(inds.numel() for inds in neg_inds)
        return (list(labels), list(label_weights), list(bbox_targets), list(bbox_weights),
                num_total_pos, num_total_neg)

    def _get_targets_single(self, cls_score: Tensor, bbox_pred: Tensor,
                            gt_instances: InstanceData, img_meta: dict) -> tuple:
        """Match one image's queries to its ground truth and build their targets.

        Args:
            cls_score (Tensor): [Q, cls_out_channels] logits.
            bbox_pred (Tensor): [Q, 4] normalized (cx, cy, w, h).
            gt_instances (InstanceData): ``bboxes`` [G, 4] pixels (tensor or box object),
                ``labels`` [G].
            img_meta (dict): ``img_shape`` (h, w).

        Returns:
            tuple: ``labels`` [Q] (``num_classes`` for background), ``label_weights`` [Q],
            ``bbox_targets`` [Q, 4] normalized (cx, cy, w, h), ``bbox_weights`` [Q, 4],
            ``pos_inds`` and ``neg_inds``.
        """
        if not hasattr(self, 'assigner'):
            raise ValueError('DETRHead: computing losses needs train_cfg with an assigner.')
        img_h, img_w = img_meta['img_shape'][:2]
        factor = bbox_pred.new_tensor([img_w, img_h, img_w, img_h])
        num_queries = bbox_pred.size(0)
        pred_instances = InstanceData(scores=cls_score,
                                      bboxes=bbox_cxcywh_to_xyxy(bbox_pred) * factor)
        assign_result = self.assigner.assign(pred_instances=pred_instances,
                                             gt_instances=gt_instances, img_meta=img_meta)
        pos_inds = torch.nonzero(assign_result.gt_inds > 0).squeeze(-1)
        neg_inds = torch.nonzero(assign_result.gt_inds == 0).squeeze(-1)
        pos_gt_inds = assign_result.gt_inds[pos_inds] - 1

        labels = bbox_pred.new_full((num_queries, ), self.num_classes, dtype=torch.long)
        labels[pos_inds] = gt_instances.labels[pos_gt_inds].long()
        label_weights = bbox_pred.new_ones(num_queries)
        bbox_targets = torch.zeros_like(bbox_pred)
        bbox_weights = torch.zeros_like(bbox_pred)
        bbox_weights[pos_inds] = 1.0
        gt_bboxes = get_box_tensor(gt_instances.bboxes)  # HorizontalBoxes or a tensor
        pos_gt_bboxes = gt_bboxes[pos_gt_inds].to(bbox_pred.dtype)
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(pos_gt_bboxes / factor)
        return labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds

    def loss_and_predict(self, hidden_states: Tensor,
                         batch_data_samples: SampleList) -> Tuple[dict, InstanceList]:
        """Losses and detections (in input-image pixels) from one forward pass."""
        batch_gt_instances, _, batch_img_metas = unpack_gt_instances(batch_data_samples)
        outs = self(hidden_states)
        losses = self.loss_by_feat(*outs, batch_gt_instances, batch_img_metas)
        predictions = self.predict_by_feat(*outs, batch_img_metas=batch_img_metas,
                                           rescale=False)
        return losses, predictions

    def predict(self, hidden_states: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> InstanceList:
        """Detections of each image from the last decoder layer.

        Args:
            hidden_states (Tensor): [num_layers, B, Q, embed_dims].
            batch_data_samples (list[DetDataSample]): Meta of each image.
            rescale (bool): Boxes in original-image pixels (else input-image).

        Returns:
            list[InstanceData]: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K] per image.
        """
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        outs = self(hidden_states)
        return self.predict_by_feat(*outs, batch_img_metas=batch_img_metas, rescale=rescale)

    def predict_by_feat(self, all_cls_scores: Tensor, all_bbox_preds: Tensor,
                        batch_img_metas: List[dict], rescale: bool = True) -> InstanceList:
        """Detections from the last layer's outputs (see ``_predict_by_feat_single``)."""
        cls_scores, bbox_preds = all_cls_scores[-1], all_bbox_preds[-1]  # [B, Q, C], [B, Q, 4]
        return [
            self._predict_by_feat_single(cls_scores[i], bbox_preds[i], img_meta, rescale)
            for i, img_meta in enumerate(batch_img_metas)
        ]

    def _predict_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor, img_meta: dict,
                                rescale: bool = True) -> InstanceData:
        """Top-scoring detections of one image.

        Softmax: each query keeps its best object class (background excluded) and the
        ``max_per_img`` best queries are kept. Sigmoid: the ``max_per_img`` best
        (query, class) pairs. Boxes are scaled to ``img_shape`` pixels and clamped to it,
        then divided by ``scale_factor`` (w, h) when ``rescale``.

        Args:
            cls_score (Tensor): [Q, cls_out_channels] logits.
            bbox_pred (Tensor): [Q, 4] normalized (cx, cy, w, h).
            img_meta (dict): ``img_shape`` and (for rescale) ``scale_factor``.
            rescale (bool): Map boxes back to the original image.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K] (int64).
        """
        max_per_img = self.test_cfg.get('max_per_img', len(cls_score))
        if self.loss_cls.use_sigmoid:
            scores, indexes = cls_score.sigmoid().view(-1).topk(
                min(max_per_img, cls_score.numel()))
            labels = indexes % self.num_classes
            bbox_pred = bbox_pred[indexes // self.num_classes]
        else:
            scores, labels = F.softmax(cls_score, dim=-1)[..., :-1].max(-1)  # [Q]
            scores, keep = scores.topk(min(max_per_img, len(scores)))
            bbox_pred, labels = bbox_pred[keep], labels[keep]

        img_h, img_w = img_meta['img_shape'][:2]
        bboxes = bbox_cxcywh_to_xyxy(bbox_pred)  # [K, 4] relative
        bboxes = bboxes * bboxes.new_tensor([img_w, img_h, img_w, img_h])
        bboxes[:, 0::2] = bboxes[:, 0::2].clamp(min=0, max=img_w)
        bboxes[:, 1::2] = bboxes[:, 1::2].clamp(min=0, max=img_h)
        if rescale:
            if img_meta.get('scale_factor') is None:
                raise KeyError('DETRHead: rescale=True needs img_meta["scale_factor"].')
            w_scale, h_scale = img_meta['scale_factor'][:2]
            bboxes = bboxes / bboxes.new_tensor([w_scale, h_scale, w_scale, h_scale])
        return InstanceData(bboxes=bboxes, scores=scores, labels=labels)
