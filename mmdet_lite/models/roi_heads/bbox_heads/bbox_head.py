"""The second-stage box head's targets, losses and predictions (layers live in subclasses)."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet_lite.models.layers.bbox_nms import multiclass_nms
from mmdet_lite.models.losses import accuracy
from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor, scale_boxes
from mmdet_lite.utils import ConfigType, InstanceList, OptMultiConfig


class BBoxHead(BaseModule):
    """Classification + class-specific box regression for RoIs.

    The forward pass (``forward(roi_feats) -> (cls_score, bbox_pred)``) is defined by a
    subclass such as :class:`ConvFCBBoxHead`; this class turns sampled RoIs into targets,
    computes the losses and decodes predictions.

    Class layout follows mmdetection 2.0+: ``cls_score`` has ``num_classes + 1`` columns
    with the background LAST; ``bbox_pred`` has ``num_classes * 4`` columns (4 when
    ``reg_class_agnostic``).

    Args:
        num_classes (int): Object classes, background excluded (80 for COCO).
        bbox_coder (dict): Box coder; the RoI head uses stds (0.1, 0.1, 0.2, 0.2).
        reg_class_agnostic (bool): One box per RoI instead of one per class.
        reg_decoded_bbox (bool): Regress decoded boxes (for IoU-style losses).
        loss_cls (dict): Classification loss config.
        loss_bbox (dict): Regression loss config.
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    def __init__(self,
                 num_classes: int = 80,
                 bbox_coder: ConfigType = dict(
                     type='DeltaXYWHBBoxCoder', clip_border=True,
                     target_means=[0., 0., 0., 0.], target_stds=[0.1, 0.1, 0.2, 0.2]),
                 reg_class_agnostic: bool = False,
                 reg_decoded_bbox: bool = False,
                 loss_cls: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=False,
                                             loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1 (object classes, background '
                             f'excluded), got {num_classes}')
        self.num_classes = num_classes
        self.reg_class_agnostic = reg_class_agnostic
        self.reg_decoded_bbox = reg_decoded_bbox
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)

    # ------------------------------------------------------------------ targets
    def get_targets(self, sampling_results: List, rcnn_train_cfg: ConfigType
                    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Classification and regression targets of all sampled RoIs of the batch.

        Positives get their GT label and encoded GT box; negatives the background label
        ``num_classes`` and zero box weight.

        Returns:
            tuple: ``labels`` [K], ``label_weights`` [K], ``bbox_targets`` [K, 4],
            ``bbox_weights`` [K, 4], with K the sampled RoIs of all images, positives first
            within each image (the order of ``bbox2roi([res.priors ...])``).
        """
        pos_weight = rcnn_train_cfg.get('pos_weight', -1)
        labels, label_weights, bbox_targets, bbox_weights = [], [], [], []
        for res in sampling_results:
            num_pos, num_neg = res.pos_priors.size(0), res.neg_priors.size(0)
            num = num_pos + num_neg
            img_labels = res.pos_priors.new_full((num, ), self.num_classes, dtype=torch.long)
            img_label_weights = res.pos_priors.new_zeros(num)
            img_targets = res.pos_priors.new_zeros(num, 4)
            img_weights = res.pos_priors.new_zeros(num, 4)
            if num_pos > 0:
                img_labels[:num_pos] = res.pos_gt_labels
                img_label_weights[:num_pos] = 1.0 if pos_weight <= 0 else pos_weight
                # pos_gt_bboxes / pos_priors keep the gt's kind (box object or tensor)
                img_targets[:num_pos] = (get_box_tensor(res.pos_gt_bboxes)
                                         if self.reg_decoded_bbox else
                                         self.bbox_coder.encode(res.pos_priors,
                                                                res.pos_gt_bboxes))
                img_weights[:num_pos] = 1.0
            img_label_weights[num_pos:] = 1.0
            labels.append(img_labels)
            label_weights.append(img_label_weights)
            bbox_targets.append(img_targets)
            bbox_weights.append(img_weights)
        return (torch.cat(labels), torch.cat(label_weights), torch.cat(bbox_targets),
                torch.cat(bbox_weights))

    # ------------------------------------------------------------------ losses
    def loss_and_target(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor,
                        sampling_results: List, rcnn_train_cfg: ConfigType) -> Dict:
        """Losses of the sampled RoIs.

        Args:
            cls_score (Tensor): [K, num_classes + 1] logits.
            bbox_pred (Tensor): [K, num_classes * 4] (or [K, 4]) box deltas.
            rois (Tensor): [K, 5] the sampled RoIs.
            sampling_results (list): Per-image sampling results.
            rcnn_train_cfg (dict): ``train_cfg.rcnn``.

        Returns:
            dict: ``loss_bbox`` (a dict with ``loss_cls``, ``acc``, ``loss_bbox``) and
            ``bbox_targets``.
        """
        targets = self.get_targets(sampling_results, rcnn_train_cfg)
        losses = self.loss(cls_score, bbox_pred, rois, *targets)
        return dict(loss_bbox=losses, bbox_targets=targets)

    def loss(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor, labels: Tensor,
             label_weights: Tensor, bbox_targets: Tensor, bbox_weights: Tensor
             ) -> Dict[str, Tensor]:
        """Cross-entropy over all sampled RoIs, box regression over the positives.

        The box loss is averaged over all sampled RoIs (``avg_factor=K``), as mmdetection
        does, so its scale does not depend on how many positives a batch happens to have.
        """
        losses = dict()
        avg_factor = max(float(torch.sum(label_weights > 0).item()), 1.0)
        losses['loss_cls'] = self.loss_cls(cls_score, labels, label_weights,
                                           avg_factor=avg_factor)
        losses['acc'] = accuracy(cls_score, labels)

        pos = (labels >= 0) & (labels < self.num_classes)
        if pos.any():
            if self.reg_class_agnostic:
                pos_pred = bbox_pred.view(bbox_pred.size(0), 4)[pos]
            else:
                per_class = bbox_pred.view(bbox_pred.size(0), -1, 4)  # [K, C, 4]
                pos_pred = per_class[pos, labels[pos]]  # [P, 4]
            if self.reg_decoded_bbox:
                pos_pred = get_box_tensor(self.bbox_coder.decode(rois[pos, 1:], pos_pred))
            losses['loss_bbox'] = self.loss_bbox(pos_pred, bbox_targets[pos],
                                                 bbox_weights[pos],
                                                 avg_factor=bbox_targets.size(0))
        else:
            # Keep the graph connected so every parameter still gets a (zero) gradient.
            losses['loss_bbox'] = bbox_pred.sum() * 0
        return losses

    # ------------------------------------------------------------------ predict
    def predict_by_feat(self, rois: Tuple[Tensor, ...], cls_scores: Tuple[Tensor, ...],
                        bbox_preds: Tuple[Tensor, ...], batch_img_metas: List[dict],
                        rcnn_test_cfg: Optional[ConfigDict] = None,
                        rescale: bool = False) -> InstanceList:
        """Turn per-image RoI predictions into final detections.

        Args:
            rois (tuple[Tensor]): Per image [K_i, 5].
            cls_scores (tuple[Tensor]): Per image [K_i, num_classes + 1] logits.
            bbox_preds (tuple[Tensor]): Per image [K_i, num_classes * 4] deltas.
            batch_img_metas (list[dict]): Image metas (``img_shape``, ``scale_factor``).
            rcnn_test_cfg (dict, optional): ``score_thr``, ``nms``, ``max_per_img``; None
                returns every RoI's decoded boxes and scores without NMS.
            rescale (bool): Map boxes back to the original image.

        Returns:
            list[InstanceData]: ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N].
        """
        results = []
        for img_rois, img_scores, img_deltas, meta in zip(rois, cls_scores, bbox_preds,
                                                          batch_img_metas):
            results.append(self._predict_single(img_rois, img_scores, img_deltas, meta,
                                                rcnn_test_cfg, rescale))
        return results

    def _predict_single(self, rois: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                        img_meta: dict, rcnn_test_cfg: Optional[ConfigDict],
                        rescale: bool) -> InstanceData:
        results = InstanceData()
        if rois.size(0) == 0:
            results.bboxes = rois.new_zeros(0, 4)
            results.scores = rois.new_zeros(0)
            results.labels = rois.new_zeros(0, dtype=torch.long)
            return results
        scores = F.softmax(cls_score, dim=-1)  # [K, C+1], background last
        num_rois = rois.size(0)
        if self.reg_class_agnostic:
            deltas = bbox_pred.view(num_rois, 1, 4)
        else:
            deltas = bbox_pred.view(num_rois, -1, 4)  # [K, C, 4]
        priors = rois[:, None, 1:].expand(-1, deltas.size(1), 4)
        bboxes = self.bbox_coder.decode(priors.reshape(-1, 4), deltas.reshape(-1, 4),
                                        max_shape=img_meta['img_shape'])
        bboxes = get_box_tensor(bboxes)  # the coder may return HorizontalBoxes
        bboxes = bboxes.view(num_rois, -1)  # [K, C*4]
        if rescale:
            w_scale, h_scale = img_meta['scale_factor']
            bboxes = scale_boxes(bboxes.view(-1, 4), (1 / w_scale, 1 / h_scale)).view(
                num_rois, -1)
        if rcnn_test_cfg is None:
            results.bboxes, results.scores = bboxes, scores
            return results
        det_bboxes, det_scores, det_labels = multiclass_nms(
            bboxes, scores, rcnn_test_cfg['score_thr'], rcnn_test_cfg['nms'],
            rcnn_test_cfg['max_per_img'])
        results.bboxes, results.scores, results.labels = det_bboxes, det_scores, det_labels
        return results
