"""VFNetHead: the head of VarifocalNet (Zhang et al., 2021: "VarifocalNet: An IoU-aware Dense
Object Detector").

FCOS-style towers on points, with three changes:

- The class score is *IoU-aware*: its target for a positive is the IoU of the refined box
  with the gt (Varifocal Loss), so the score ranks boxes by localization quality too.
- Boxes are predicted twice: an initial (left, top, right, bottom) ``bbox_pred``, and a
  refinement ``bbox_pred_refine = bbox_pred.detach() * exp(scale * conv(...))``.
- The refinement and the classification read the tower features with a *star-shaped*
  deformable 3x3 conv: its nine samples sit at the corners, edge midpoints and centre of the
  initial box (``star_dcn_offset``), so both see the whole box.

Positives come from ATSS on one square anchor per point (``use_atss``, the default) or from
FCOS's rules. Losses: ``loss_cls`` (Varifocal, or focal without ``use_vfl``), ``loss_bbox`` and
``loss_bbox_rf`` (GIoU of the initial and refined boxes, each weighted by its own IoU with the
gt). At test time only the IoU-aware scores and the refined boxes are used.

As mmdetection, the class derives from ATSSHead and FCOSHead but runs only
:class:`AnchorFreeHead`'s constructor: its layers are FCOS-like (``cls_convs`` /
``reg_convs``), its targets borrow ATSSHead's or FCOSHead's code
(:class:`~.vfnet_targets.VFNetTargetsMixin`, in vfnet_targets.py).
"""
from typing import List, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule, Scale
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import bbox_overlaps, get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, MultiConfig, OptInstanceList, reduce_mean
from ..layers.dcn import DeformConv2d
from ..task_modules.prior_generators import MlvlPointGenerator
from ..task_modules.samplers import PseudoSampler
from .anchor_free_head import AnchorFreeHead, AnchorFreeHeadArgumentError, flatten_levels
from .atss_head import ATSSHead
from .fcos_head import INF, FCOSHead
from .vfnet_targets import VFNetTargetsMixin


@MODELS.register_module()
class VFNetHead(VFNetTargetsMixin, ATSSHead, FCOSHead):
    """VarifocalNet head; its targets (``get_targets``, ``get_anchors``) come from
    :class:`~.vfnet_targets.VFNetTargetsMixin`.

    State dict: ``cls_convs.{i}`` / ``reg_convs.{i}`` (ConvModules with GN), ``vfnet_reg_conv``
    (ConvModule), ``vfnet_reg``, ``scales.{l}.scale``, ``vfnet_reg_refine_dconv`` (a
    DeformConv2d: ``weight`` only), ``vfnet_reg_refine``, ``scales_refine.{l}.scale``,
    ``vfnet_cls_dconv`` and ``vfnet_cls``.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        regress_ranges (Sequence[tuple]): FCOS regress range of each level; also sets the
            ``reg_denom`` normalisers (the upper ends, the last one twice the one before).
        center_sampling (bool): FCOS center sampling (without ATSS). Defaults to False.
        center_sample_radius (float): FCOS center sampling radius. Defaults to 1.5.
        sync_num_pos (bool): Average the number of positives over ranks (at least 1).
            Defaults to True.
        gradient_mul (float): Fraction of the gradient of the star offsets that flows back
            into ``bbox_pred``. Defaults to 0.1.
        bbox_norm_type (str): ``bbox_pred = exp(scale * x) * reg_denom`` (``'reg_denom'``) or
            ``* stride`` (``'stride'``). Defaults to ``'reg_denom'``.
        loss_cls_fl (dict): Focal loss used when ``use_vfl`` is False.
        use_vfl (bool): Train the scores with ``loss_cls`` (Varifocal Loss towards the
            IoU). Defaults to True.
        loss_cls (dict): Varifocal Loss config.
        loss_bbox (dict): Loss of the initial boxes. Defaults to GIoU (weight 1.5).
        loss_bbox_refine (dict): Loss of the refined boxes. Defaults to GIoU (weight 2.0).
        norm_cfg (dict): Norm layer of the towers. Defaults to GN with 32 groups.
        use_atss (bool): ATSS positives (else FCOS's). Defaults to True.
        reg_decoded_bbox (bool): Kept for ATSSHead's targets (gt boxes). Defaults to True.
        anchor_generator (dict): The square anchors of ATSS; its ``strides`` and
            ``center_offset`` also place the points.
        init_cfg (dict or list[dict]): Normal(std=0.01) convs; ``vfnet_cls`` starts at a
            prior probability of 0.01.
        **kwargs: AnchorFreeHead arguments: ``feat_channels``, ``stacked_convs``,
            ``strides``, ``dcn_on_last_conv``, ``conv_bias``, ``bbox_coder``, ``conv_cfg``,
            ``train_cfg`` (``assigner``, ``allowed_border``, ``pos_weight``), ``test_cfg``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 regress_ranges: Sequence[Tuple[float, float]] = ((-1, 64), (64, 128),
                                                                  (128, 256), (256, 512),
                                                                  (512, INF)),
                 center_sampling: bool = False,
                 center_sample_radius: float = 1.5,
                 sync_num_pos: bool = True,
                 gradient_mul: float = 0.1,
                 bbox_norm_type: str = 'reg_denom',
                 loss_cls_fl: ConfigType = dict(
                     type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                     loss_weight=1.0),
                 use_vfl: bool = True,
                 loss_cls: ConfigType = dict(
                     type='VarifocalLoss', use_sigmoid=True, alpha=0.75, gamma=2.0,
                     iou_weighted=True, loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='GIoULoss', loss_weight=1.5),
                 loss_bbox_refine: ConfigType = dict(type='GIoULoss', loss_weight=2.0),
                 norm_cfg: ConfigType = dict(type='GN', num_groups=32, requires_grad=True),
                 use_atss: bool = True,
                 reg_decoded_bbox: bool = True,
                 anchor_generator: ConfigType = dict(
                     type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                     scales_per_octave=1, center_offset=0.0, strides=[8, 16, 32, 64, 128]),
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(type='Normal', name='vfnet_cls', std=0.01, bias_prob=0.01)),
                 **kwargs) -> None:
        # The 3x3 kernel of the star convs (read by _init_layers) and its regular grid:
        # (dy, dx) of tap k = 3 * i + j is (i - 1, j - 1), flattened to [1, 18, 1, 1].
        self.num_dconv_points = 9
        self.dcn_kernel = 3
        self.dcn_pad = 1
        grid = torch.arange(-self.dcn_pad, self.dcn_pad + 1, dtype=torch.float64)
        grid_y, grid_x = torch.meshgrid(grid, grid, indexing='ij')
        self.dcn_base_offset = torch.stack([grid_y, grid_x], -1).reshape(1, -1, 1, 1)

        # Only AnchorFreeHead's constructor runs (as mmdetection), with its default focal loss:
        # cls_out_channels is num_classes whatever loss_cls says.
        AnchorFreeHead.__init__(self, num_classes=num_classes, in_channels=in_channels,
                                norm_cfg=norm_cfg, init_cfg=init_cfg, **kwargs)
        self.regress_ranges = regress_ranges
        self.reg_denoms = [regress_range[-1] for regress_range in regress_ranges]
        self.reg_denoms[-1] = self.reg_denoms[-2] * 2  # the last range is open-ended
        self.center_sampling = center_sampling
        self.center_sample_radius = center_sample_radius
        self.sync_num_pos = sync_num_pos
        self.bbox_norm_type = bbox_norm_type
        self.gradient_mul = gradient_mul
        self.use_vfl = use_vfl
        self.loss_cls = MODELS.build(loss_cls if use_vfl else loss_cls_fl)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_bbox_refine = MODELS.build(loss_bbox_refine)

        self.use_atss = use_atss
        self.reg_decoded_bbox = reg_decoded_bbox
        # As mmdetection: from loss_cls even when use_vfl is False.
        self.use_sigmoid_cls = loss_cls.get('use_sigmoid', False)
        self.anchor_center_offset = anchor_generator['center_offset']
        self.num_base_priors = self.prior_generator.num_base_priors[0]
        if self.train_cfg:
            self.assigner = TASK_UTILS.build(self.train_cfg['assigner'])
            if self.train_cfg.get('sampler', None) is not None:
                self.sampler = TASK_UTILS.build(self.train_cfg['sampler'],
                                                default_args=dict(context=self))
            else:
                self.sampler = PseudoSampler()
        # Anchors for ATSS, and the points (at the anchor centres with ATSS) that every
        # other step, prediction included, uses.
        self.atss_prior_generator = TASK_UTILS.build(anchor_generator)
        self.fcos_prior_generator = MlvlPointGenerator(
            anchor_generator['strides'], self.anchor_center_offset if self.use_atss else 0.5)
        self.prior_generator = self.fcos_prior_generator

    def _init_layers(self) -> None:
        """Create the towers, the initial box branch, the star convs and the predictors."""
        AnchorFreeHead._init_cls_convs(self)
        AnchorFreeHead._init_reg_convs(self)
        self.relu = nn.ReLU()
        self.vfnet_reg_conv = ConvModule(self.feat_channels, self.feat_channels, 3, stride=1,
                                         padding=1, conv_cfg=self.conv_cfg,
                                         norm_cfg=self.norm_cfg, bias=self.conv_bias)
        self.vfnet_reg = nn.Conv2d(self.feat_channels, 4, 3, padding=1)
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.strides])

        self.vfnet_reg_refine_dconv = DeformConv2d(self.feat_channels, self.feat_channels,
                                                   self.dcn_kernel, 1, padding=self.dcn_pad)
        self.vfnet_reg_refine = nn.Conv2d(self.feat_channels, 4, 3, padding=1)
        self.scales_refine = nn.ModuleList([Scale(1.0) for _ in self.strides])

        self.vfnet_cls_dconv = DeformConv2d(self.feat_channels, self.feat_channels,
                                            self.dcn_kernel, 1, padding=self.dcn_pad)
        self.vfnet_cls = nn.Conv2d(self.feat_channels, self.cls_out_channels, 3, padding=1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        """Do nothing, as mmdetection's VFNetHead.

        The head has no parameters or buffers of its own (its children load theirs), so this
        only skips AnchorFreeHead's renaming of old ``*_cls`` / ``*_reg`` keys, which would
        turn ``vfnet_cls`` into ``conv_cls``. (It also means that a stray key directly under
        the head's prefix is not reported as unexpected, as in mmdetection.)
        """

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], ...]:
        """Predict every level.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: per level ``cls_scores`` [B, num_classes, H_l, W_l] (IoU-aware logits),
            then, in training, ``bbox_preds`` [B, 4, H_l, W_l], and always
            ``bbox_preds_refine`` [B, 4, H_l, W_l] ((left, top, right, bottom) in pixels).
        """
        outs = [self.forward_single(feat, scale, scale_refine, stride, reg_denom)
                for feat, scale, scale_refine, stride, reg_denom in zip(
                    x, self.scales, self.scales_refine, self.strides, self.reg_denoms)]
        return tuple(list(per_level) for per_level in zip(*outs))

    def forward_single(self, x: Tensor, scale: Scale, scale_refine: Scale, stride: int,
                       reg_denom: int) -> tuple:
        """Predict one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].
            scale (Scale): Learnable multiplier of the initial box logits.
            scale_refine (Scale): Learnable multiplier of the refinement logits.
            stride (int): Stride of the level (to map boxes onto the feature map).
            reg_denom (int): Distance unit of the level with ``bbox_norm_type='reg_denom'``.

        Returns:
            tuple: cls_score [B, num_classes, H, W], bbox_pred [B, 4, H, W] (training only)
            and bbox_pred_refine [B, 4, H, W].
        """
        cls_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)  # [B, C, H, W]
        reg_feat = x
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)  # [B, C, H, W]

        reg_feat_init = self.vfnet_reg_conv(reg_feat)
        if self.bbox_norm_type == 'reg_denom':
            bbox_pred = scale(self.vfnet_reg(reg_feat_init)).float().exp() * reg_denom
        elif self.bbox_norm_type == 'stride':
            bbox_pred = scale(self.vfnet_reg(reg_feat_init)).float().exp() * stride
        else:
            raise NotImplementedError(f"bbox_norm_type must be 'reg_denom' or 'stride', got "
                                      f'{self.bbox_norm_type!r}')

        # Offsets in the features' dtype, so that the head also runs in fp16.
        dcn_offset = self.star_dcn_offset(bbox_pred, self.gradient_mul,
                                          stride).to(reg_feat.dtype)  # [B, 18, H, W]
        reg_feat = self.relu(self.vfnet_reg_refine_dconv(reg_feat, dcn_offset))
        # The refinement is a factor on the (detached) initial distances.
        bbox_pred_refine = scale_refine(self.vfnet_reg_refine(reg_feat)).float().exp()
        bbox_pred_refine = bbox_pred_refine * bbox_pred.detach()

        cls_feat = self.relu(self.vfnet_cls_dconv(cls_feat, dcn_offset))
        cls_score = self.vfnet_cls(cls_feat)
        if self.training:
            return cls_score, bbox_pred, bbox_pred_refine
        return cls_score, bbox_pred_refine

    def star_dcn_offset(self, bbox_pred: Tensor, gradient_mul: float, stride: int) -> Tensor:
        """Offsets that move the 3x3 taps onto the star points of each predicted box.

        Tap (i, j) of the kernel samples at ``(dy, dx) = ((-t, 0, b)[i], (-l, 0, r)[j])`` from
        the point, with (l, t, r, b) the box in feature-map units: the corners, the edge
        midpoints and the point itself. The offsets are those positions minus the regular
        grid (``dcn_base_offset``). Only ``gradient_mul`` of their gradient reaches
        ``bbox_pred``.

        Args:
            bbox_pred (Tensor): (left, top, right, bottom) distances [B, 4, H, W] in pixels.
            gradient_mul (float): Fraction of the gradient passed to ``bbox_pred``.
            stride (int): Stride of the level.

        Returns:
            Tensor: Offsets [B, 18, H, W], (dy, dx) per tap in row-major tap order.
        """
        base_offset = self.dcn_base_offset.type_as(bbox_pred)
        # Same value as bbox_pred, scaled gradient.
        bbox = (1 - gradient_mul) * bbox_pred.detach() + gradient_mul * bbox_pred
        bbox = bbox / stride
        left, top, right, bottom = bbox.unbind(1)  # each [B, H, W]
        zero = torch.zeros_like(left)
        rows = (-top, zero, bottom)
        cols = (-left, zero, right)
        star = torch.stack([coord for row in rows for col in cols for coord in (row, col)],
                           dim=1)  # [B, 18, H, W]
        return star - base_offset

    # ------------------------------------------------------------------ training

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     bbox_preds_refine: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Varifocal (or focal) and GIoU losses of the head outputs.

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l].
            bbox_preds_refine (list[Tensor]): Per level [B, 4, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore
                (ATSS only).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox`` and ``loss_bbox_rf``.
        """
        if not len(cls_scores) == len(bbox_preds) == len(bbox_preds_refine):
            raise AnchorFreeHeadArgumentError(
                f'cls_scores, bbox_preds and bbox_preds_refine must have one tensor per level, '
                f'got {len(cls_scores)}, {len(bbox_preds)} and {len(bbox_preds_refine)}')
        featmap_sizes = [score.size()[-2:] for score in cls_scores]
        points = self.fcos_prior_generator.grid_priors(featmap_sizes, bbox_preds[0].dtype,
                                                       bbox_preds[0].device)
        labels, label_weights, bbox_targets, _ = self.get_targets(
            cls_scores, points, batch_gt_instances, batch_img_metas,
            batch_gt_instances_ignore=batch_gt_instances_ignore)

        # Rows ordered level, then image, then position: as the targets.
        num_imgs = cls_scores[0].size(0)
        flat_cls_scores = flatten_levels(cls_scores)  # [sum_l B * H_l * W_l, C]
        flat_bbox_preds = flatten_levels(bbox_preds)  # [sum_l B * H_l * W_l, 4]
        flat_bbox_preds_refine = flatten_levels(bbox_preds_refine)
        flat_labels = torch.cat(labels)
        flat_bbox_targets = torch.cat(bbox_targets)
        flat_points = torch.cat([level.repeat(num_imgs, 1) for level in points])

        pos_inds = torch.where((flat_labels >= 0) & (flat_labels < self.num_classes))[0]
        num_pos = len(pos_inds)
        pos_bbox_preds = flat_bbox_preds[pos_inds]
        pos_bbox_preds_refine = flat_bbox_preds_refine[pos_inds]
        pos_labels = flat_labels[pos_inds]
        if self.sync_num_pos:
            num_pos_avg_per_gpu = max(
                reduce_mean(pos_inds.new_tensor(num_pos).float()).item(), 1.0)
        else:
            num_pos_avg_per_gpu = num_pos  # as mmdetection, may be 0

        pos_points = flat_points[pos_inds]
        pos_decoded_targets = get_box_tensor(
            self.bbox_coder.decode(pos_points, flat_bbox_targets[pos_inds])).detach()
        # Each box loss is weighted by the box's IoU with its gt, normalised by their sum.
        pos_decoded_preds = get_box_tensor(self.bbox_coder.decode(pos_points, pos_bbox_preds))
        iou_targets_ini = bbox_overlaps(pos_decoded_preds, pos_decoded_targets,
                                        is_aligned=True).clamp(min=1e-6)
        bbox_weights_ini = iou_targets_ini.clone().detach()
        bbox_avg_factor_ini = reduce_mean(bbox_weights_ini.sum()).clamp_(min=1).item()

        pos_decoded_preds_refine = get_box_tensor(
            self.bbox_coder.decode(pos_points, pos_bbox_preds_refine))
        iou_targets_rf = bbox_overlaps(pos_decoded_preds_refine, pos_decoded_targets,
                                       is_aligned=True).clamp(min=1e-6)
        bbox_weights_rf = iou_targets_rf.clone().detach()
        bbox_avg_factor_rf = reduce_mean(bbox_weights_rf.sum()).clamp_(min=1).item()

        # IoU-aware class targets: the refined box's IoU at the positive's class, else 0.
        cls_iou_targets = torch.zeros_like(flat_cls_scores) if self.use_vfl else None
        if num_pos > 0:
            loss_bbox = self.loss_bbox(pos_decoded_preds, pos_decoded_targets,
                                       weight=bbox_weights_ini, avg_factor=bbox_avg_factor_ini)
            loss_bbox_refine = self.loss_bbox_refine(pos_decoded_preds_refine,
                                                     pos_decoded_targets,
                                                     weight=bbox_weights_rf,
                                                     avg_factor=bbox_avg_factor_rf)
            if self.use_vfl:
                cls_iou_targets[pos_inds, pos_labels] = iou_targets_rf.clone().detach()
        else:
            loss_bbox = pos_bbox_preds.sum() * 0  # zeros that keep the graph connected
            loss_bbox_refine = pos_bbox_preds_refine.sum() * 0

        if self.use_vfl:
            loss_cls = self.loss_cls(flat_cls_scores, cls_iou_targets,
                                     avg_factor=num_pos_avg_per_gpu)
        else:
            loss_cls = self.loss_cls(flat_cls_scores, flat_labels, weight=label_weights,
                                     avg_factor=num_pos_avg_per_gpu)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_bbox_rf=loss_bbox_refine)
