"""BBoxHead: the simplest RoI box head (optional average pool, then one fc per branch).

It also holds what every second-stage box head shares: training targets, losses and
predictions (the box refinement of multi-stage heads is in ``bbox_refine.py``). Subclasses
such as :class:`ConvFCBBoxHead` add layers in front of the two predictors.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from mmdet_lite.models.layers.bbox_nms import multiclass_nms
from mmdet_lite.models.losses import accuracy
from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor, scale_boxes
from mmdet_lite.utils import ConfigType, InstanceList, OptMultiConfig
from ...utils import empty_instances
from .bbox_refine import BBoxHeadArgumentError, BBoxRefineMixin


@MODELS.register_module()
class BBoxHead(BBoxRefineMixin, BaseModule):
    """Classification + box regression of RoIs: ``fc_cls`` and ``fc_reg`` on RoI features.

    ::

        roi feats [K, C, S, S] -> avg pool [K, C] (with_avg_pool) or flatten [K, C*S*S]
            -> fc_cls [K, num_classes + 1]      (background LAST)
            -> fc_reg [K, num_classes * 4]      ([K, 4] when reg_class_agnostic)

    The C4 Faster R-CNN uses it after the ``ResLayer`` shared head (``with_avg_pool=True``,
    ``in_channels=2048``).

    Args:
        with_avg_pool (bool): Average-pool the RoI features to [K, C] first.
        with_cls (bool): Build the classifier ``fc_cls``.
        with_reg (bool): Build the regressor ``fc_reg``.
        roi_feat_size (int | tuple[int]): Spatial size of the RoI features.
        in_channels (int): Channels of the RoI features.
        num_classes (int): Object classes, background excluded (80 for COCO).
        bbox_coder (dict): Box coder; stds (0.1, 0.1, 0.2, 0.2) for R-CNN.
        predict_box_type (str): Box type of the predictions ('hbox').
        reg_class_agnostic (bool): One box per RoI instead of one per class.
        reg_decoded_bbox (bool): Regress decoded boxes (for IoU-style losses).
        reg_predictor_cfg (dict): Layer of ``fc_reg`` (``in_features`` and
            ``out_features`` are filled in). Defaults to ``dict(type='Linear')``.
        cls_predictor_cfg (dict): Layer of ``fc_cls``, e.g. ``dict(type='NormedLinear',
            tempearture=20)`` for the seesaw-loss configs.
        loss_cls (dict): Classification loss. A loss with ``custom_cls_channels`` sets the
            classifier width (``get_cls_channels``) and the score activation
            (``get_activation``); ``custom_accuracy`` / ``custom_activation`` make it report
            its own accuracy (``get_accuracy``).
        loss_bbox (dict): Regression loss.
        init_cfg (dict | list[dict], optional): Initialization config; None gives
            Normal(std=0.01) for ``fc_cls`` and Normal(std=0.001) for ``fc_reg``.
    """

    def __init__(self,
                 with_avg_pool: bool = False,
                 with_cls: bool = True,
                 with_reg: bool = True,
                 roi_feat_size: Union[int, Tuple[int, int]] = 7,
                 in_channels: int = 256,
                 num_classes: int = 80,
                 bbox_coder: ConfigType = dict(
                     type='DeltaXYWHBBoxCoder', clip_border=True,
                     target_means=[0., 0., 0., 0.], target_stds=[0.1, 0.1, 0.2, 0.2]),
                 predict_box_type: str = 'hbox',
                 reg_class_agnostic: bool = False,
                 reg_decoded_bbox: bool = False,
                 reg_predictor_cfg: ConfigType = dict(type='Linear'),
                 cls_predictor_cfg: ConfigType = dict(type='Linear'),
                 loss_cls: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=False,
                                             loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not (with_cls or with_reg):
            raise BBoxHeadArgumentError('BBoxHead needs with_cls or with_reg (or both) to be '
                                        'True')
        self.with_avg_pool = with_avg_pool
        self.with_cls = with_cls
        self.with_reg = with_reg
        self.roi_feat_size = _pair(roi_feat_size)
        self.roi_feat_area = self.roi_feat_size[0] * self.roi_feat_size[1]
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.predict_box_type = predict_box_type
        self.reg_class_agnostic = reg_class_agnostic
        self.reg_decoded_bbox = reg_decoded_bbox
        self.reg_predictor_cfg = reg_predictor_cfg
        self.cls_predictor_cfg = cls_predictor_cfg
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)

        in_features = in_channels
        if with_avg_pool:
            self.avg_pool = nn.AvgPool2d(self.roi_feat_size)
        else:
            in_features *= self.roi_feat_area
        if with_cls:
            self.fc_cls = self._build_cls_predictor(in_features)
        if with_reg:
            self.fc_reg = self._build_reg_predictor(in_features)
        if init_cfg is None:
            self.init_cfg = []
            if with_cls:
                self.init_cfg.append(dict(type='Normal', std=0.01, override=dict(name='fc_cls')))
            if with_reg:
                self.init_cfg.append(dict(type='Normal', std=0.001,
                                          override=dict(name='fc_reg')))

    # ------------------------------------------------------------------ layers
    @property
    def reg_dim(self) -> int:
        """int: Values regressed per box (the coder's ``encode_size``, 4 for deltas)."""
        return getattr(self.bbox_coder, 'encode_size', 4)

    @property
    def custom_cls_channels(self) -> bool:
        """bool: Whether the loss decides the classifier width and score activation."""
        return getattr(self.loss_cls, 'custom_cls_channels', False)

    @property
    def custom_activation(self) -> bool:
        """bool: Whether the loss has its own activation (and accuracy) of the logits."""
        return getattr(self.loss_cls, 'custom_activation', False)

    @property
    def custom_accuracy(self) -> bool:
        """bool: Whether the loss computes its own accuracy."""
        return getattr(self.loss_cls, 'custom_accuracy', False)

    def _build_cls_predictor(self, in_features: int) -> nn.Module:
        """``fc_cls`` from ``cls_predictor_cfg``: in_features -> classes + background."""
        out_features = (self.loss_cls.get_cls_channels(self.num_classes)
                        if self.custom_cls_channels else self.num_classes + 1)
        cfg = self.cls_predictor_cfg.copy()
        cfg.update(in_features=in_features, out_features=out_features)
        return MODELS.build(cfg)

    def _build_reg_predictor(self, in_features: int) -> nn.Module:
        """``fc_reg`` from ``reg_predictor_cfg``: in_features -> reg_dim (per class)."""
        out_features = self.reg_dim if self.reg_class_agnostic else \
            self.reg_dim * self.num_classes
        cfg = self.reg_predictor_cfg.copy()
        if isinstance(cfg, (dict, ConfigDict)):
            cfg.update(in_features=in_features, out_features=out_features)
        return MODELS.build(cfg)

    def forward(self, x: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Classify and regress RoI features.

        Args:
            x (Tensor): RoI features [K, in_channels, S, S].

        Returns:
            tuple: ``cls_score`` [K, num_classes + 1] and ``bbox_pred`` [K, num_classes * 4]
            (or [K, 4]); None for a branch the head does not have.
        """
        if self.with_avg_pool:
            # AvgPool2d rejects an empty batch; the mean over H, W is the same pooling.
            x = self.avg_pool(x).flatten(1) if x.numel() > 0 else x.mean(dim=(-1, -2))
        else:
            x = x.flatten(1)
        cls_score = self.fc_cls(x) if self.with_cls else None
        bbox_pred = self.fc_reg(x) if self.with_reg else None
        return cls_score, bbox_pred

    # ------------------------------------------------------------------ targets
    def _get_targets_single(self, pos_priors: Tensor, neg_priors: Tensor,
                            pos_gt_bboxes: Tensor, pos_gt_labels: Tensor,
                            cfg: ConfigType) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Targets of one image's sampled RoIs, positives first.

        Args:
            pos_priors (Tensor): [P, 4] positive RoIs.
            neg_priors (Tensor): [N, 4] negative RoIs.
            pos_gt_bboxes (Tensor | BaseBoxes): [P, 4] GT box of each positive.
            pos_gt_labels (Tensor): [P] GT label of each positive.
            cfg (dict): ``train_cfg`` of the R-CNN (``pos_weight``).

        Returns:
            tuple: ``labels`` [P+N] (background ``num_classes``), ``label_weights`` [P+N],
            ``bbox_targets`` [P+N, reg_dim] and ``bbox_weights`` [P+N, reg_dim].
        """
        num_pos, num_neg = pos_priors.size(0), neg_priors.size(0)
        num_samples = num_pos + num_neg
        gt_boxes = get_box_tensor(pos_gt_bboxes)
        reg_dim = gt_boxes.size(-1) if self.reg_decoded_bbox else self.reg_dim
        labels = pos_priors.new_full((num_samples, ), self.num_classes, dtype=torch.long)
        label_weights = pos_priors.new_zeros(num_samples)
        bbox_targets = pos_priors.new_zeros(num_samples, reg_dim)
        bbox_weights = pos_priors.new_zeros(num_samples, reg_dim)
        if num_pos > 0:
            labels[:num_pos] = pos_gt_labels
            pos_weight = cfg.get('pos_weight', -1)
            label_weights[:num_pos] = 1.0 if pos_weight <= 0 else pos_weight
            # IoU-style losses compare absolute boxes, so the target is the GT box itself.
            bbox_targets[:num_pos] = gt_boxes if self.reg_decoded_bbox else \
                get_box_tensor(self.bbox_coder.encode(pos_priors, pos_gt_bboxes))
            bbox_weights[:num_pos] = 1
        if num_neg > 0:
            label_weights[-num_neg:] = 1.0
        return labels, label_weights, bbox_targets, bbox_weights

    def get_targets(self, sampling_results: List, rcnn_train_cfg: ConfigType,
                    concat: bool = True) -> Tuple:
        """Targets of all sampled RoIs of the batch (see ``_get_targets_single``).

        Args:
            sampling_results (list[SamplingResult]): Per-image sampling results.
            rcnn_train_cfg (dict): ``train_cfg.rcnn``.
            concat (bool): Concatenate the images (one tensor per target); otherwise
                lists with one tensor per image.

        Returns:
            tuple: ``labels`` [K], ``label_weights`` [K], ``bbox_targets`` [K, 4],
            ``bbox_weights`` [K, 4], in the order of ``bbox2roi([res.priors ...])``.
        """
        per_image = [
            self._get_targets_single(res.pos_priors, res.neg_priors, res.pos_gt_bboxes,
                                     res.pos_gt_labels, rcnn_train_cfg)
            for res in sampling_results
        ]
        targets = tuple(list(parts) for parts in zip(*per_image))
        if concat:
            targets = tuple(torch.cat(parts, 0) for parts in targets)
        return targets

    # ------------------------------------------------------------------ losses
    def loss_and_target(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor,
                        sampling_results: List, rcnn_train_cfg: ConfigType,
                        concat: bool = True,
                        reduction_override: Optional[str] = None) -> Dict:
        """Losses of the sampled RoIs, with their targets (used by cascades).

        Args:
            cls_score (Tensor): [K, num_classes + 1] logits.
            bbox_pred (Tensor): [K, num_classes * 4] (or [K, 4]) box deltas.
            rois (Tensor): [K, 5] the sampled RoIs (batch index, x1, y1, x2, y2).
            sampling_results (list[SamplingResult]): Per-image sampling results.
            rcnn_train_cfg (dict): ``train_cfg.rcnn``.
            concat (bool): See ``get_targets``.
            reduction_override (str, optional): 'none', 'mean' or 'sum' for the losses.

        Returns:
            dict: ``loss_bbox`` (a dict with ``loss_cls``, ``acc``, ``loss_bbox``) and
            ``bbox_targets`` (the ``get_targets`` tuple).
        """
        targets = self.get_targets(sampling_results, rcnn_train_cfg, concat=concat)
        losses = self.loss(cls_score, bbox_pred, rois, *targets,
                           reduction_override=reduction_override)
        return dict(loss_bbox=losses, bbox_targets=targets)

    def loss(self, cls_score: Optional[Tensor], bbox_pred: Optional[Tensor], rois: Tensor,
             labels: Tensor, label_weights: Tensor, bbox_targets: Tensor,
             bbox_weights: Tensor, reduction_override: Optional[str] = None
             ) -> Dict[str, Tensor]:
        """Classification over all sampled RoIs, box regression over the positives.

        The box loss is averaged over all sampled RoIs (``avg_factor=K``), as mmdetection
        does, so its scale does not depend on how many positives a batch happens to have.

        Returns:
            dict[str, Tensor]: ``loss_cls`` and ``acc`` (or the loss's own entries) and
            ``loss_bbox``.
        """
        losses = dict()
        if cls_score is not None and cls_score.numel() > 0:
            avg_factor = max(float(torch.sum(label_weights > 0).item()), 1.0)
            loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor,
                                     reduction_override=reduction_override)
            if isinstance(loss_cls, dict):
                losses.update(loss_cls)
            else:
                losses['loss_cls'] = loss_cls
            if self.custom_activation:
                losses.update(self.loss_cls.get_accuracy(cls_score, labels))
            else:
                losses['acc'] = accuracy(cls_score, labels)
        if bbox_pred is not None:
            pos = (labels >= 0) & (labels < self.num_classes)
            if pos.any():
                if self.reg_class_agnostic:
                    pos_pred = bbox_pred.view(bbox_pred.size(0), -1)[pos]
                else:
                    per_class = bbox_pred.view(bbox_pred.size(0), self.num_classes, -1)
                    pos_pred = per_class[pos, labels[pos]]  # [P, reg_dim]
                if self.reg_decoded_bbox:
                    # Decoding only the target class's deltas gives the same boxes as
                    # decoding every class first.
                    pos_pred = get_box_tensor(self.bbox_coder.decode(rois[pos, 1:], pos_pred))
                losses['loss_bbox'] = self.loss_bbox(
                    pos_pred, bbox_targets[pos], bbox_weights[pos],
                    avg_factor=bbox_targets.size(0), reduction_override=reduction_override)
            else:
                # Keep the graph connected so every parameter still gets a (zero) gradient.
                losses['loss_bbox'] = bbox_pred[pos].sum()
        return losses

    # ------------------------------------------------------------------ predict
    def predict_by_feat(self, rois: Tuple[Tensor, ...], cls_scores: Tuple[Tensor, ...],
                        bbox_preds: Tuple[Optional[Tensor], ...], batch_img_metas: List[dict],
                        rcnn_test_cfg: Optional[ConfigDict] = None,
                        rescale: bool = False) -> InstanceList:
        """Turn per-image RoI predictions into final detections.

        Args:
            rois (tuple[Tensor]): Per image [K_i, 5].
            cls_scores (tuple[Tensor]): Per image [K_i, num_classes + 1] logits.
            bbox_preds (tuple[Tensor | None]): Per image [K_i, num_classes * 4] deltas;
                None keeps the RoIs (clipped) as boxes.
            batch_img_metas (list[dict]): Image metas (``img_shape``, ``scale_factor``).
            rcnn_test_cfg (dict, optional): ``score_thr``, ``nms``, ``max_per_img``; None
                returns every RoI's decoded boxes [K_i, C*4] and scores [K_i, C+1].
            rescale (bool): Map boxes back to the original image.

        Returns:
            list[InstanceData]: ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N].
        """
        if len(cls_scores) != len(bbox_preds):
            raise BBoxHeadArgumentError(f'cls_scores has {len(cls_scores)} images but '
                                        f'bbox_preds has {len(bbox_preds)}')
        return [
            self._predict_by_feat_single(rois[i], cls_scores[i], bbox_preds[i], meta,
                                         rescale=rescale, rcnn_test_cfg=rcnn_test_cfg)
            for i, meta in enumerate(batch_img_metas)
        ]

    def _predict_by_feat_single(self, roi: Tensor, cls_score: Tensor,
                                bbox_pred: Optional[Tensor], img_meta: dict,
                                rescale: bool = False,
                                rcnn_test_cfg: Optional[ConfigDict] = None) -> InstanceData:
        """Detections of one image (see ``predict_by_feat``)."""
        results = InstanceData()
        if roi.size(0) == 0:
            return empty_instances([img_meta], roi.device, task_type='bbox',
                                   instance_results=[results],
                                   box_type=self.predict_box_type, use_box_type=False,
                                   num_classes=self.num_classes,
                                   score_per_cls=rcnn_test_cfg is None)[0]
        if self.custom_cls_channels:
            scores = self.loss_cls.get_activation(cls_score)
        else:
            scores = F.softmax(cls_score, dim=-1) if cls_score is not None else None
        img_shape = img_meta['img_shape']
        num_rois = roi.size(0)
        if bbox_pred is not None:
            per_roi = 1 if self.reg_class_agnostic else self.num_classes
            priors = roi.repeat_interleave(per_roi, dim=0)[:, 1:]  # [K*C, 4]
            bboxes = self.bbox_coder.decode(priors, bbox_pred.view(-1, self.reg_dim),
                                            max_shape=img_shape)
        else:
            bboxes = roi[:, 1:].clone()
            if img_shape is not None and bboxes.size(-1) == 4:
                bboxes[:, 0::2] = bboxes[:, 0::2].clamp(min=0, max=img_shape[1])
                bboxes[:, 1::2] = bboxes[:, 1::2].clamp(min=0, max=img_shape[0])
        if rescale and bboxes.size(0) > 0:
            if img_meta.get('scale_factor') is None:
                raise BBoxHeadArgumentError("rescale=True needs 'scale_factor' in the image "
                                            'meta')
            bboxes = scale_boxes(bboxes, [1 / s for s in img_meta['scale_factor']])
        bboxes = get_box_tensor(bboxes).view(num_rois, -1)  # [K, C*4] or [K, 4]
        if rcnn_test_cfg is None:
            # Raw per-class boxes and scores, e.g. for test-time augmentation merging.
            results.bboxes, results.scores = bboxes, scores
            return results
        det_bboxes, det_scores, det_labels = multiclass_nms(
            bboxes, scores, rcnn_test_cfg['score_thr'], rcnn_test_cfg['nms'],
            rcnn_test_cfg['max_per_img'])
        results.bboxes, results.scores, results.labels = det_bboxes, det_scores, det_labels
        return results
