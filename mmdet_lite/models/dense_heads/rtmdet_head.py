"""RTMDetHead: the anchor-free dense head of RTMDet (Lyu et al., 2022).

One point prior per position (``MlvlPointGenerator``, stride-sized cells); per level a
classification tower ending in ``rtm_cls`` and a regression tower ending in ``rtm_reg``, which
predicts the distances (left, top, right, bottom) from the point to the box sides, already
multiplied by the stride. Training assigns gts to priors with ``DynamicSoftLabelAssigner`` on
the decoded predictions, supervises the classes with QualityFocalLoss towards the IoU of the
matched prediction (a soft label) and the boxes with an IoU-style loss (GIoU in the configs)
weighted by that IoU. Post-processing is :class:`BaseDenseHead`'s, with
``DistancePointBBoxCoder`` decoding the distances.

:class:`RTMDetSepBNHead` (per-level BN, shared convs) lives in ``rtmdet_sep_bn_head.py`` and is
importable from here, where mmdetection keeps it.
"""
from typing import List, Optional, Tuple, Union

import torch
from mmcv.cnn import ConvModule, Scale, is_norm
from mmengine.model import bias_init_with_prob, constant_init, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import distance2bbox, get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                              OptInstanceList, reduce_mean)
from ..layers.transformer.utils import inverse_sigmoid
from ..task_modules.prior_generators import anchor_inside_flags
from ..utils import images_to_levels, sigmoid_geometric_mean, unmap
from .anchor_head import AnchorHead


class RTMDetHeadArgumentError(ValueError, AssertionError):
    """Head outputs that do not fit the head (mmdetection asserts on them)."""


@MODELS.register_module()
class RTMDetHead(AnchorHead):
    """Detection head of RTMDet: ``stacked_convs`` convs per tower, shared across levels.

    mmdetection derives it from ATSSHead; it takes ATSSHead's arguments with ATSSHead's
    defaults (``pred_kernel_size``, ``stacked_convs``, ``conv_cfg``, ``norm_cfg``,
    ``reg_decoded_bbox``, ``loss_centerness``, ``init_cfg``) so that configs build unchanged.
    As in mmdetection, ``loss_centerness`` is built but never used, and ``init_cfg`` is not
    applied: :meth:`init_weights` is replaced.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        with_objectness (bool): Add an objectness conv on the regression tower; the class
            logit becomes ``logit(sqrt(sigmoid(cls) * sigmoid(obj)))``. Defaults to True.
        act_cfg (dict): Activation of the tower convs. Defaults to ``dict(type='ReLU')``.
        pred_kernel_size (int): Kernel size of the prediction convs. Defaults to 3.
        stacked_convs (int): Convs per tower. Defaults to 4.
        conv_cfg (dict, optional): Conv layer config of the towers. Defaults to None.
        norm_cfg (dict): Norm layer config of the towers. Defaults to GN(32 groups).
        reg_decoded_bbox (bool): Regress decoded boxes. Defaults to True.
        loss_centerness (dict): ATSSHead's centerness loss; built, unused.
        init_cfg (dict or list[dict]): ATSSHead's; stored, unused (see above).
        **kwargs: AnchorHead arguments: ``feat_channels``, ``anchor_generator`` (RTMDet
            configs: ``MlvlPointGenerator`` with ``offset=0``), ``bbox_coder``
            (``DistancePointBBoxCoder``), ``loss_cls`` (``QualityFocalLoss``), ``loss_bbox``
            (``GIoULoss``), ``train_cfg`` (``assigner``, ``allowed_border``, ``pos_weight``),
            ``test_cfg``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 with_objectness: bool = True,
                 act_cfg: ConfigType = dict(type='ReLU'),
                 pred_kernel_size: int = 3,
                 stacked_convs: int = 4,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32, requires_grad=True),
                 reg_decoded_bbox: bool = True,
                 loss_centerness: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(type='Normal', name='atss_cls', std=0.01, bias_prob=0.01)),
                 **kwargs) -> None:
        # Read by _init_layers, which AnchorHead.__init__ calls.
        self.act_cfg = act_cfg
        self.with_objectness = with_objectness
        self.pred_kernel_size = pred_kernel_size
        self.stacked_convs = stacked_convs
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        super().__init__(num_classes, in_channels, reg_decoded_bbox=reg_decoded_bbox,
                         init_cfg=init_cfg, **kwargs)
        # mmdetection builds the assigner a second time here; AnchorHead's is the same one.
        self.sampling = False
        self.loss_centerness = MODELS.build(loss_centerness)

    def _tower_conv(self, in_channels: int, conv_type: type = ConvModule) -> nn.Module:
        """A 3x3 conv + norm + activation of a tower, ``feat_channels`` out."""
        return conv_type(in_channels, self.feat_channels, 3, stride=1, padding=1,
                         conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)

    def _pred_conv(self, out_channels: int) -> nn.Conv2d:
        return nn.Conv2d(self.feat_channels, out_channels, self.pred_kernel_size,
                         padding=self.pred_kernel_size // 2)

    def _init_layers(self) -> None:
        """Create ``cls_convs``, ``reg_convs``, ``rtm_cls``, ``rtm_reg`` [, ``rtm_obj``] and
        one ``Scale`` per level."""
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        # Interleaved as in mmdetection, so a seed gives the same construction-time weights.
        for i in range(self.stacked_convs):
            channels = self.in_channels if i == 0 else self.feat_channels
            self.cls_convs.append(self._tower_conv(channels))
            self.reg_convs.append(self._tower_conv(channels))
        self.rtm_cls = self._pred_conv(self.num_base_priors * self.cls_out_channels)
        self.rtm_reg = self._pred_conv(self.num_base_priors * 4)
        if self.with_objectness:
            self.rtm_obj = self._pred_conv(1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.prior_generator.strides)

    def init_weights(self) -> None:
        """Normal(std=0.01) convs, unit norms; class (and objectness) biases give a prior
        probability of 0.01 so the many negatives do not dominate the first iterations."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, mean=0, std=0.01)
            if is_norm(m):
                constant_init(m, 1)
        bias_cls = bias_init_with_prob(0.01)
        normal_init(self.rtm_cls, std=0.01, bias=bias_cls)
        normal_init(self.rtm_reg, std=0.01)
        if self.with_objectness:
            normal_init(self.rtm_obj, std=0.01, bias=bias_cls)

    def forward(self, feats: Tuple[Tensor, ...]) -> Tuple[tuple, tuple]:
        """Predict every level.

        Args:
            feats (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: ``cls_scores``, per level [B, num_classes, H_l, W_l] (logits), and
            ``bbox_preds``, per level [B, 4, H_l, W_l]: distances (left, top, right, bottom)
            from each point to the box sides in input-image pixels
            (``scale_l * exp(rtm_reg) * stride_l``).
        """
        cls_scores, bbox_preds = [], []
        for x, scale, stride in zip(feats, self.scales, self.prior_generator.strides):
            cls_feat = x
            for conv in self.cls_convs:
                cls_feat = conv(cls_feat)  # [B, feat_channels, H, W]
            cls_score = self.rtm_cls(cls_feat)  # [B, num_classes, H, W]
            reg_feat = x
            for conv in self.reg_convs:
                reg_feat = conv(reg_feat)  # [B, feat_channels, H, W]
            if self.with_objectness:
                objectness = self.rtm_obj(reg_feat)  # [B, 1, H, W]
                cls_score = inverse_sigmoid(sigmoid_geometric_mean(cls_score, objectness))
            reg_dist = scale(self.rtm_reg(reg_feat).exp()).float() * stride[0]  # [B, 4, H, W]
            cls_scores.append(cls_score)
            bbox_preds.append(reg_dist)
        return tuple(cls_scores), tuple(bbox_preds)

    # ------------------------------------------------------------------ training

    def loss_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor, labels: Tensor,
                            label_weights: Tensor, bbox_targets: Tensor,
                            assign_metrics: Tensor, stride: List[int]) -> tuple:
        """Un-normalised losses of one level (summed, ``avg_factor=1``).

        Args:
            cls_score (Tensor): Logits [B, num_classes, H, W].
            bbox_pred (Tensor): Decoded boxes [B, H * W, 4].
            labels (Tensor): [B, H * W], ``num_classes`` for background.
            label_weights (Tensor): [B, H * W].
            bbox_targets (Tensor): Matched gt boxes [B, H * W, 4].
            assign_metrics (Tensor): IoU of each positive with its gt, 0 elsewhere [B, H * W].
            stride (tuple[int]): (stride_w, stride_h) of the level; must be equal.

        Returns:
            tuple: ``loss_cls``, ``loss_bbox``, the sum of ``assign_metrics`` (normaliser
            of the classification loss) and the sum of the positives' box weights
            (normaliser of the box loss).
        """
        if stride[0] != stride[1]:
            raise RTMDetHeadArgumentError(
                f'RTMDetHead needs square strides, got {tuple(stride)}')
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
        bbox_pred = bbox_pred.reshape(-1, 4)
        bbox_targets = bbox_targets.reshape(-1, 4)
        labels = labels.reshape(-1)
        assign_metrics = assign_metrics.reshape(-1)
        label_weights = label_weights.reshape(-1)
        # QualityFocalLoss takes (labels, IoU scores): the soft label of a positive.
        loss_cls = self.loss_cls(cls_score, (labels, assign_metrics), label_weights,
                                 avg_factor=1.0)

        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
        if len(pos_inds) > 0:
            pos_bbox_weight = assign_metrics[pos_inds]
            loss_bbox = self.loss_bbox(bbox_pred[pos_inds], bbox_targets[pos_inds],
                                       weight=pos_bbox_weight, avg_factor=1.0)
        else:
            loss_bbox = bbox_pred.sum() * 0  # keeps the graph connected
            pos_bbox_weight = bbox_targets.new_tensor(0.)
        return loss_cls, loss_bbox, assign_metrics.sum(), pos_bbox_weight.sum()

    def _flatten_and_decode(self, cls_scores: List[Tensor], bbox_preds: List[Tensor],
                            mlvl_priors: List[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """Logits of all levels [B, N, num_classes] and decoded boxes per level [B, N_l, 4].

        ``mlvl_priors`` are one image's priors per level [N_l, 4] as (x, y, s_w, s_h).
        """
        num_imgs = cls_scores[0].size(0)
        flatten_cls_scores = torch.cat([
            score.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels)
            for score in cls_scores
        ], dim=1)
        decoded_bboxes = [
            distance2bbox(priors, pred.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4))
            for priors, pred in zip(mlvl_priors, bbox_preds)
        ]
        return flatten_cls_scores, decoded_bboxes

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head outputs against the ground truth.

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l] distances (see forward).
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image (``img_shape``, ``pad_shape``).
            batch_gt_instances_ignore (list[InstanceData | None], optional): Unused by the
                assigner.

        Returns:
            dict: ``loss_cls`` and ``loss_bbox``, each a list with one scalar per level
            (normalised as in :meth:`_bbox_losses_and_targets`).
        """
        losses, _ = self._bbox_losses_and_targets(cls_scores, bbox_preds, batch_gt_instances,
                                                  batch_img_metas, batch_gt_instances_ignore)
        return losses

    def _bbox_losses_and_targets(
            self,
            cls_scores: List[Tensor],
            bbox_preds: List[Tensor],
            batch_gt_instances: InstanceList,
            batch_img_metas: List[dict],
            batch_gt_instances_ignore: OptInstanceList = None) -> Tuple[dict, list]:
        """Assign, then the normalised classification and box losses, and the assignment.

        The body of :meth:`loss_by_feat`, kept apart because RTMDet-Ins also needs the
        positives it finds (their priors and assigned gts) for its mask loss.

        Both losses of each level are sums; they are divided by the total IoU of the positives
        (averaged over ranks, at least 1): the classification loss by the sum of
        ``assign_metrics``, the box loss by the sum of the positives' box weights (the same
        IoUs).

        Args:
            cls_scores, bbox_preds, batch_gt_instances, batch_img_metas,
                batch_gt_instances_ignore: As in :meth:`loss_by_feat`.

        Returns:
            tuple:

            - losses (dict): ``loss_cls`` and ``loss_bbox``, one scalar per level each.
            - sampling_results (list[SamplingResult]): Per image; ``pos_inds`` index the
              image's priors of all levels concatenated, with their ``pos_priors`` and
              ``pos_assigned_gt_inds``.
        """
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise RTMDetHeadArgumentError(
                f'expected {self.prior_generator.num_levels} levels of cls_scores, got '
                f'{len(featmap_sizes)}')
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=cls_scores[0].device)
        flatten_cls_scores, decoded_bboxes = self._flatten_and_decode(
            cls_scores, bbox_preds, anchor_list[0])
        (_, labels_list, label_weights_list, bbox_targets_list, assign_metrics_list,
         sampling_results) = self.get_targets(flatten_cls_scores,
                                              torch.cat(decoded_bboxes, dim=1), anchor_list,
                                              valid_flag_list, batch_gt_instances,
                                              batch_img_metas, batch_gt_instances_ignore)

        losses_cls, losses_bbox, cls_avg_factors, bbox_avg_factors = [], [], [], []
        for level, stride in enumerate(self.prior_generator.strides):
            loss_cls, loss_bbox, cls_avg, bbox_avg = self.loss_by_feat_single(
                cls_scores[level], decoded_bboxes[level], labels_list[level],
                label_weights_list[level], bbox_targets_list[level],
                assign_metrics_list[level], stride)
            losses_cls.append(loss_cls)
            losses_bbox.append(loss_bbox)
            cls_avg_factors.append(cls_avg)
            bbox_avg_factors.append(bbox_avg)
        cls_avg_factor = reduce_mean(sum(cls_avg_factors)).clamp_(min=1).item()
        bbox_avg_factor = reduce_mean(sum(bbox_avg_factors)).clamp_(min=1).item()
        losses = dict(loss_cls=[loss / cls_avg_factor for loss in losses_cls],
                      loss_bbox=[loss / bbox_avg_factor for loss in losses_bbox])
        return losses, sampling_results

    def get_targets(self,
                    cls_scores: Tensor,
                    bbox_preds: Tensor,
                    anchor_list: List[List[Tensor]],
                    valid_flag_list: List[List[Tensor]],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None,
                    unmap_outputs: bool = True) -> tuple:
        """Targets of every prior of every image, regrouped per level.

        Args:
            cls_scores (Tensor): Logits [B, N, num_classes] of all levels.
            bbox_preds (Tensor): Decoded boxes [B, N, 4].
            anchor_list (list[list[Tensor]]): Per image, per level priors [N_l, 4].
            valid_flag_list (list[list[Tensor]]): Per image, per level bool [N_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Passed on.
            unmap_outputs (bool): Return targets for all priors (else the inside ones only).
                Defaults to True.

        Returns:
            tuple: per level ``anchors`` [B, N_l, 4], ``labels`` [B, N_l], ``label_weights``
            [B, N_l], ``bbox_targets`` [B, N_l, 4], ``assign_metrics`` [B, N_l], then the
            SamplingResult of each image.
        """
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == num_imgs:
            raise ValueError(f'expected one entry per image ({num_imgs}) in anchor_list '
                             f'({len(anchor_list)}) and valid_flag_list '
                             f'({len(valid_flag_list)})')
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs
        # The assignment must not back-propagate into the predictions it is computed from.
        cls_scores, bbox_preds = cls_scores.detach(), bbox_preds.detach()
        per_image = [
            self._get_targets_single(cls_scores[i], bbox_preds[i], torch.cat(anchor_list[i]),
                                     torch.cat(valid_flag_list[i]), batch_gt_instances[i],
                                     batch_img_metas[i], batch_gt_instances_ignore[i],
                                     unmap_outputs=unmap_outputs)
            for i in range(num_imgs)
        ]
        *targets, sampling_results = zip(*per_image)
        return tuple(images_to_levels(list(target), num_level_anchors)
                     for target in targets) + (list(sampling_results), )

    def _get_targets_single(self,
                            cls_scores: Tensor,
                            bbox_preds: Tensor,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None,
                            unmap_outputs: bool = True) -> tuple:
        """Targets of every prior of one image.

        Args:
            cls_scores (Tensor): Logits [N, num_classes].
            bbox_preds (Tensor): Decoded boxes [N, 4].
            flat_anchors (Tensor): Priors of all levels [N, 4] as (x, y, s_w, s_h).
            valid_flags (Tensor): Bool [N].
            gt_instances (InstanceData): ``bboxes`` [G, 4], ``labels`` [G] (``masks`` for
                RTMDet-Ins, used by the assigner for the gt centers).
            img_meta (dict): Meta of the image (``img_shape``).
            gt_instances_ignore (InstanceData, optional): Passed to the assigner.
            unmap_outputs (bool): Scatter the targets back to all N priors.

        Returns:
            tuple: ``anchors`` [N, 4], ``labels`` [N] (``num_classes`` = background),
            ``label_weights`` [N], ``bbox_targets`` [N, 4], ``assign_metrics`` [N] (IoU of
            a positive's prediction with its gt) and the SamplingResult.
        """
        # As in mmdetection the border test runs on (x, y, s_w, s_h) as if it were a box;
        # RTMDet configs set allowed_border=-1, which keeps every valid prior.
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'][:2],
                                           self.train_cfg.get('allowed_border', -1))
        if not inside_flags.any():
            raise ValueError('No prior lies inside the image boundary; check the image size '
                             'or set train_cfg.allowed_border=-1')
        anchors = flat_anchors[inside_flags]
        pred_instances = InstanceData(scores=cls_scores[inside_flags],
                                      bboxes=bbox_preds[inside_flags], priors=anchors)
        assign_result = self.assigner.assign(pred_instances, gt_instances, gt_instances_ignore)
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        num_valid = anchors.size(0)
        bbox_targets = torch.zeros_like(anchors)
        labels = anchors.new_full((num_valid, ), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros(num_valid)
        assign_metrics = anchors.new_zeros(num_valid)
        pos_inds = sampling_result.pos_inds
        if len(pos_inds) > 0:
            bbox_targets[pos_inds] = get_box_tensor(sampling_result.pos_gt_bboxes).to(
                bbox_targets.dtype)
            labels[pos_inds] = sampling_result.pos_gt_labels.long()
            pos_weight = self.train_cfg.get('pos_weight', -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
            # The soft label of a positive: IoU of its prediction with its gt.
            assign_metrics[pos_inds] = assign_result.max_overlaps[pos_inds].to(
                assign_metrics.dtype)
        label_weights[sampling_result.neg_inds] = 1.0

        if unmap_outputs:
            num_total = flat_anchors.size(0)
            anchors = unmap(anchors, num_total, inside_flags)
            labels = unmap(labels, num_total, inside_flags, fill=self.num_classes)
            label_weights = unmap(label_weights, num_total, inside_flags)
            bbox_targets = unmap(bbox_targets, num_total, inside_flags)
            assign_metrics = unmap(assign_metrics, num_total, inside_flags)
        return anchors, labels, label_weights, bbox_targets, assign_metrics, sampling_result

    def get_anchors(self,
                    featmap_sizes: List[Tuple[int, int]],
                    batch_img_metas: List[dict],
                    device: Union[torch.device, str] = 'cpu') -> Tuple[list, list]:
        """Point priors with their strides, and their valid flags, for every image.

        Args:
            featmap_sizes (list[tuple]): (H_l, W_l) of each level.
            batch_img_metas (list[dict]): Meta of each image (``pad_shape``, else
                ``img_shape``).
            device (torch.device | str): Device of the outputs.

        Returns:
            tuple:

            - anchor_list (list[list[Tensor]]): Per image, per level [H_l * W_l, 4] as
              (x, y, stride_w, stride_h) (the same tensors for every image).
            - valid_flag_list (list[list[Tensor]]): Per image, per level bool [H_l * W_l],
              False for points over the padding.
        """
        mlvl_priors = self.prior_generator.grid_priors(featmap_sizes, device=device,
                                                       with_stride=True)
        anchor_list = [mlvl_priors for _ in batch_img_metas]
        valid_flag_list = [
            self.prior_generator.valid_flags(
                featmap_sizes, img_meta.get('pad_shape', img_meta.get('img_shape')), device)
            for img_meta in batch_img_metas
        ]
        return anchor_list, valid_flag_list
