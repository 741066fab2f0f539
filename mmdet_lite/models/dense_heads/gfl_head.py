"""GFLHead: the dense head of Generalized Focal Loss (Li et al., 2020, "Generalized Focal Loss:
Learning Qualified and Distributed Bounding Boxes for Dense Object Detection").

The towers and the assignment are ATSS's (one square anchor per position, ``ATSSAssigner``),
but the outputs change:

- ``gfl_cls`` gives one logit per class that is trained towards the IoU of the predicted box
  with its gt (Quality Focal Loss): class score and localisation quality in one number, so no
  centerness branch is needed at test time;
- ``gfl_reg`` gives, for each side of the box, logits over the distances 0..``reg_max``
  (in units of the level's stride); :class:`Integral` turns them into the expected distance,
  and Distribution Focal Loss pushes the mass onto the two bins around the target distance.
"""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import Scale
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                              OptInstanceList, reduce_mean)
from ..task_modules.samplers import SamplingResult
from ..utils import filter_scores_and_topk
from .anchor_head import AnchorHead
from .atss_head import ATSSHead, conv_towers


class GFLHeadError(ValueError, AssertionError):
    """A GFLHead setting or input it cannot use (mmdetection asserts on them)."""


class Integral(nn.Module):
    """Expected value of a discrete distribution over the distances ``0, 1, ..., reg_max``.

    Each group of ``reg_max + 1`` logits is soft-maxed and averaged against ``project``
    (a persistent buffer ``[0, 1, ..., reg_max]``, saved in the state_dict as mmdetection
    does): ``sum_i softmax(x)_i * i``.

    Args:
        reg_max (int): Largest distance of the set. Defaults to 16.
    """

    def __init__(self, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max = reg_max
        self.register_buffer('project', torch.linspace(0, self.reg_max, self.reg_max + 1))

    def forward(self, x: Tensor) -> Tensor:
        """Expected distances of the four sides.

        Args:
            x (Tensor): Logits [..., 4 * (reg_max + 1)], grouped per side (left, top, right,
                bottom).

        Returns:
            Tensor: Distances [N, 4] in [0, reg_max], N the number of rows of ``x``.
        """
        probs = F.softmax(x.reshape(-1, self.reg_max + 1), dim=1)  # [4N, reg_max + 1]
        return F.linear(probs, self.project.type_as(probs)).reshape(-1, 4)


@MODELS.register_module()
class GFLHead(AnchorHead):
    """GFL head: ATSS's GN towers, then a joint class-quality conv and a distribution conv.

    As in mmdetection it is an AnchorHead, not an ATSSHead; its targets are computed as
    ATSSHead's (``get_targets``, ``_get_targets_single`` and ``get_num_level_anchors_inside``
    are ATSSHead's functions), with the gt boxes themselves as regression targets.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        stacked_convs (int): Convs in each tower. Defaults to 4.
        conv_cfg (dict, optional): Conv layer config of the towers. Defaults to None.
        norm_cfg (dict): Norm layer config of the towers. Defaults to
            ``dict(type='GN', num_groups=32, requires_grad=True)``.
        loss_dfl (dict): Distribution focal loss. Defaults to
            ``dict(type='DistributionFocalLoss', loss_weight=0.25)``.
        bbox_coder (dict): Defaults to ``dict(type='DistancePointBBoxCoder')``: boxes as
            distances from the anchor centres.
        reg_max (int): Largest distance (in strides) of the distribution. Defaults to 16.
        init_cfg (dict or list[dict]): Normal(std=0.01) convs; ``gfl_cls`` gets a bias giving
            every class a prior probability of 0.01.
        **kwargs: AnchorHead arguments: ``feat_channels``, ``anchor_generator`` (one anchor
            per position), ``loss_cls`` (QualityFocalLoss), ``loss_bbox`` (GIoULoss),
            ``train_cfg``, ``test_cfg`` ...
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 stacked_convs: int = 4,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32, requires_grad=True),
                 loss_dfl: ConfigType = dict(type='DistributionFocalLoss', loss_weight=0.25),
                 bbox_coder: ConfigType = dict(type='DistancePointBBoxCoder'),
                 reg_max: int = 16,
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(type='Normal', name='gfl_cls', std=0.01, bias_prob=0.01)),
                 **kwargs) -> None:
        # Read by _init_layers, which AnchorHead.__init__ calls.
        self.stacked_convs = stacked_convs
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.reg_max = reg_max
        # mmdetection builds the assigner and sampler a second time here, the same way
        # AnchorHead.__init__ just did; nothing to redo.
        super().__init__(num_classes, in_channels, bbox_coder=bbox_coder, init_cfg=init_cfg,
                         **kwargs)
        self.integral = Integral(self.reg_max)
        self.loss_dfl = MODELS.build(loss_dfl)

    def _init_layers(self) -> None:
        """Create ``cls_convs``, ``reg_convs``, ``gfl_cls``, ``gfl_reg`` and one ``Scale``
        per level."""
        # Unused in forward (ConvModule has its own activation); kept for mmdetection's repr.
        self.relu = nn.ReLU()
        self.cls_convs, self.reg_convs = conv_towers(self.in_channels, self.feat_channels,
                                                     self.stacked_convs, self.conv_cfg,
                                                     self.norm_cfg)
        if self.num_base_priors != 1:
            raise GFLHeadError(f'GFLHead predicts one box per position (anchor-free '
                               f'regression); the anchor generator gives '
                               f'{self.num_base_priors} anchors per position: use one ratio '
                               'and one scale')
        self.gfl_cls = nn.Conv2d(self.feat_channels, self.cls_out_channels, 3, padding=1)
        self.gfl_reg = nn.Conv2d(self.feat_channels, 4 * (self.reg_max + 1), 3, padding=1)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.prior_generator.strides)

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
        """Predict every level with the shared towers and the level's ``Scale``.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: per level ``cls_scores`` [B, num_classes, H_l, W_l] (class-quality logits)
            and ``bbox_preds`` [B, 4 * (reg_max + 1), H_l, W_l] (distance logits).
        """
        cls_scores, bbox_preds = [], []
        for feat, scale in zip(x, self.scales):
            cls_score, bbox_pred = self.forward_single(feat, scale)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return cls_scores, bbox_preds

    def forward_single(self, x: Tensor, scale: Scale) -> Tuple[Tensor, Tensor]:
        """Predict one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].
            scale (Scale): The level's learnable multiplier of the distance logits.

        Returns:
            tuple: cls_score [B, num_classes, H, W] and bbox_pred
            [B, 4 * (reg_max + 1), H, W].
        """
        cls_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)  # [B, feat_channels, H, W]
        reg_feat = x
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)  # [B, feat_channels, H, W]
        return self.gfl_cls(cls_feat), scale(self.gfl_reg(reg_feat)).float()

    def anchor_center(self, anchors: Tensor) -> Tensor:
        """Centres [..., 2] (x, y) of anchors [..., 4] (x1, y1, x2, y2)."""
        return torch.stack([(anchors[..., 0] + anchors[..., 2]) / 2,
                            (anchors[..., 1] + anchors[..., 3]) / 2], dim=-1)

    # ATSS's assignment and targets (mmdetection keeps a copy of the code here).
    get_targets = ATSSHead.get_targets
    _get_targets_single = ATSSHead._get_targets_single
    get_num_level_anchors_inside = ATSSHead.get_num_level_anchors_inside

    def _pos_bbox_targets(self, sampling_result: SamplingResult) -> Tensor:
        """The gt boxes themselves: GFL encodes them per level in its loss (whatever
        ``reg_decoded_bbox`` says, as in mmdetection)."""
        return get_box_tensor(sampling_result.pos_gt_bboxes)

    def loss_by_feat_single(self, anchors: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                            labels: Tensor, label_weights: Tensor, bbox_targets: Tensor,
                            stride: Tuple[int, int], avg_factor: float) -> tuple:
        """Losses of one level; the box and DFL losses are not normalised yet.

        Boxes are compared in units of the stride: anchor centres, decoded predictions and
        gt boxes are all divided by it.

        Args:
            anchors (Tensor): [B, N_l, 4] with N_l = H * W.
            cls_score (Tensor): [B, num_classes, H, W].
            bbox_pred (Tensor): [B, 4 * (reg_max + 1), H, W].
            labels (Tensor): [B, N_l].
            label_weights (Tensor): [B, N_l].
            bbox_targets (Tensor): [B, N_l, 4], gt boxes of the positives.
            stride (tuple[int]): (stride_w, stride_h) of the level; must be equal.
            avg_factor (float): Normaliser of the class loss.

        Returns:
            tuple: ``loss_cls``, ``loss_bbox`` and ``loss_dfl`` (sums weighted by the
            positives' top class score) and the sum of those weights.
        """
        if stride[0] != stride[1]:
            raise GFLHeadError(f'GFLHead needs square strides, got {tuple(stride)}')
        anchors = anchors.reshape(-1, 4)
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
        bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4 * (self.reg_max + 1))
        bbox_targets = bbox_targets.reshape(-1, 4)
        labels = labels.reshape(-1)
        label_weights = label_weights.reshape(-1)

        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
        # Quality targets: IoU of each positive's predicted box with its gt, 0 elsewhere.
        score = label_weights.new_zeros(labels.shape)
        if len(pos_inds) > 0:
            pos_bbox_pred = bbox_pred[pos_inds]  # [P, 4 * (reg_max + 1)]
            pos_centers = self.anchor_center(anchors[pos_inds]) / stride[0]  # [P, 2]
            pos_targets = bbox_targets[pos_inds] / stride[0]  # [P, 4]
            # A positive's weight: its most confident class score (no gradient).
            weight_targets = cls_score.detach().sigmoid().max(dim=1)[0][pos_inds]  # [P]
            pos_decoded = self.bbox_coder.decode(pos_centers, self.integral(pos_bbox_pred))
            pos_decoded = get_box_tensor(pos_decoded)
            score[pos_inds] = bbox_overlaps(pos_decoded.detach(), pos_targets,
                                            is_aligned=True)
            pred_corners = pos_bbox_pred.reshape(-1, self.reg_max + 1)  # [4P, reg_max + 1]
            # Target distances clamped to just below reg_max, so both DFL bins exist.
            target_corners = self.bbox_coder.encode(pos_centers, pos_targets,
                                                    self.reg_max).reshape(-1)  # [4P]
            loss_bbox = self.loss_bbox(pos_decoded, pos_targets, weight=weight_targets,
                                       avg_factor=1.0)
            loss_dfl = self.loss_dfl(pred_corners, target_corners,
                                     weight=weight_targets[:, None].expand(-1, 4).reshape(-1),
                                     avg_factor=4.0)
        else:
            # Zero losses that keep the graph connected.
            loss_bbox = bbox_pred.sum() * 0
            loss_dfl = bbox_pred.sum() * 0
            weight_targets = bbox_pred.new_tensor(0)

        loss_cls = self.loss_cls(cls_score, (labels, score), weight=label_weights,
                                 avg_factor=avg_factor)
        return loss_cls, loss_bbox, loss_dfl, weight_targets.sum()

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head outputs against the ground truth.

        The class loss is averaged over the positives (mean over ranks); the box and DFL
        losses over the sum of the positives' weights (mean over ranks, at least 1).

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, 4 * (reg_max + 1), H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            dict: ``loss_cls``, ``loss_bbox`` and ``loss_dfl``, each a list with one scalar
            per level.
        """
        featmap_sizes = [score.size()[-2:] for score in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise GFLHeadError(f'expected {self.prior_generator.num_levels} levels of '
                               f'predictions, got {len(featmap_sizes)}')
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=device)
        (anchors_list, labels_list, label_weights_list, bbox_targets_list, _,
         avg_factor) = self.get_targets(anchor_list, valid_flag_list, batch_gt_instances,
                                        batch_img_metas, batch_gt_instances_ignore)
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float,
                                              device=device)).item()

        losses_cls, losses_bbox, losses_dfl, weight_sums = [], [], [], []
        for level, stride in enumerate(self.prior_generator.strides):
            loss_cls, loss_bbox, loss_dfl, weight_sum = self.loss_by_feat_single(
                anchors_list[level], cls_scores[level], bbox_preds[level], labels_list[level],
                label_weights_list[level], bbox_targets_list[level], stride, avg_factor)
            losses_cls.append(loss_cls)
            losses_bbox.append(loss_bbox)
            losses_dfl.append(loss_dfl)
            weight_sums.append(weight_sum)
        weight_avg_factor = reduce_mean(sum(weight_sums)).clamp_(min=1).item()
        return dict(loss_cls=losses_cls,
                    loss_bbox=[loss / weight_avg_factor for loss in losses_bbox],
                    loss_dfl=[loss / weight_avg_factor for loss in losses_dfl])

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[None],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: ConfigDict,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """Detections of one image: expected distances, score filter and top-k per level,
        decode around the anchor centres, then NMS.

        Args:
            cls_score_list (list[Tensor]): Per level [num_classes, H_l, W_l].
            bbox_pred_list (list[Tensor]): Per level [4 * (reg_max + 1), H_l, W_l].
            score_factor_list (list[None]): Unused (GFL has no score factors).
            mlvl_priors (list[Tensor]): Per level anchors [H_l * W_l, 4].
            img_meta (dict): Meta of the image.
            cfg (dict): ``score_thr``, ``nms_pre``, ``min_bbox_size``, ``nms``,
                ``max_per_img``.
            rescale (bool): Whether to map boxes back to the original image size.
            with_nms (bool): Whether to run NMS.

        Returns:
            InstanceData: ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K].
        """
        nms_pre = cfg.get('nms_pre', -1)
        score_thr = cfg.get('score_thr', 0)
        mlvl_bboxes, mlvl_scores, mlvl_labels = [], [], []
        for cls_score, bbox_pred, stride, priors in zip(
                cls_score_list, bbox_pred_list, self.prior_generator.strides, mlvl_priors):
            if cls_score.shape[-2:] != bbox_pred.shape[-2:]:
                raise GFLHeadError(f'cls_score {tuple(cls_score.shape)} and bbox_pred '
                                   f'{tuple(bbox_pred.shape)} differ in size')
            if stride[0] != stride[1]:
                raise GFLHeadError(f'GFLHead needs square strides, got {tuple(stride)}')
            # Distances in pixels [H*W, 4].
            distances = self.integral(bbox_pred.permute(1, 2, 0)) * stride[0]
            scores = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels).sigmoid()
            scores, labels, _, kept = filter_scores_and_topk(
                scores, score_thr, nms_pre, dict(bbox_pred=distances, priors=priors))
            mlvl_bboxes.append(
                get_box_tensor(self.bbox_coder.decode(self.anchor_center(kept['priors']),
                                                      kept['bbox_pred'],
                                                      max_shape=img_meta['img_shape'])))
            mlvl_scores.append(scores)
            mlvl_labels.append(labels)

        results = InstanceData()
        results.bboxes = torch.cat(mlvl_bboxes)
        results.scores = torch.cat(mlvl_scores)
        results.labels = torch.cat(mlvl_labels)
        return self._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms,
                                       img_meta=img_meta)
