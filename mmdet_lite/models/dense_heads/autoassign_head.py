"""AutoAssignHead: the head of AutoAssign (Zhu et al., 2020, "AutoAssign: Differentiable Label
Assignment for Dense Object Detection").

The layers are :class:`FCOSHead`'s (GN towers with conv biases, ``conv_cls``, ``conv_reg``, a
``Scale`` per level); its ``conv_centerness`` predicts an *objectness* logit from the
regression tower, and the distances are ``clamp(scale_l * conv_reg, 0) * stride_l`` (pixels)
in training too. Points are the cell corners ``(x * stride, y * stride)`` (offset 0).

There is no hard assignment: every point inside a gt box is a soft positive of it. With
``P = sigmoid(cls) * sigmoid(objectness)`` and, for point i and box j, the box loss
``L_ij`` (GIoU, times its loss_weight):

- :class:`CenterPrior` gives each point a Gaussian weight ``G_ij`` around the box centre whose
  offset ``mean`` and spread ``sigma`` (in strides) are learnt per class; 0 outside the box.
- positive loss, per box: ``p_ij = P_i[label_j] * exp(-L_ij)``, ``w_ij`` proportional to
  ``exp(3 p_ij) * G_ij`` (normalised over the points), ``-log(sum_i w_ij p_ij)``; summed,
  times ``pos_loss_weight``, over the number of gt boxes.
- negative loss, per point and class: ``(P f)**2 * BCE(P f, 0)``, where ``f = 1`` except for a
  box's class at the points inside it, where ``f = 1 - normalised(1 / (1 - IoU))`` (a point
  whose predicted box already fits some gt well is barely pushed down); summed, times
  ``neg_loss_weight``, over the sum of the center prior weights.
- center loss, per image: ``num_gts / sum(G)``, averaged, times ``center_loss_weight``.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import Scale
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import bbox_overlaps
from mmdet_lite.utils import InstanceList, OptInstanceList, reduce_mean
from ..task_modules.prior_generators import MlvlPointGenerator
from ..utils import levels_to_images
from .anchor_free_head import AnchorFreeHead, AnchorFreeHeadArgumentError
from .fcos_head import FCOSHead

EPS = 1e-12


class CenterPrior(nn.Module):
    """Per-class Gaussian weights of the points around each gt box's centre.

    For a point p on a level of stride s and a box of class c with centre m::

        weight = prod_{x, y} exp(-((p - m) / s - mean[c])**2 / (2 * sigma[c]**2))

    and 0 for points outside the box.

    State dict: ``mean`` [num_classes, 2] (initialised to 0) and ``sigma``
    [num_classes, 2] (initialised to 1).

    Args:
        force_topk (bool): For a box that contains no point, count its ``topk`` points of
            largest weight as inside. Defaults to False.
        topk (int): Points forced inside such a box. Defaults to 9.
        num_classes (int): Number of object classes. Defaults to 80.
        strides (Sequence[int]): Stride of each level. Defaults to (8, 16, 32, 64, 128).
    """

    def __init__(self,
                 force_topk: bool = False,
                 topk: int = 9,
                 num_classes: int = 80,
                 strides: Sequence[int] = (8, 16, 32, 64, 128)) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(num_classes, 2))
        self.sigma = nn.Parameter(torch.ones(num_classes, 2))
        self.strides = strides
        self.force_topk = force_topk
        self.topk = topk

    def forward(self, anchor_points_list: List[Tensor], gt_instances: InstanceData,
                inside_gt_bbox_mask: Tensor) -> Tuple[Tensor, Tensor]:
        """Weights of every point for every gt box of one image.

        Args:
            anchor_points_list (list[Tensor]): Points of each level, [N_l, 2] as (x, y).
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            inside_gt_bbox_mask (Tensor): Whether each point lies inside each box [N, G].

        Returns:
            tuple: ``center_prior_weights`` [N, G] (0 outside the boxes) and the inside mask
            [N, G] (a copy, with the forced points of ``force_topk`` added).
        """
        gt_bboxes, labels = gt_instances.bboxes, gt_instances.labels
        inside_gt_bbox_mask = inside_gt_bbox_mask.clone()
        num_gts = len(labels)
        num_points = sum(len(points) for points in anchor_points_list)
        if num_gts == 0:
            return gt_bboxes.new_zeros(num_points, num_gts), inside_gt_bbox_mask

        gt_centers = torch.stack(((gt_bboxes[:, 0] + gt_bboxes[:, 2]) / 2,
                                  (gt_bboxes[:, 1] + gt_bboxes[:, 3]) / 2), dim=1)[None]
        mean = self.mean[labels][None]  # [1, G, 2], in strides
        sigma = self.sigma[labels][None]
        weights = []
        for points, stride in zip(anchor_points_list, self.strides):
            # [N_l, G, 2]: offset of each point from each centre, in strides, minus the mean
            sq_dist = ((points[:, None, :] - gt_centers) / float(stride) - mean)**2
            weights.append(torch.exp(-sq_dist / (2 * sigma**2)).prod(dim=-1))
        center_prior_weights = torch.cat(weights, dim=0)  # [N, G]

        if self.force_topk:
            # A box smaller than a stride may contain no point: give it its topk nearest.
            empty_gts = (inside_gt_bbox_mask.sum(0) == 0).nonzero().reshape(-1)
            if empty_gts.numel():
                topk_inds = center_prior_weights[:, empty_gts].topk(self.topk, dim=0)[1]
                inside_gt_bbox_mask[:, empty_gts] = inside_gt_bbox_mask[:, empty_gts].scatter(
                    0, topk_inds, True)

        center_prior_weights[~inside_gt_bbox_mask] = 0
        return center_prior_weights, inside_gt_bbox_mask


@MODELS.register_module()
class AutoAssignHead(FCOSHead):
    """AutoAssign head: FCOSHead's layers (with conv biases) and a :class:`CenterPrior`.

    State dict: FCOSHead's (the tower convs with a bias) plus ``center_prior.mean`` and
    ``center_prior.sigma`` [num_classes, 2].

    Args:
        *args: FCOSHead's positional arguments (``num_classes``, ``in_channels``...).
        force_topk (bool): See :class:`CenterPrior`. Defaults to False.
        topk (int): See :class:`CenterPrior`. Defaults to 9.
        pos_loss_weight (float): Weight of the positive loss. Defaults to 0.25.
        neg_loss_weight (float): Weight of the negative loss. Defaults to 0.75.
        center_loss_weight (float): Weight of the center prior loss. Defaults to 0.75.
        **kwargs: FCOSHead's keyword arguments except ``conv_bias``, which is always True
            (passing it is a TypeError, as in mmdetection). ``loss_cls``,
            ``loss_centerness``, ``regress_ranges``, ``center_sampling``, ``norm_on_bbox``
            and ``centerness_on_reg`` are accepted but not used.
    """

    def __init__(self,
                 *args,
                 force_topk: bool = False,
                 topk: int = 9,
                 pos_loss_weight: float = 0.25,
                 neg_loss_weight: float = 0.75,
                 center_loss_weight: float = 0.75,
                 **kwargs) -> None:
        super().__init__(*args, conv_bias=True, **kwargs)
        self.center_prior = CenterPrior(force_topk=force_topk, topk=topk,
                                        num_classes=self.num_classes, strides=self.strides)
        self.pos_loss_weight = pos_loss_weight
        self.neg_loss_weight = neg_loss_weight
        self.center_loss_weight = center_loss_weight
        # Points at the cell corners, not centres.
        self.prior_generator = MlvlPointGenerator(self.strides, offset=0)

    def init_weights(self) -> None:
        """FCOSHead's init, then ``conv_cls``'s bias for a prior probability of 0.02 and
        ``conv_reg``'s bias 4.0 (both with Normal(std=0.01) weights)."""
        super().init_weights()
        normal_init(self.conv_cls, std=0.01, bias=bias_init_with_prob(0.02))
        normal_init(self.conv_reg, std=0.01, bias=4.0)

    def forward_single(self, x: Tensor, scale: Scale,
                       stride: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Predict one level.

        Returns:
            tuple: cls_score [B, num_classes, H, W], bbox_pred [B, 4, H, W] (pixels) and
            objectness [B, 1, H, W] (logits; called centerness in FCOSHead).
        """
        cls_score, bbox_pred, _, reg_feat = AnchorFreeHead.forward_single(self, x)
        # As mmdetection: objectness always from the reg tower (centerness_on_reg ignored)
        # and the distances always in pixels (norm_on_bbox ignored).
        objectness = self.conv_centerness(reg_feat)
        bbox_pred = scale(bbox_pred).float().clamp(min=0) * stride
        return cls_score, bbox_pred, objectness

    # ------------------------------------------------------------------ losses

    def get_pos_loss_single(self, cls_score: Tensor, objectness: Tensor, reg_loss: Tensor,
                            gt_instances: InstanceData,
                            center_prior_weights: Tensor) -> Tuple[Tensor]:
        """Positive loss of one image.

        Args:
            cls_score (Tensor): Class probabilities [N, num_classes].
            objectness (Tensor): Objectness probabilities [N, 1].
            reg_loss (Tensor): Box loss of every point for every gt box [N, G].
            gt_instances (InstanceData): ``labels`` [G].
            center_prior_weights (Tensor): [N, G], 0 outside the boxes.

        Returns:
            tuple[Tensor]: The summed, weighted loss (a 1-tuple, as in mmdetection).
        """
        p_loc = torch.exp(-reg_loss)
        p_cls = (cls_score * objectness)[:, gt_instances.labels]  # [N, G]
        p_pos = p_cls * p_loc
        # exp(3 p) favours points that are already confident (3 from the paper).
        prior_conf = torch.exp(p_pos * 3) * center_prior_weights
        p_pos_weight = prior_conf / prior_conf.sum(0, keepdim=True).clamp(min=EPS)
        reweighted_p_pos = (p_pos * p_pos_weight).sum(0)  # [G]
        pos_loss = F.binary_cross_entropy(reweighted_p_pos, torch.ones_like(reweighted_p_pos),
                                          reduction='none')
        return pos_loss.sum() * self.pos_loss_weight,

    def get_neg_loss_single(self, cls_score: Tensor, objectness: Tensor,
                            gt_instances: InstanceData, ious: Tensor,
                            inside_gt_bbox_mask: Tensor) -> Tuple[Tensor]:
        """Negative loss of one image.

        Args:
            cls_score (Tensor): Class probabilities [N, num_classes].
            objectness (Tensor): Objectness probabilities [N, 1].
            gt_instances (InstanceData): ``labels`` [G].
            ious (Tensor): Per point, the best IoU of its predicted box with the gts,
                repeated over the G columns; 0 outside the boxes [N, G].
            inside_gt_bbox_mask (Tensor): [N, G].

        Returns:
            tuple[Tensor]: The summed, weighted loss (a 1-tuple, as in mmdetection).
        """
        gt_labels = gt_instances.labels
        joint_conf = cls_score * objectness  # [N, num_classes]
        p_neg_weight = torch.ones_like(joint_conf)
        if len(gt_labels) > 0:
            # Pairs ordered box-major (gt, point), as mmdetection: where a point lies in two
            # boxes of the same class, the later box's weight is the one written.
            gt_inds, point_inds = inside_gt_bbox_mask.permute(1, 0).nonzero(as_tuple=True)
            temp_weight = 1 / (1 - ious.permute(1, 0)[gt_inds, point_inds]).clamp_(EPS)
            for gt_id in range(len(gt_labels)):
                of_gt = gt_inds == gt_id
                if of_gt.any():
                    weight = temp_weight[of_gt]
                    temp_weight[of_gt] = (weight - weight.min() + EPS) / (
                        weight.max() - weight.min() + EPS)
            p_neg_weight[point_inds, gt_labels[gt_inds]] = 1 - temp_weight
        logits = joint_conf * p_neg_weight
        neg_loss = logits**2 * F.binary_cross_entropy(logits, torch.zeros_like(logits),
                                                      reduction='none')
        return neg_loss.sum() * self.neg_loss_weight,

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     objectnesses: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> Dict[str, Tensor]:
        """Positive, negative and center prior losses (see the module docstring).

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l] (pixels).
            objectnesses (list[Tensor]): Per level [B, 1, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list, optional): Not used (as in mmdetection).

        Returns:
            dict[str, Tensor]: ``loss_pos``, ``loss_neg`` and ``loss_center`` scalars.
        """
        if not len(cls_scores) == len(bbox_preds) == len(objectnesses):
            raise AnchorFreeHeadArgumentError(
                f'cls_scores, bbox_preds and objectnesses must have one tensor per level, '
                f'got {len(cls_scores)}, {len(bbox_preds)} and {len(objectnesses)}')
        all_num_gt = sum(len(gt_instances) for gt_instances in batch_gt_instances)
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        level_points = self.prior_generator.grid_priors(
            featmap_sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device)
        inside_masks, bbox_targets = self.get_targets(level_points, batch_gt_instances)

        prior_weights = []
        for i, gt_instances in enumerate(batch_gt_instances):
            weights, inside_masks[i] = self.center_prior(level_points, gt_instances,
                                                         inside_masks[i])
            prior_weights.append(weights)  # [N, G_i]

        points = torch.cat(level_points)  # [N, 2]
        num_points = len(points)
        # Per image, all levels: [N, C].
        bbox_preds = levels_to_images(bbox_preds)
        cls_scores = levels_to_images(cls_scores)
        objectnesses = levels_to_images(objectnesses)

        reg_losses, ious_list = [], []
        for bbox_pred, targets, inside_mask in zip(bbox_preds, bbox_targets, inside_masks):
            num_gts = targets.size(1)
            # Every point's prediction against every box: [N * G, ...].
            pair_points = points[:, None, :].expand(num_points, num_gts, 2).reshape(-1, 2)
            pair_preds = bbox_pred[:, None, :].expand(num_points, num_gts, 4).reshape(-1, 4)
            decoded_preds = self.bbox_coder.decode(pair_points, pair_preds)
            decoded_targets = self.bbox_coder.decode(pair_points, targets.reshape(-1, 4))
            with torch.no_grad():
                ious = bbox_overlaps(decoded_preds, decoded_targets, is_aligned=True)
                ious = ious.reshape(num_points, num_gts)
                if num_gts:
                    # each point's best IoU with any box, for every box
                    ious = ious.max(dim=-1, keepdim=True).values.repeat(1, num_gts)
                else:
                    ious = ious.new_zeros(num_points, num_gts)
                ious[~inside_mask] = 0
                ious_list.append(ious)
            reg_loss = self.loss_bbox(decoded_preds, decoded_targets, weight=None,
                                      reduction_override='none')
            reg_losses.append(reg_loss.reshape(num_points, num_gts))

        cls_scores = [score.sigmoid() for score in cls_scores]
        objectnesses = [objectness.sigmoid() for objectness in objectnesses]

        pos_losses = [self.get_pos_loss_single(*args)[0] for args in zip(
            cls_scores, objectnesses, reg_losses, batch_gt_instances, prior_weights)]
        pos_avg_factor = reduce_mean(bbox_preds[-1].new_tensor(all_num_gt)).clamp_(min=1)
        pos_loss = sum(pos_losses) / pos_avg_factor

        neg_losses = [self.get_neg_loss_single(*args)[0] for args in zip(
            cls_scores, objectnesses, batch_gt_instances, ious_list, inside_masks)]
        neg_avg_factor = sum(weights.data.sum() for weights in prior_weights)
        neg_avg_factor = reduce_mean(neg_avg_factor).clamp_(min=1)
        neg_loss = sum(neg_losses) / neg_avg_factor

        center_losses = []
        for i in range(len(batch_img_metas)):
            if inside_masks[i].any():
                center_losses.append(
                    len(batch_gt_instances[i]) / prior_weights[i].sum().clamp_(min=EPS))
            else:
                # no point inside any box (e.g. boxes smaller than the P3 stride)
                center_losses.append(prior_weights[i].sum() * 0)
        center_loss = torch.stack(center_losses).mean() * self.center_loss_weight

        if all_num_gt == 0:
            # Zero losses that still reach every parameter (no unused ones under DDP).
            pos_loss = bbox_preds[0].sum() * 0
            center_loss = objectnesses[0].sum() * 0 + self.center_prior.mean.sum() * 0 + \
                self.center_prior.sigma.sum() * 0
        return dict(loss_pos=pos_loss, loss_neg=neg_loss, loss_center=center_loss)

    def get_targets(self, points: List[Tensor], batch_gt_instances: InstanceList
                    ) -> Tuple[List[Tensor], List[Tensor]]:
        """Inside-box masks and box targets of every point for every gt box, per image.

        Args:
            points (list[Tensor]): Points of each level, [N_l, 2] as (x, y).
            batch_gt_instances (list[InstanceData]): ``bboxes`` per image.

        Returns:
            tuple: per image, ``inside_gt_bbox_mask`` [N, G] (bool) and ``bbox_targets``
            [N, G, 4] ((left, top, right, bottom) distances in pixels).
        """
        concat_points = torch.cat(points, dim=0)
        masks, targets = [], []
        for gt_instances in batch_gt_instances:
            mask, target = self._get_targets_single(gt_instances, concat_points)
            masks.append(mask)
            targets.append(target)
        return masks, targets

    def _get_targets_single(self, gt_instances: InstanceData,
                            points: Tensor) -> Tuple[Tensor, Tensor]:
        """Inside-box mask [N, G] and distances [N, G, 4] of one image's points."""
        gt_bboxes = gt_instances.bboxes
        num_points, num_gts = points.size(0), gt_bboxes.size(0)
        gt_bboxes = gt_bboxes[None].expand(num_points, num_gts, 4)
        xs, ys = points[:, 0, None], points[:, 1, None]
        bbox_targets = torch.stack((xs - gt_bboxes[..., 0], ys - gt_bboxes[..., 1],
                                    gt_bboxes[..., 2] - xs, gt_bboxes[..., 3] - ys), -1)
        if num_gts:
            inside_gt_bbox_mask = bbox_targets.min(-1)[0] > 0
        else:
            inside_gt_bbox_mask = bbox_targets.new_zeros((num_points, num_gts),
                                                         dtype=torch.bool)
        return inside_gt_bbox_mask, bbox_targets
