"""FCOSHead: the head of FCOS (Tian et al., 2019: "FCOS: Fully Convolutional One-Stage Object
Detection").

On top of :class:`AnchorFreeHead`'s towers, FCOS predicts per point a *centerness* logit (from
the cls tower, or from the reg tower with ``centerness_on_reg``) and scales its box distances
by a learnable ``Scale`` per level: ``exp(scale_l * conv_reg(reg_feat))``, or with
``norm_on_bbox`` ``relu(scale_l * conv_reg(reg_feat))`` in strides (times ``stride_l`` only at
inference).

Targets (``get_targets``): a point is a positive of a gt box when (1) it lies strictly inside
the box, or with ``center_sampling`` inside the box's central square of half-side
``center_sample_radius * stride`` (clipped to the box), and (2) its largest distance to the
four sides lies within its level's ``regress_ranges`` (both ends included). A point that
qualifies for several boxes takes the one of smallest area; the others are background (label
``num_classes``). Box targets are (left, top, right, bottom) distances, in units of the
stride with ``norm_on_bbox``. This is :class:`~.fcos_targets.FCOSTargetsMixin`, in
fcos_targets.py.

Losses, each averaged over the batch's positives (over ranks, at least 1):

- ``loss_cls``: focal loss over every point and class;
- ``loss_bbox``: IoU / GIoU loss of the positives' decoded boxes, weighted by their
  centerness targets and divided by the sum of those (instead of the number of positives);
- ``loss_centerness``: BCE of the centerness logit against
  ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``.

At test time the class scores are multiplied by sigmoid(centerness) before NMS
(:class:`BaseDenseHead`'s ``score_factors``), which ranks boxes from the middle of objects
above those from their edges.
"""
from typing import Dict, List, Sequence, Tuple

import torch
from mmcv.cnn import Scale
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, MultiConfig, OptInstanceList, reduce_mean
from ..layers import NormedConv2d
from .anchor_free_head import AnchorFreeHead, AnchorFreeHeadArgumentError, flatten_levels
from .fcos_targets import INF, FCOSTargetsMixin

RegressRanges = Sequence[Tuple[float, float]]


@MODELS.register_module()
class FCOSHead(FCOSTargetsMixin, AnchorFreeHead):
    """FCOS head: AnchorFreeHead's towers plus ``conv_centerness`` and one Scale per level;
    targets from :class:`~.fcos_targets.FCOSTargetsMixin`.

    State dict: ``cls_convs.{i}`` / ``reg_convs.{i}`` (``conv`` and ``gn`` with the default
    GroupNorm), ``conv_cls``, ``conv_reg``, ``conv_centerness`` (1 output) and
    ``scales.{l}.scale`` (a scalar per level).

    For subclasses (CondInst): ``forward`` regroups whatever ``forward_single`` returns,
    ``_sampling_centers`` places the center-sampling squares, and outputs of
    ``_get_targets_single`` beyond (labels, bbox_targets) come out of ``get_targets`` per image.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        regress_ranges (Sequence[tuple[float, float]]): Per level, the range of the largest
            point-to-side distance of the boxes it is responsible for. Defaults to
            ((-1, 64), (64, 128), (128, 256), (256, 512), (512, INF)).
        center_sampling (bool): Only points near the box centre are positives. Defaults to
            False.
        center_sample_radius (float): Half-side of the central square, in strides.
            Defaults to 1.5.
        norm_on_bbox (bool): Regress distances divided by the stride, with a ReLU instead of
            exp. Defaults to False.
        centerness_on_reg (bool): Predict centerness from the regression tower (as the
            official FCOS repository; the paper puts it on the cls tower). Defaults to False.
        loss_cls (dict): Classification loss. Defaults to FocalLoss.
        loss_bbox (dict): Box loss on decoded boxes. Defaults to IoULoss.
        loss_centerness (dict): Centerness loss. Defaults to sigmoid CrossEntropyLoss.
        norm_cfg (dict): Norm layer of the towers. Defaults to GN with 32 groups.
        cls_predictor_cfg (dict, optional): ``dict(type='NormedConv2d', ...)`` makes
            ``conv_cls`` a 1x1 cosine-similarity conv with those arguments. Defaults to None.
        init_cfg (dict or list[dict]): Normal(std=0.01) for every conv; ``conv_cls`` gets a
            bias giving every class a prior probability of 0.01.
        **kwargs: Remaining AnchorFreeHead arguments (``feat_channels``, ``stacked_convs``,
            ``strides``, ``dcn_on_last_conv``, ``conv_bias``, ``bbox_coder``, ``conv_cfg``,
            ``train_cfg``, ``test_cfg``).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 regress_ranges: RegressRanges = ((-1, 64), (64, 128), (128, 256), (256, 512),
                                                  (512, INF)),
                 center_sampling: bool = False,
                 center_sample_radius: float = 1.5,
                 norm_on_bbox: bool = False,
                 centerness_on_reg: bool = False,
                 loss_cls: ConfigType = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
                     loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='IoULoss', loss_weight=1.0),
                 loss_centerness: ConfigType = dict(
                     type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32, requires_grad=True),
                 cls_predictor_cfg: ConfigType = None,
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(
                         type='Normal', name='conv_cls', std=0.01, bias_prob=0.01)),
                 **kwargs) -> None:
        # Read by _init_layers, which AnchorFreeHead.__init__ calls.
        self.regress_ranges = regress_ranges
        self.center_sampling = center_sampling
        self.center_sample_radius = center_sample_radius
        self.norm_on_bbox = norm_on_bbox
        self.centerness_on_reg = centerness_on_reg
        self.cls_predictor_cfg = cls_predictor_cfg
        super().__init__(num_classes=num_classes, in_channels=in_channels, loss_cls=loss_cls,
                         loss_bbox=loss_bbox, norm_cfg=norm_cfg, init_cfg=init_cfg, **kwargs)
        self.loss_centerness = MODELS.build(loss_centerness)

    def _init_layers(self) -> None:
        """Add ``conv_centerness`` and the per-level ``scales`` to the towers and predictors."""
        super()._init_layers()
        self.conv_centerness = nn.Conv2d(self.feat_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])
        if self.cls_predictor_cfg is not None:
            # mmdetection pops 'type' from the config in place; a copy leaves the user's
            # config reusable.
            predictor_args = {k: v for k, v in self.cls_predictor_cfg.items() if k != 'type'}
            self.conv_cls = NormedConv2d(self.feat_channels, self.cls_out_channels, 1,
                                         padding=0, **predictor_args)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], ...]:
        """Predict every level with ``forward_single``, its outputs regrouped per kind.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l]; as many
                as ``strides``.

        Returns:
            tuple[list[Tensor]]: Per output of ``forward_single``, a tensor per level: FCOS's
            ``cls_scores`` [B, cls_out_channels, H_l, W_l], ``bbox_preds`` [B, 4, H_l, W_l]
            and ``centernesses`` [B, 1, H_l, W_l]; subclasses may add more (CondInst).
        """
        # zip stops at the shortest, as mmdetection's multi_apply does.
        per_level = [self.forward_single(feat, scale, stride)
                     for feat, scale, stride in zip(x, self.scales, self.strides)]
        return tuple(list(outputs) for outputs in zip(*per_level))

    def forward_single(self, x: Tensor, scale: Scale,
                       stride: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Predict one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].
            scale (Scale): Learnable multiplier of this level's box distances.
            stride (int): Stride of the level; multiplies the distances at inference with
                ``norm_on_bbox``.

        Returns:
            tuple: cls_score [B, cls_out_channels, H, W], bbox_pred [B, 4, H, W] and
            centerness [B, 1, H, W].
        """
        cls_score, bbox_pred, cls_feat, reg_feat = super().forward_single(x)
        bbox_pred, centerness = self._distances_and_centerness(bbox_pred, cls_feat, reg_feat,
                                                               scale, stride)
        return cls_score, bbox_pred, centerness

    def _distances_and_centerness(self, bbox_pred: Tensor, cls_feat: Tensor, reg_feat: Tensor,
                                  scale: Scale, stride: int) -> Tuple[Tensor, Tensor]:
        """FCOS's step after the towers (``forward_single``'s args, plus ``conv_reg``'s
        output [B, 4, H, W] and the tower outputs [B, feat_channels, H, W]).

        Returns:
            tuple: bbox_pred [B, 4, H, W] (fp32, non-negative) and centerness [B, 1, H, W].
        """
        centerness = self.conv_centerness(reg_feat if self.centerness_on_reg else cls_feat)
        # float(): distances in fp32 even under mixed precision, where exp would overflow.
        bbox_pred = scale(bbox_pred).float()
        if self.norm_on_bbox:
            # clamp, not an in-place ReLU: the tensor is needed for the backward pass.
            bbox_pred = bbox_pred.clamp(min=0)
            if not self.training:
                bbox_pred = bbox_pred * stride  # back to pixels for decoding
        else:
            bbox_pred = bbox_pred.exp()
        return bbox_pred, centerness

    # ------------------------------------------------------------------ training

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     centernesses: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Focal, IoU and centerness losses of the head outputs (see the module docstring).

        Args:
            cls_scores (list[Tensor]): Per level [B, cls_out_channels, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l].
            centernesses (list[Tensor]): Per level [B, 1, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image (not used by FCOS).
            batch_gt_instances_ignore (list[InstanceData | None], optional): Not used by
                FCOS (as in mmdetection).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox`` and ``loss_centerness`` scalars.
        """
        if not len(cls_scores) == len(bbox_preds) == len(centernesses):
            raise AnchorFreeHeadArgumentError(
                f'cls_scores, bbox_preds and centernesses must have one tensor per level, '
                f'got {len(cls_scores)}, {len(bbox_preds)} and {len(centernesses)}')
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        points = self.prior_generator.grid_priors(featmap_sizes, dtype=bbox_preds[0].dtype,
                                                  device=bbox_preds[0].device)
        # [:2]: a subclass's get_targets may return more (CondInst: the positives).
        labels, bbox_targets = self.get_targets(points, batch_gt_instances)[:2]

        # Rows ordered level, then image, then position: as the targets.
        num_imgs = cls_scores[0].size(0)
        flat_cls_scores = flatten_levels(cls_scores)  # [sum_l B * H_l * W_l, C]
        flat_bbox_preds = flatten_levels(bbox_preds)  # [sum_l B * H_l * W_l, 4]
        flat_centerness = flatten_levels(centernesses).reshape(-1)
        flat_labels = torch.cat(labels)
        flat_bbox_targets = torch.cat(bbox_targets)
        flat_points = torch.cat([level.repeat(num_imgs, 1) for level in points])

        losses = dict()
        # Foreground labels are 0..num_classes-1; num_classes is background.
        pos_inds = ((flat_labels >= 0) & (flat_labels < self.num_classes)).nonzero().reshape(-1)
        num_pos = torch.tensor(len(pos_inds), dtype=torch.float, device=bbox_preds[0].device)
        num_pos = max(reduce_mean(num_pos), 1.0)
        losses['loss_cls'] = self.loss_cls(flat_cls_scores, flat_labels, avg_factor=num_pos)
        if getattr(self.loss_cls, 'custom_accuracy', False):
            losses.update(self.loss_cls.get_accuracy(flat_cls_scores, flat_labels))

        pos_bbox_preds = flat_bbox_preds[pos_inds]
        pos_centerness = flat_centerness[pos_inds]
        pos_bbox_targets = flat_bbox_targets[pos_inds]
        pos_centerness_targets = self.centerness_target(pos_bbox_targets)
        # The box loss is a centerness-weighted mean: normalised by the weights' sum.
        centerness_denorm = max(reduce_mean(pos_centerness_targets.sum().detach()), 1e-6)
        if len(pos_inds) > 0:
            pos_points = flat_points[pos_inds]
            # IoU is invariant to a common shift and scale, so stride-normalised distances
            # (norm_on_bbox) can be decoded around the pixel points as they are.
            pos_decoded_preds = get_box_tensor(self.bbox_coder.decode(pos_points,
                                                                      pos_bbox_preds))
            pos_decoded_targets = get_box_tensor(self.bbox_coder.decode(pos_points,
                                                                        pos_bbox_targets))
            losses['loss_bbox'] = self.loss_bbox(pos_decoded_preds, pos_decoded_targets,
                                                 weight=pos_centerness_targets,
                                                 avg_factor=centerness_denorm)
            losses['loss_centerness'] = self.loss_centerness(
                pos_centerness, pos_centerness_targets, avg_factor=num_pos)
        else:
            # Zero losses that stay connected to the graph (every parameter gets a grad).
            losses['loss_bbox'] = pos_bbox_preds.sum()
            losses['loss_centerness'] = pos_centerness.sum()
        return losses

    def centerness_target(self, pos_bbox_targets: Tensor) -> Tensor:
        """Centerness of positive points: how close each is to the centre of its box.

        Args:
            pos_bbox_targets (Tensor): (left, top, right, bottom) distances [P, 4] (any
                common unit).

        Returns:
            Tensor: ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` [P], in (0, 1].
        """
        # Only positives: a background point's distances can be zero or negative (nan).
        left_right = pos_bbox_targets[:, [0, 2]]
        top_bottom = pos_bbox_targets[:, [1, 3]]
        if len(left_right) == 0:
            return left_right[..., 0]
        centerness = (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0]) * (
            top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0])
        return torch.sqrt(centerness)
