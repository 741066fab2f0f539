"""CenterNetUpdateHead: the one-stage "CenterNet" of CenterNet2 (Zhou et al., 2021,
"Probabilistic two-stage detection"), on an FPN.

The layers are :class:`AnchorFreeHead`'s GN towers with a ``Scale`` per level; the box branch
predicts non-negative (left, top, right, bottom) distances in units of the level's stride
(times the stride at inference)::

    cls_score = conv_cls(cls_tower(x))                    [B, num_classes, H, W] (logits)
    bbox_pred = clamp(scale_l * conv_reg(reg_tower(x)), 0)  [B, 4, H, W]

Targets (``get_targets``): per class a Gaussian heatmap around every box centre, on every
level; box distances at the 3x3 cells around the centre, on the levels whose range fits the
box. Heatmap positives (``add_cls_pos_inds``): those centre cells whose predicted box is
already good. Both are :class:`~.centernet_update_targets.CenterNetUpdateTargetsMixin`, in
centernet_update_targets.py, whose docstring gives the formulas.

Losses: ``loss_cls``, a :class:`GaussianFocalLoss` over clamped sigmoid scores with those
positives, divided by their number; ``loss_bbox``, GIoU of the box positives (weighted by their
heatmap value with ``soft_weight_on_reg``).
"""
from typing import Dict, List, Sequence, Tuple

import torch
from mmcv.cnn import Scale
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, InstanceList, OptConfigType, OptInstanceList, reduce_mean
from .anchor_free_head import AnchorFreeHead, AnchorFreeHeadArgumentError, flatten_levels
from .centernet_update_targets import INF, CenterNetUpdateTargetsMixin

RangeType = Sequence[Tuple[int, int]]


@MODELS.register_module()
class CenterNetUpdateHead(CenterNetUpdateTargetsMixin, AnchorFreeHead):
    """CenterNet(-update) head: heatmap classification and GIoU box regression on FPN points;
    targets from :class:`~.centernet_update_targets.CenterNetUpdateTargetsMixin`.

    State dict: ``cls_convs.{i}`` / ``reg_convs.{i}`` (``conv`` without bias and ``gn``),
    ``conv_cls`` (``num_classes`` outputs), ``conv_reg`` (4) and ``scales.{l}.scale``.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        regress_ranges (Sequence[tuple[int, int]]): Per level, the range (both ends
            included) of half the box diagonal the level regresses. Defaults to
            ((0, 80), (64, 160), (128, 320), (256, 640), (512, INF)).
        hm_min_radius (int): Lower bound of the heatmap Gaussian's radius. Defaults to 4.
        hm_min_overlap (float): Sets the Gaussian's radius relative to the box size.
            Defaults to 0.8.
        more_pos_thresh (float): GIoU-loss threshold for extra heatmap positives.
            Defaults to 0.2.
        more_pos_topk (int): At most this many heatmap positives per box. Defaults to 9.
        soft_weight_on_reg (bool): Weight the box loss by the heatmap target. Defaults to
            False.
        loss_cls (dict): Heatmap loss. Defaults to GaussianFocalLoss with pos_weight 0.25 and
            neg_weight 0.75.
        loss_bbox (dict): Box loss. Defaults to GIoULoss with loss_weight 2.0.
        norm_cfg (dict, optional): Norm of the tower convs. Defaults to GN with 32 groups.
        train_cfg (dict, optional): Not used (kept for SingleStageDetector).
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img``...
        **kwargs: Remaining AnchorFreeHead arguments (``feat_channels``, ``stacked_convs``,
            ``strides``, ``init_cfg``...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 regress_ranges: RangeType = ((0, 80), (64, 160), (128, 320), (256, 640),
                                              (512, INF)),
                 hm_min_radius: int = 4,
                 hm_min_overlap: float = 0.8,
                 more_pos_thresh: float = 0.2,
                 more_pos_topk: int = 9,
                 soft_weight_on_reg: bool = False,
                 loss_cls: ConfigType = dict(
                     type='GaussianFocalLoss',
                     pos_weight=0.25,
                     neg_weight=0.75,
                     loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='GIoULoss', loss_weight=2.0),
                 norm_cfg: OptConfigType = dict(type='GN', num_groups=32, requires_grad=True),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 **kwargs) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, loss_cls=loss_cls,
                         loss_bbox=loss_bbox, norm_cfg=norm_cfg, train_cfg=train_cfg,
                         test_cfg=test_cfg, **kwargs)
        self.soft_weight_on_reg = soft_weight_on_reg
        self.hm_min_radius = hm_min_radius
        self.more_pos_thresh = more_pos_thresh
        self.more_pos_topk = more_pos_topk
        self.delta = (1 - hm_min_overlap) / (1 + hm_min_overlap)
        # Sigmoid scores are clamped to [eps, 1 - eps] before the heatmap loss.
        self.sigmoid_clamp = 0.0001
        # The heatmap loss has no 'use_sigmoid' key; the scores are per-class sigmoids.
        self.use_sigmoid_cls = True
        self.cls_out_channels = num_classes
        self.regress_ranges = regress_ranges
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

    def _init_predictor(self) -> None:
        """``conv_cls`` with one output per class (no background) and ``conv_reg``."""
        self.conv_cls = nn.Conv2d(self.feat_channels, self.num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(self.feat_channels, 4, 3, padding=1)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
        """Predict every level.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: ``cls_scores`` per level [B, num_classes, H_l, W_l] (logits) and
            ``bbox_preds`` per level [B, 4, H_l, W_l] (stride units in training, pixels in
            eval mode).
        """
        cls_scores, bbox_preds = [], []
        for feat, scale, stride in zip(x, self.scales, self.strides):
            cls_score, bbox_pred = self.forward_single(feat, scale, stride)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return cls_scores, bbox_preds

    def forward_single(self, x: Tensor, scale: Scale, stride: int) -> Tuple[Tensor, Tensor]:
        """Predict one level: cls_score [B, num_classes, H, W], bbox_pred [B, 4, H, W]."""
        cls_score, bbox_pred, _, _ = super().forward_single(x)
        # fp32 distances; clamp (not an in-place ReLU) keeps the tensor for backward.
        bbox_pred = scale(bbox_pred).float().clamp(min=0)
        if not self.training:
            bbox_pred = bbox_pred * stride
        return cls_score, bbox_pred

    # ------------------------------------------------------------------ training

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Heatmap and GIoU losses (see the module docstring).

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image (not used).
            batch_gt_instances_ignore (list, optional): Not used (as in mmdetection).

        Returns:
            dict[str, Tensor]: ``loss_cls`` and ``loss_bbox`` scalars.
        """
        if len(cls_scores) != len(bbox_preds):
            raise AnchorFreeHeadArgumentError(
                f'cls_scores and bbox_preds must have one tensor per level, got '
                f'{len(cls_scores)} and {len(bbox_preds)}')
        num_imgs = cls_scores[0].size(0)
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        points = self.prior_generator.grid_priors(featmap_sizes, dtype=bbox_preds[0].dtype,
                                                  device=bbox_preds[0].device)
        # Rows ordered level, then image, then position (as the targets).
        flat_cls_scores = flatten_levels(cls_scores)  # [sum_l B * H_l * W_l, C]
        flat_bbox_preds = flatten_levels(bbox_preds)  # [sum_l B * H_l * W_l, 4]
        flat_points = torch.cat([level.repeat(num_imgs, 1) for level in points])
        if not torch.isfinite(flat_bbox_preds).all().item():
            raise AnchorFreeHeadArgumentError('CenterNetUpdateHead: bbox_preds are not finite')

        cls_targets, bbox_targets = self.get_targets(points, batch_gt_instances)
        pos_inds, pos_labels = self.add_cls_pos_inds(
            flat_points, flat_bbox_preds, flat_points.new_tensor(featmap_sizes),
            batch_gt_instances)

        num_pos_cls = flat_bbox_preds.new_tensor(0 if pos_inds is None else len(pos_inds),
                                                 dtype=torch.float)
        num_pos_cls = max(reduce_mean(num_pos_cls), 1.0)
        cls_probs = flat_cls_scores.sigmoid().clamp(min=self.sigmoid_clamp,
                                                    max=1 - self.sigmoid_clamp)
        loss_cls = self.loss_cls(cls_probs, cls_targets, pos_inds=pos_inds,
                                 pos_labels=pos_labels, avg_factor=num_pos_cls)

        pos_bbox_inds = (bbox_targets.max(dim=1)[0] >= 0).nonzero().squeeze(1)
        pos_bbox_preds = flat_bbox_preds[pos_bbox_inds]
        pos_bbox_targets = bbox_targets[pos_bbox_inds]
        bbox_weights = cls_targets.max(dim=1)[0][pos_bbox_inds]
        if not self.soft_weight_on_reg:
            bbox_weights = torch.ones_like(bbox_weights)
        num_pos_bbox = max(reduce_mean(bbox_weights.sum()), 1.0)
        if len(pos_bbox_inds) > 0:
            pos_points = flat_points[pos_bbox_inds]
            loss_bbox = self.loss_bbox(self.bbox_coder.decode(pos_points, pos_bbox_preds),
                                       self.bbox_coder.decode(pos_points, pos_bbox_targets),
                                       weight=bbox_weights, avg_factor=num_pos_bbox)
        else:
            loss_bbox = flat_bbox_preds.sum() * 0  # zero, but connected to the graph
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)
