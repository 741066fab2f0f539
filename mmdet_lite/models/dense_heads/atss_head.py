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

GFLHead (an AnchorHead, as in mmdetection) borrows ATSSHead's target computation, of which
mmdetection keeps a copy in gfl_head.py.
"""
from typing import List, Optional, Tuple

import torch
from mmcv.cnn import ConvModule, Scale
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                              OptInstanceList, reduce_mean)
from ..task_modules.prior_generators import anchor_inside_flags
from ..task_modules.samplers import SamplingResult
from ..utils import images_to_levels, unmap
from .anchor_head import AnchorHead


class ATSSHeadError(ValueError, AssertionError):
    """Inputs or targets an ATSS-style head cannot use (mmdetection asserts on them)."""


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
class ATSSHead(AnchorHead):
    """ATSS head: ``stacked_convs`` GN convs per tower, then class, box and centerness convs.

    Base of the TOOD, PAA and VFNet heads.

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

    def get_targets(self,
                    anchor_list: List[List[Tensor]],
                    valid_flag_list: List[List[Tensor]],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None,
                    unmap_outputs: bool = True) -> tuple:
        """Targets of every anchor of every image, regrouped per level.

        As :meth:`AnchorHead.get_targets`, except that the assigner also receives the number
        of anchors of each level inside the image, and that the anchors come back too,
        regrouped per level like the targets. GFLHead uses this method as well.

        Args:
            anchor_list (list[list[Tensor]]): Per image, per level anchors [N_l, 4].
            valid_flag_list (list[list[Tensor]]): Per image, per level bool [N_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta of each image (``img_shape``).
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.
            unmap_outputs (bool): Return targets for all anchors (else only for the anchors
                inside the image). Defaults to True.

        Returns:
            tuple: per level ``anchors`` [B, N_l, 4], ``labels`` [B, N_l] (``num_classes`` =
            background), ``label_weights`` [B, N_l], ``bbox_targets`` [B, N_l, 4] and
            ``bbox_weights`` [B, N_l, 4], then ``avg_factor``: the number of positives
            summed over the images (PseudoSampler).
        """
        if self.train_cfg is None:
            raise ValueError(f'{type(self).__name__} was built without train_cfg; the loss '
                             "needs train_cfg with an assigner, e.g. dict(type='ATSSAssigner', "
                             'topk=9)')
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == len(batch_gt_instances) == num_imgs:
            raise ATSSHeadError(
                f'expected one entry per image ({num_imgs}) in anchor_list '
                f'({len(anchor_list)}), valid_flag_list ({len(valid_flag_list)}) and '
                f'batch_gt_instances ({len(batch_gt_instances)})')
        num_level_anchors = [anchors.size(0) for anchors in anchor_list[0]]
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs

        per_image = [
            self._get_targets_single(
                torch.cat(anchor_list[i]), torch.cat(valid_flag_list[i]), num_level_anchors,
                batch_gt_instances[i], batch_img_metas[i], batch_gt_instances_ignore[i],
                unmap_outputs=unmap_outputs) for i in range(num_imgs)
        ]
        # Per image: anchors, labels, label_weights, bbox_targets, bbox_weights, then
        # pos_inds, neg_inds and the sampling result.
        *targets, _, _, sampling_results = zip(*per_image)
        avg_factor = sum(result.avg_factor for result in sampling_results)
        return tuple(images_to_levels(list(target), num_level_anchors)
                     for target in targets) + (avg_factor, )

    def _get_targets_single(self,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            num_level_anchors: List[int],
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None,
                            unmap_outputs: bool = True) -> tuple:
        """Targets of every anchor of one image.

        Args:
            flat_anchors (Tensor): Anchors of all levels [N, 4].
            valid_flags (Tensor): Bool [N].
            num_level_anchors (list[int]): Anchors of each level (sums to N).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            img_meta (dict): Meta of the image (``img_shape``).
            gt_instances_ignore (InstanceData, optional): ``bboxes`` [K, 4] to ignore.
            unmap_outputs (bool): Scatter the targets back to all N anchors.

        Returns:
            tuple: ``anchors`` [N, 4], ``labels`` [N], ``label_weights`` [N],
            ``bbox_targets`` [N, 4], ``bbox_weights`` [N, 4], ``pos_inds`` and ``neg_inds``
            (indices among the inside anchors) and the SamplingResult.
        """
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'][:2],
                                           self.train_cfg.get('allowed_border', -1))
        if not inside_flags.any():
            raise ValueError('No anchor lies inside the image boundary; check the image size '
                             'and anchor sizes, or set train_cfg.allowed_border=-1')
        anchors = flat_anchors[inside_flags]  # [N_in, 4]
        num_level_anchors_inside = self.get_num_level_anchors_inside(num_level_anchors,
                                                                     inside_flags)
        pred_instances = InstanceData(priors=anchors)
        assign_result = self.assigner.assign(pred_instances, num_level_anchors_inside,
                                             gt_instances, gt_instances_ignore)
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        num_valid = anchors.size(0)
        labels = anchors.new_full((num_valid, ), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros(num_valid)
        bbox_targets = torch.zeros_like(anchors)
        bbox_weights = torch.zeros_like(anchors)
        pos_inds = sampling_result.pos_inds
        neg_inds = sampling_result.neg_inds
        if len(pos_inds) > 0:
            bbox_targets[pos_inds] = self._pos_bbox_targets(sampling_result).to(
                bbox_targets.dtype)
            bbox_weights[pos_inds] = 1.0
            labels[pos_inds] = sampling_result.pos_gt_labels.long()
            pos_weight = self.train_cfg.get('pos_weight', -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0

        if unmap_outputs:
            num_total = flat_anchors.size(0)
            anchors = unmap(anchors, num_total, inside_flags)
            labels = unmap(labels, num_total, inside_flags, fill=self.num_classes)
            label_weights = unmap(label_weights, num_total, inside_flags)
            bbox_targets = unmap(bbox_targets, num_total, inside_flags)
            bbox_weights = unmap(bbox_weights, num_total, inside_flags)
        return (anchors, labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds,
                sampling_result)

    def _pos_bbox_targets(self, sampling_result: SamplingResult) -> Tensor:
        """Regression targets [P, 4] of the positives: the gt boxes themselves with
        ``reg_decoded_bbox``, else their deltas from the anchors (GFLHead: always the boxes)."""
        if self.reg_decoded_bbox:
            return get_box_tensor(sampling_result.pos_gt_bboxes)
        return self.bbox_coder.encode(sampling_result.pos_priors, sampling_result.pos_gt_bboxes)

    def get_num_level_anchors_inside(self, num_level_anchors: List[int],
                                     inside_flags: Tensor) -> List[int]:
        """Number of anchors of each level that lie inside the image."""
        return [int(flags.sum()) for flags in torch.split(inside_flags, num_level_anchors)]

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
