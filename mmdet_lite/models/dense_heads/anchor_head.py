"""AnchorHead: a dense head that classifies and regresses a fixed set of anchors per position.

Training matches anchors to ground truth (assigner), picks which anchors enter the loss
(sampler) and regresses the matched boxes as deltas from the anchors (box coder). Subclasses
(RPNHead, RetinaHead) replace the layers in ``_init_layers`` / ``forward_single``.
"""
from typing import List, Optional, Tuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor, get_box_wh
from mmdet_lite.utils import (ConfigType, InstanceList, OptConfigType, OptInstanceList,
                              OptMultiConfig)
from ..task_modules.prior_generators import anchor_inside_flags
from ..task_modules.samplers import PseudoSampler
from ..utils import images_to_levels
from .base_dense_head import BaseDenseHead


@MODELS.register_module()
class AnchorHead(BaseDenseHead):
    """Anchor-based dense head with one 1x1 conv for classes and one for box deltas.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        feat_channels (int): Hidden channels, used by subclasses with extra convs.
        anchor_generator (dict): Config of the anchor generator (TASK_UTILS).
        bbox_coder (dict): Config of the box coder (TASK_UTILS).
        reg_decoded_bbox (bool): Whether the regression loss compares decoded boxes instead of
            deltas (for IoU-style losses).
        loss_cls (dict): Classification loss config; ``use_sigmoid`` decides between one
            sigmoid per class and a softmax over classes + background.
        loss_bbox (dict): Regression loss config.
        train_cfg (dict, optional): ``assigner``, optional ``sampler`` (PseudoSampler when
            absent), ``allowed_border`` and ``pos_weight``.
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``min_bbox_size``, ``nms``,
            ``max_per_img``.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 256,
                 anchor_generator: ConfigType = dict(
                     type='AnchorGenerator',
                     scales=[8, 16, 32],
                     ratios=[0.5, 1.0, 2.0],
                     strides=[4, 8, 16, 32, 64]),
                 bbox_coder: ConfigType = dict(
                     type='DeltaXYWHBBoxCoder',
                     clip_border=True,
                     target_means=(.0, .0, .0, .0),
                     target_stds=(1.0, 1.0, 1.0, 1.0)),
                 reg_decoded_bbox: bool = False,
                 loss_cls: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                 loss_bbox: ConfigType = dict(
                     type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = dict(type='Normal', layer='Conv2d', std=0.01)
                 ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.feat_channels = feat_channels
        self.use_sigmoid_cls = loss_cls.get('use_sigmoid', False)
        # Sigmoid scores every class independently; softmax needs a background column.
        self.cls_out_channels = num_classes if self.use_sigmoid_cls else num_classes + 1
        if self.cls_out_channels <= 0:
            raise ValueError(f'num_classes must be >= 1 (or >= 0 with a softmax loss), '
                             f'got {num_classes}')
        self.reg_decoded_bbox = reg_decoded_bbox
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if train_cfg:
            if train_cfg.get('assigner') is None:
                raise KeyError("train_cfg needs an 'assigner' config, e.g. "
                               "dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3)")
            self.assigner = TASK_UTILS.build(train_cfg['assigner'])
            if train_cfg.get('sampler') is not None:
                self.sampler = TASK_UTILS.build(train_cfg['sampler'],
                                                default_args=dict(context=self))
            else:
                self.sampler = PseudoSampler(context=self)
            if getattr(self.sampler, 'add_gt_as_proposals', False):
                # Sampled indices would then point past the anchors into the added gt boxes.
                raise ValueError('train_cfg.sampler.add_gt_as_proposals must be False in an '
                                 'anchor head: only anchors can be targets of a dense head')
        self.prior_generator = TASK_UTILS.build(anchor_generator)
        # Every level has the same number of anchors per position (SSD aside).
        self.num_base_priors = self.prior_generator.num_base_priors[0]
        self._init_layers()

    def _init_layers(self) -> None:
        """Create the prediction layers."""
        self.conv_cls = nn.Conv2d(self.in_channels,
                                  self.num_base_priors * self.cls_out_channels, 1)
        self.conv_reg = nn.Conv2d(self.in_channels, self.num_base_priors * 4, 1)

    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Predict one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].

        Returns:
            tuple: cls_score [B, A * cls_out_channels, H, W] and bbox_pred [B, A * 4, H, W].
        """
        return self.conv_cls(x), self.conv_reg(x)

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
        """Predict every level with the same (shared) layers.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: ``cls_scores``, per level [B, A * cls_out_channels, H_l, W_l], and
            ``bbox_preds``, per level [B, A * 4, H_l, W_l].
        """
        cls_scores, bbox_preds = [], []
        for feat in x:
            cls_score, bbox_pred = self.forward_single(feat)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return cls_scores, bbox_preds

    def get_anchors(self, featmap_sizes: List[Tuple[int, int]], batch_img_metas: List[dict],
                    device: torch.device = 'cpu') -> Tuple[list, list]:
        """Anchors and their valid flags for every image.

        Args:
            featmap_sizes (list[tuple]): (H_l, W_l) of each level.
            batch_img_metas (list[dict]): Meta of each image (``pad_shape`` or ``img_shape``).
            device (torch.device | str): Device of the outputs.

        Returns:
            tuple:

            - anchor_list (list[list[Tensor]]): Per image, per level [H_l * W_l * A, 4]
              (the same tensors for every image).
            - valid_flag_list (list[list[Tensor]]): Per image, per level bool
              [H_l * W_l * A], False for anchors centred outside the padded image.
        """
        mlvl_anchors = self.prior_generator.grid_priors(featmap_sizes, device=device)
        anchor_list = [mlvl_anchors for _ in batch_img_metas]
        valid_flag_list = []
        for img_meta in batch_img_metas:
            pad_shape = img_meta.get('pad_shape', img_meta.get('img_shape'))
            if pad_shape is None:
                raise KeyError("image meta needs 'pad_shape' or 'img_shape' to flag anchors "
                               f'over padding, got keys {sorted(img_meta)}')
            valid_flag_list.append(
                self.prior_generator.valid_flags(featmap_sizes, pad_shape[:2], device))
        return anchor_list, valid_flag_list

    def _get_targets_single(self,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None) -> tuple:
        """Targets of every anchor of one image.

        Args:
            flat_anchors (Tensor): Anchors of all levels [N, 4].
            valid_flags (Tensor): Bool [N].
            gt_instances (InstanceData): ``bboxes`` [G, 4] (tensor or box object) and
                ``labels`` [G].
            img_meta (dict): Meta of the image (``img_shape``).
            gt_instances_ignore (InstanceData, optional): ``bboxes`` [M, 4] to ignore.

        Returns:
            tuple: labels [N] (``num_classes`` = background), label_weights [N],
            bbox_targets [N, 4], bbox_weights [N, 4] and the SamplingResult.
        """
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'],
                                           self.train_cfg.get('allowed_border', -1))
        if not inside_flags.any():
            raise ValueError('No anchor lies inside the image boundary; check the image size '
                             'and anchor sizes, or set train_cfg.allowed_border=-1')
        inside_inds = inside_flags.nonzero().squeeze(1)  # [N_in] positions in flat_anchors
        pred_instances = InstanceData(priors=flat_anchors[inside_inds])
        # A box without area has IoU 0 with every anchor: a low-quality match with
        # min_pos_iou=0 (RetinaNet) would make every anchor its positive, with log(0) size
        # targets. It cannot be regressed to, so it takes no part in the targets.
        gt_w, gt_h = get_box_wh(gt_instances.bboxes)
        has_area = (gt_w > 0) & (gt_h > 0)
        if not has_area.all():
            gt_instances = gt_instances[has_area]
        assign_result = self.assigner.assign(pred_instances, gt_instances, gt_instances_ignore)
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        num_anchors = flat_anchors.size(0)
        labels = flat_anchors.new_full((num_anchors, ), self.num_classes, dtype=torch.long)
        label_weights = flat_anchors.new_zeros(num_anchors)
        bbox_targets = flat_anchors.new_zeros(num_anchors, 4)
        bbox_weights = flat_anchors.new_zeros(num_anchors, 4)
        # The sampler indexes the inside anchors; map back to all anchors.
        pos_inds = inside_inds[sampling_result.pos_inds]
        neg_inds = inside_inds[sampling_result.neg_inds]
        if pos_inds.numel() > 0:
            if self.reg_decoded_bbox:
                pos_bbox_targets = get_box_tensor(sampling_result.pos_gt_bboxes)
            else:
                pos_bbox_targets = self.bbox_coder.encode(sampling_result.pos_priors,
                                                          sampling_result.pos_gt_bboxes)
            bbox_targets[pos_inds] = pos_bbox_targets.to(bbox_targets.dtype)
            bbox_weights[pos_inds] = 1.0
            labels[pos_inds] = sampling_result.pos_gt_labels.long()
            pos_weight = self.train_cfg.get('pos_weight', -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
        label_weights[neg_inds] = 1.0
        return labels, label_weights, bbox_targets, bbox_weights, sampling_result

    def get_targets(self,
                    anchor_list: List[List[Tensor]],
                    valid_flag_list: List[List[Tensor]],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None) -> tuple:
        """Targets of every anchor of every image, regrouped per level.

        Args:
            anchor_list (list[list[Tensor]]): Per image, per level anchors [N_l, 4].
            valid_flag_list (list[list[Tensor]]): Per image, per level bool [N_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            tuple: per level ``labels`` [B, N_l], ``label_weights`` [B, N_l],
            ``bbox_targets`` [B, N_l, 4], ``bbox_weights`` [B, N_l, 4], then ``avg_factor``:
            the loss normaliser summed over images (sampled positives + negatives with a
            sampler, positives only with PseudoSampler).
        """
        if self.train_cfg is None:
            raise ValueError(f'{type(self).__name__} was built without train_cfg; the loss '
                             'needs train_cfg with an assigner')
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == len(batch_gt_instances) == num_imgs:
            raise ValueError(
                f'Expected one entry per image ({num_imgs}) in anchor_list '
                f'({len(anchor_list)}), valid_flag_list ({len(valid_flag_list)}) and '
                f'batch_gt_instances ({len(batch_gt_instances)})')
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]

        per_image = [
            self._get_targets_single(
                torch.cat(anchor_list[i]), torch.cat(valid_flag_list[i]),
                batch_gt_instances[i], batch_img_metas[i], batch_gt_instances_ignore[i])
            for i in range(num_imgs)
        ]
        all_labels, all_label_weights, all_bbox_targets, all_bbox_weights, sampling_results = \
            zip(*per_image)
        avg_factor = sum(result.avg_factor for result in sampling_results)
        return (images_to_levels(list(all_labels), num_level_anchors),
                images_to_levels(list(all_label_weights), num_level_anchors),
                images_to_levels(list(all_bbox_targets), num_level_anchors),
                images_to_levels(list(all_bbox_weights), num_level_anchors), avg_factor)

    def loss_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor, anchors: Tensor,
                            labels: Tensor, label_weights: Tensor, bbox_targets: Tensor,
                            bbox_weights: Tensor, avg_factor: float) -> Tuple[Tensor, Tensor]:
        """Losses of one level.

        Args:
            cls_score (Tensor): [B, A * cls_out_channels, H, W].
            bbox_pred (Tensor): [B, A * 4, H, W].
            anchors (Tensor): [B, H * W * A, 4].
            labels (Tensor): [B, H * W * A].
            label_weights (Tensor): [B, H * W * A].
            bbox_targets (Tensor): [B, H * W * A, 4].
            bbox_weights (Tensor): [B, H * W * A, 4].
            avg_factor (float): Normaliser of both losses.

        Returns:
            tuple: loss_cls and loss_bbox (scalars).
        """
        # Channels are ordered (anchor, value): permuting lines rows up with the targets.
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
        loss_cls = self.loss_cls(cls_score, labels.reshape(-1), label_weights.reshape(-1),
                                 avg_factor=avg_factor)
        bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4)  # [B*H*W*A, 4]
        if self.reg_decoded_bbox:
            # the coder returns HorizontalBoxes with use_box_type; losses take tensors
            bbox_pred = get_box_tensor(self.bbox_coder.decode(anchors.reshape(-1, 4), bbox_pred))
        loss_bbox = self.loss_bbox(bbox_pred, bbox_targets.reshape(-1, 4),
                                   bbox_weights.reshape(-1, 4), avg_factor=avg_factor)
        return loss_cls, loss_bbox

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head outputs against the ground truth.

        Args:
            cls_scores (list[Tensor]): Per level [B, A * cls_out_channels, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, A * 4, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            dict: ``loss_cls`` and ``loss_bbox``, each a list with one scalar per level.
        """
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=cls_scores[0].device)
        labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, avg_factor = \
            self.get_targets(anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
                             batch_gt_instances_ignore)
        num_imgs = len(batch_img_metas)
        losses_cls, losses_bbox = [], []
        for level, anchors in enumerate(anchor_list[0]):
            loss_cls, loss_bbox = self.loss_by_feat_single(
                cls_scores[level], bbox_preds[level], anchors.expand(num_imgs, -1, -1),
                labels_list[level], label_weights_list[level], bbox_targets_list[level],
                bbox_weights_list[level], avg_factor)
            losses_cls.append(loss_cls)
            losses_bbox.append(loss_bbox)
        return dict(loss_cls=losses_cls, loss_bbox=losses_bbox)
