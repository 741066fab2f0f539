"""ATSSHead: the dense head of ATSS (Zhang et al., 2020, "Bridging the Gap Between Anchor-based
and Anchor-free Detection via Adaptive Training Sample Selection").

One square anchor per position (in the standard config) on P3-P7; two GN towers shared across
levels, the classification tower ending in ``atss_cls``, the regression tower in ``atss_reg``
(box deltas, times a learnable per-level ``Scale``) and ``atss_centerness`` (a logit of how
central the position is in its object, FCOS-style). Training picks positives with
``ATSSAssigner`` (adaptive IoU threshold among the nearest anchors of each level); the box loss
compares decoded boxes with the gts (GIoU in the config) weighted by the centerness targets, and
the centerness logit is trained with binary cross entropy. At test time the class scores are
multiplied by the sigmoid of the centerness (:class:`BaseDenseHead`'s ``score_factors``).

The target computation (``get_targets``: assignment, sampling, per-level regrouping) is
:class:`~.atss_targets.ATSSTargetsMixin`, in atss_targets.py. GFLHead (an AnchorHead, as in
mmdetection) borrows it too, of which mmdetection keeps a copy in gfl_head.py.
"""
from typing import List, Tuple

import torch
from mmcv.cnn import ConvModule, Scale
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                              OptInstanceList, reduce_mean)
from .anchor_head import AnchorHead
# ATSSHeadError is imported from here by the other ATSS-style heads and by users.
from .atss_targets import ATSSHeadError, ATSSTargetsMixin


def conv_towers(in_channels: int, feat_channels: int, stacked_convs: int,
                conv_cfg: OptConfigType, norm_cfg: OptConfigType
                ) -> Tuple[nn.ModuleList, nn.ModuleList]:
    """The classification and regression towers of ATSS-style heads.

    Each is ``stacked_convs`` 3x3 ConvModules (conv + norm + ReLU, keys ``{i}.conv.*`` and
    ``{i}.gn.*`` with GN). They are built interleaved, as in mmdetection, so that a seed gives
    the same construction-time weights.

    Returns:
        tuple: ``cls_convs`` and ``reg_convs``.
    """
    cls_convs, reg_convs = nn.ModuleList(), nn.ModuleList()
    for i in range(stacked_convs):
        channels = in_channels if i == 0 else feat_channels
        for tower in (cls_convs, reg_convs):
            tower.append(ConvModule(channels, feat_channels, 3, stride=1, padding=1,
                                    conv_cfg=conv_cfg, norm_cfg=norm_cfg))
    return cls_convs, reg_convs


@MODELS.register_module()
class ATSSHead(ATSSTargetsMixin, AnchorHead):
    """ATSS head: ``stacked_convs`` GN convs per tower, then class, box and centerness convs.

    Base of the TOOD, PAA and VFNet heads. Its targets (``get_targets``) come from
    :class:`~.atss_targets.ATSSTargetsMixin`.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        pred_kernel_size (int): Kernel size of the three prediction convs. Defaults to 3.
        stacked_convs (int): Convs in each tower. Defaults to 4.
        conv_cfg (dict, optional): Conv layer config of the towers. Defaults to None.
        norm_cfg (dict): Norm layer config of the towers. Defaults to
            ``dict(type='GN', num_groups=32, requires_grad=True)``.
        reg_decoded_bbox (bool): Regress decoded boxes (IoU-style losses). Defaults to True.
        loss_centerness (dict): Centerness loss. Defaults to sigmoid CrossEntropyLoss.
        init_cfg (dict or list[dict]): Normal(std=0.01) convs; ``atss_cls`` gets a bias giving
            every class a prior probability of 0.01.
        **kwargs: AnchorHead arguments: ``feat_channels``, ``anchor_generator``,
            ``bbox_coder``, ``loss_cls``, ``loss_bbox``, ``train_cfg`` (``assigner``,
            ``allowed_border``, ``pos_weight``), ``test_cfg``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
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
        self.pred_kernel_size = pred_kernel_size
        self.stacked_convs = stacked_convs
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        super().__init__(num_classes, in_channels, reg_decoded_bbox=reg_decoded_bbox,
                         init_cfg=init_cfg, **kwargs)
        self.sampling = False
        self.loss_centerness = MODELS.build(loss_centerness)

    def _init_layers(self) -> None:
        """Create ``cls_convs``, ``reg_convs``, ``atss_cls``, ``atss_reg``,
        ``atss_centerness`` and one ``Scale`` per level."""
        # Unused in forward (ConvModule has its own activation); kept for mmdetection's repr.
        self.relu = nn.ReLU(inplace=True)
        self.cls_convs, self.reg_convs = conv_towers(self.in_channels, self.feat_channels,
                                                     self.stacked_convs, self.conv_cfg,
                                                     self.norm_cfg)
        padding = self.pred_kernel_size // 2
        self.atss_cls = nn.Conv2d(self.feat_channels,
                                  self.num_base_priors * self.cls_out_channels,
                                  self.pred_kernel_size, padding=padding)
        self.atss_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * 4,
                                  self.pred_kernel_size, padding=padding)
        self.atss_centerness = nn.Conv2d(self.feat_channels, self.num_base_priors,
                                         self.pred_kernel_size, padding=padding)
        self.scales = nn.ModuleList(Scale(1.0) for _ in self.prior_generator.strides)

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Predict every level with the shared towers and the level's ``Scale``.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: per level ``cls_scores`` [B, A * num_classes, H_l, W_l] (logits),
            ``bbox_preds`` [B, A * 4, H_l, W_l] (deltas from the anchors) and
            ``centernesses`` [B, A, H_l, W_l] (logits).
        """
        cls_scores, bbox_preds, centernesses = [], [], []
        for feat, scale in zip(x, self.scales):
            cls_score, bbox_pred, centerness = self.forward_single(feat, scale)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
            centernesses.append(centerness)
        return cls_scores, bbox_preds, centernesses

    def forward_single(self, x: Tensor, scale: Scale) -> Tuple[Tensor, Tensor, Tensor]:
        """Predict one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].
            scale (Scale): The level's learnable multiplier of the box deltas.

        Returns:
            tuple: cls_score [B, A * num_classes, H, W], bbox_pred [B, A * 4, H, W] and
            centerness [B, A, H, W].
        """
        cls_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)  # [B, feat_channels, H, W]
        reg_feat = x
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)  # [B, feat_channels, H, W]
        cls_score = self.atss_cls(cls_feat)
        # Deltas are scaled but not exponentiated (the box coder takes care of w and h).
        bbox_pred = scale(self.atss_reg(reg_feat)).float()
        centerness = self.atss_centerness(reg_feat)
        return cls_score, bbox_pred, centerness

    def centerness_target(self, anchors: Tensor, gts: Tensor) -> Tensor:
        """FCOS centerness of each anchor centre in its gt box:
        ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``.

        Only meaningful for positives, whose centres lie inside their gt (else NaN).

        Args:
            anchors (Tensor): Anchors [P, 4], (x1, y1, x2, y2).
            gts (Tensor): Their gt boxes [P, 4], (x1, y1, x2, y2).

        Returns:
            Tensor: Centerness in (0, 1] [P].
        """
        centers_x = (anchors[:, 0] + anchors[:, 2]) / 2
        centers_y = (anchors[:, 1] + anchors[:, 3]) / 2
        left_right = torch.stack([centers_x - gts[:, 0], gts[:, 2] - centers_x], dim=1)
        top_bottom = torch.stack([centers_y - gts[:, 1], gts[:, 3] - centers_y], dim=1)
        centerness = torch.sqrt(
            (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0]) *
            (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0]))
        if torch.isnan(centerness).any():
            raise ATSSHeadError('centerness targets are NaN: an anchor centre lies outside '
                                'its gt box (only positives of ATSSAssigner qualify)')
        return centerness

    def loss_by_feat_single(self, anchors: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                            centerness: Tensor, labels: Tensor, label_weights: Tensor,
                            bbox_targets: Tensor, avg_factor: float) -> tuple:
        """Losses of one level; the box loss is not normalised yet.

        Args:
            anchors (Tensor): [B, N_l, 4] with N_l = H * W * A.
            cls_score (Tensor): [B, A * num_classes, H, W].
            bbox_pred (Tensor): [B, A * 4, H, W].
            centerness (Tensor): [B, A, H, W].
            labels (Tensor): [B, N_l].
            label_weights (Tensor): [B, N_l].
            bbox_targets (Tensor): [B, N_l, 4], gt boxes of the positives.
            avg_factor (float): Normaliser of the class and centerness losses.

        Returns:
            tuple: ``loss_cls``, ``loss_bbox`` (a sum weighted by the centerness targets),
            ``loss_centerness`` and the sum of the positives' centerness targets.
        """
        anchors = anchors.reshape(-1, 4)
        # Channels are ordered (anchor, value): permuting lines rows up with the targets.
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels).contiguous()
        bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4)
        centerness = centerness.permute(0, 2, 3, 1).reshape(-1)
        bbox_targets = bbox_targets.reshape(-1, 4)
        labels = labels.reshape(-1)
        label_weights = label_weights.reshape(-1)

        loss_cls = self.loss_cls(cls_score, labels, label_weights, avg_factor=avg_factor)

        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
        if len(pos_inds) > 0:
            pos_anchors = anchors[pos_inds]
            pos_bbox_targets = bbox_targets[pos_inds]
            # As in mmdetection the targets are taken as boxes here, i.e. the head assumes
            # reg_decoded_bbox=True (its default and the config's).
            centerness_targets = self.centerness_target(pos_anchors, pos_bbox_targets)
            pos_decoded = get_box_tensor(self.bbox_coder.decode(pos_anchors,
                                                                bbox_pred[pos_inds]))
            # Central positives weigh more; normalised by the sum of weights in loss_by_feat.
            loss_bbox = self.loss_bbox(pos_decoded, pos_bbox_targets, weight=centerness_targets,
                                       avg_factor=1.0)
            loss_centerness = self.loss_centerness(centerness[pos_inds], centerness_targets,
                                                   avg_factor=avg_factor)
        else:
            # Zero losses that keep the graph connected.
            loss_bbox = bbox_pred.sum() * 0
            loss_centerness = centerness.sum() * 0
            centerness_targets = bbox_targets.new_tensor(0.)
        return loss_cls, loss_bbox, loss_centerness, centerness_targets.sum()

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     centernesses: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head outputs against the ground truth.

        The class and centerness losses are averaged over the positives (mean over ranks),
        the box loss over the sum of the positives' centerness targets (at least 1).

        Args:
            cls_scores (list[Tensor]): Per level [B, A * num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, A * 4, H_l, W_l].
            centernesses (list[Tensor]): Per level [B, A, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            dict: ``loss_cls``, ``loss_bbox`` and ``loss_centerness``, each a list with one
            scalar per level.
        """
        featmap_sizes = [pred.size()[-2:] for pred in bbox_preds]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ATSSHeadError(f'expected {self.prior_generator.num_levels} levels of '
                                f'predictions, got {len(featmap_sizes)}')
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=device)
        (anchors_list, labels_list, label_weights_list, bbox_targets_list, _,
         avg_factor) = self.get_targets(anchor_list, valid_flag_list, batch_gt_instances,
                                        batch_img_metas, batch_gt_instances_ignore)
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float,
                                              device=device)).item()

        losses_cls, losses_bbox, losses_centerness, centerness_sums = [], [], [], []
        for level in range(len(featmap_sizes)):
            loss_cls, loss_bbox, loss_centerness, centerness_sum = self.loss_by_feat_single(
                anchors_list[level], cls_scores[level], bbox_preds[level],
                centernesses[level], labels_list[level], label_weights_list[level],
                bbox_targets_list[level], avg_factor)
            losses_cls.append(loss_cls)
            losses_bbox.append(loss_bbox)
            losses_centerness.append(loss_centerness)
            centerness_sums.append(centerness_sum)
        bbox_avg_factor = reduce_mean(sum(centerness_sums)).clamp_(min=1).item()
        return dict(loss_cls=losses_cls,
                    loss_bbox=[loss / bbox_avg_factor for loss in losses_bbox],
                    loss_centerness=losses_centerness)
