"""YOLOFHead: the single-level head of YOLOF (Chen et al., 2021: "You Only Look One-level
Feature").

On the one C5-level map from the DilatedEncoder, a classification tower (``cls_subnet``,
2 convs) ends in ``cls_score`` (A * num_classes logits) and a regression tower
(``bbox_subnet``, 4 convs) in ``bbox_pred`` (A * 4 deltas) and ``object_pred`` (A logits).

Implicit objectness: there is no separate objectness loss. The class logit ``c`` and the
objectness logit ``o`` are merged into one logit whose sigmoid is the product of theirs::

    logit = c + o - log(1 + exp(c) + exp(o)),   sigmoid(logit) = sigmoid(c) * sigmoid(o)

(exp clamped at 1e8 as mmdetection does), and the focal loss trains that merged logit.

Training: ``UniformAssigner`` gives every gt its k nearest anchors and k nearest predicted
boxes as positives (ignoring pairs of low anchor IoU, and unmatched predictions that already
overlap a gt well); the GIoU loss compares the matched predicted boxes with their gts, each
pair weighted 1 (or 0 when ignored); both losses are divided by the number of positives.
"""
from typing import List, Optional, Tuple

import torch
from mmcv.cnn import ConvModule, is_norm
from mmengine.model import bias_init_with_prob, constant_init, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, OptInstanceList, reduce_mean
from ..task_modules.prior_generators import anchor_inside_flags
from ..utils import unmap
from .anchor_head import AnchorHead

INF = 1e8  # clamp of exp() in the implicit objectness, as mmdetection


class YOLOFHeadArgumentError(ValueError, AssertionError):
    """A YOLOFHead input is invalid (an AssertionError in mmdetection)."""


def implicit_objectness(cls_score: Tensor, objectness: Tensor) -> Tensor:
    """Merge class and objectness logits into logits of their product's probability.

    Args:
        cls_score (Tensor): Class logits [B, A, C, H, W].
        objectness (Tensor): Objectness logits [B, A, 1, H, W] (broadcast over classes).

    Returns:
        Tensor: [B, A, C, H, W] logits ``c + o - log(1 + exp(c) + exp(o))``.
    """
    return cls_score + objectness - torch.log(
        1. + torch.clamp(cls_score.exp(), max=INF) + torch.clamp(objectness.exp(), max=INF))


@MODELS.register_module()
class YOLOFHead(AnchorHead):
    """Detection head of `YOLOF <https://arxiv.org/abs/2103.09460>`_; see the module docstring.

    The state_dict holds ``cls_subnet.i`` / ``bbox_subnet.i`` (ConvModules 3x3,
    in_channels -> in_channels, ``conv`` + ``bn``) and the 3x3 Conv2d predictors
    ``cls_score`` (A * num_classes), ``bbox_pred`` (A * 4) and ``object_pred`` (A).

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of the input map (and of the towers).
        num_cls_convs (int): Convs of the classification tower. Defaults to 2.
        num_reg_convs (int): Convs of the regression tower. Defaults to 4.
        norm_cfg (dict): Norm layer config of the towers. Defaults to BN.
        **kwargs: AnchorHead arguments (``anchor_generator``, ``bbox_coder``,
            ``reg_decoded_bbox``, ``loss_cls``, ``loss_bbox``, ``train_cfg``, ``test_cfg``).
            ``init_cfg`` is accepted but has no effect: :meth:`init_weights` does the whole
            initialization (as in mmdetection).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: List[int],
                 num_cls_convs: int = 2,
                 num_reg_convs: int = 4,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 **kwargs) -> None:
        # Set before super().__init__, which calls _init_layers.
        self.num_cls_convs = num_cls_convs
        self.num_reg_convs = num_reg_convs
        self.norm_cfg = norm_cfg
        super().__init__(num_classes=num_classes, in_channels=in_channels, **kwargs)

    def _init_layers(self) -> None:
        """Create the two towers and the three 3x3 predictors."""
        def tower(num_convs: int) -> nn.Sequential:
            return nn.Sequential(*[
                ConvModule(self.in_channels, self.in_channels, kernel_size=3, padding=1,
                           norm_cfg=self.norm_cfg) for _ in range(num_convs)
            ])

        self.cls_subnet = tower(self.num_cls_convs)
        self.bbox_subnet = tower(self.num_reg_convs)
        # num_classes (not cls_out_channels) channels per anchor, as mmdetection.
        self.cls_score = nn.Conv2d(self.in_channels, self.num_base_priors * self.num_classes,
                                   kernel_size=3, stride=1, padding=1)
        self.bbox_pred = nn.Conv2d(self.in_channels, self.num_base_priors * 4, kernel_size=3,
                                   stride=1, padding=1)
        self.object_pred = nn.Conv2d(self.in_channels, self.num_base_priors, kernel_size=3,
                                     stride=1, padding=1)

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs, norms at 1, class bias for a prior probability of 0.01
        (AnchorHead's init_cfg is not applied: this replaces it, as in mmdetection)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, mean=0, std=0.01)
            if is_norm(m):
                constant_init(m, 1)
        nn.init.constant_(self.cls_score.bias, bias_init_with_prob(0.01))

    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Predict the single level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].

        Returns:
            tuple: Class logits with the implicit objectness merged in,
            [B, A * num_classes, H, W], and box deltas [B, A * 4, H, W].
        """
        cls_score = self.cls_score(self.cls_subnet(x))  # [B, A * C, H, W]
        num_imgs, _, height, width = cls_score.shape
        cls_score = cls_score.view(num_imgs, -1, self.num_classes, height, width)

        reg_feat = self.bbox_subnet(x)  # [B, in_channels, H, W]
        bbox_reg = self.bbox_pred(reg_feat)  # [B, A * 4, H, W]
        objectness = self.object_pred(reg_feat).view(num_imgs, -1, 1, height, width)

        normalized_cls_score = implicit_objectness(cls_score, objectness)  # [B, A, C, H, W]
        return normalized_cls_score.view(num_imgs, -1, height, width), bbox_reg

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Focal loss on every anchor, GIoU loss on the uniformly matched pairs.

        Args:
            cls_scores (list[Tensor]): One level [B, A * num_classes, H, W].
            bbox_preds (list[Tensor]): One level [B, A * 4, H, W].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData], optional): Passed to the assigner
                (which does not use it).

        Returns:
            dict: ``loss_cls`` and ``loss_bbox`` (scalars).
        """
        if len(cls_scores) != 1:
            raise YOLOFHeadArgumentError(f'YOLOFHead predicts one level, got {len(cls_scores)}')
        if self.prior_generator.num_levels != 1:
            raise YOLOFHeadArgumentError('YOLOFHead needs an anchor generator with one level '
                                         f'(one stride), got {self.prior_generator.num_levels}')
        if self.train_cfg is None:
            raise ValueError('YOLOFHead was built without train_cfg; the loss needs train_cfg '
                             "with an assigner, e.g. dict(type='UniformAssigner', ...)")
        device = cls_scores[0].device
        featmap_sizes = [featmap.size()[-2:] for featmap in cls_scores]
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=device)
        anchor_list = [anchors[0] for anchors in anchor_list]  # the one level: [H * W * A, 4]
        valid_flag_list = [valid_flags[0] for valid_flags in valid_flag_list]
        num_imgs = len(batch_img_metas)
        # Per image, one row per position: [H * W, A * C] and [H * W, A * 4].
        cls_scores_list = list(cls_scores[0].permute(0, 2, 3, 1).reshape(
            num_imgs, -1, cls_scores[0].size(1)))
        bbox_preds_list = list(bbox_preds[0].permute(0, 2, 3, 1).reshape(
            num_imgs, -1, bbox_preds[0].size(1)))

        (batch_labels, batch_label_weights, avg_factor, batch_bbox_weights,
         batch_pos_predicted_boxes, batch_target_boxes) = self.get_targets(
             cls_scores_list, bbox_preds_list, anchor_list, valid_flag_list, batch_gt_instances,
             batch_img_metas, batch_gt_instances_ignore=batch_gt_instances_ignore)

        cls_score = cls_scores[0].permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels)
        # The same normaliser on every rank.
        avg_factor = reduce_mean(torch.tensor(avg_factor, dtype=torch.float,
                                              device=device)).item()
        loss_cls = self.loss_cls(cls_score, batch_labels.reshape(-1),
                                 batch_label_weights.reshape(-1), avg_factor=avg_factor)
        if batch_pos_predicted_boxes.shape[0] == 0:
            loss_bbox = batch_pos_predicted_boxes.sum() * 0  # no gt: a zero with a graph
        else:
            loss_bbox = self.loss_bbox(batch_pos_predicted_boxes, batch_target_boxes,
                                       batch_bbox_weights.float(), avg_factor=avg_factor)
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox)

    def get_targets(self,
                    cls_scores_list: List[Tensor],
                    bbox_preds_list: List[Tensor],
                    anchor_list: List[Tensor],
                    valid_flag_list: List[Tensor],
                    batch_gt_instances: InstanceList,
                    batch_img_metas: List[dict],
                    batch_gt_instances_ignore: OptInstanceList = None,
                    unmap_outputs: bool = True) -> tuple:
        """Targets of every image.

        Args:
            cls_scores_list (list[Tensor]): Per image class logits [H * W, A * C] (not used;
                kept for mmdetection's signature).
            bbox_preds_list (list[Tensor]): Per image box deltas [H * W, A * 4].
            anchor_list (list[Tensor]): Per image anchors [H * W * A, 4].
            valid_flag_list (list[Tensor]): Per image bool [H * W * A].
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData], optional): Boxes to ignore.
            unmap_outputs (bool): Map labels back to all anchors. Defaults to True.

        Returns:
            tuple:

            - batch_labels (Tensor): [B, H * W * A], ``num_classes`` for background.
            - batch_label_weights (Tensor): [B, H * W * A].
            - avg_factor (int): Positives summed over images (each at least 1).
            - batch_bbox_weights (Tensor): bool [P], the matched pairs not ignored.
            - batch_pos_predicted_boxes (Tensor): [P, 4] decoded predictions of the pairs.
            - batch_target_boxes (Tensor): [P, 4] their gt boxes.
        """
        num_imgs = len(batch_img_metas)
        if not len(anchor_list) == len(valid_flag_list) == num_imgs:
            raise YOLOFHeadArgumentError(
                f'expected one entry per image ({num_imgs}) in anchor_list '
                f'({len(anchor_list)}) and valid_flag_list ({len(valid_flag_list)})')
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs
        per_image = [
            self._get_targets_single(bbox_preds_list[i], anchor_list[i], valid_flag_list[i],
                                     batch_gt_instances[i], batch_img_metas[i],
                                     batch_gt_instances_ignore[i], unmap_outputs=unmap_outputs)
            for i in range(num_imgs)
        ]
        (all_labels, all_label_weights, _, _, sampling_results, pos_bbox_weights,
         pos_predicted_boxes, pos_target_boxes) = zip(*per_image)
        avg_factor = sum(result.avg_factor for result in sampling_results)
        return (torch.stack(all_labels, 0), torch.stack(all_label_weights, 0), avg_factor,
                torch.cat(pos_bbox_weights, 0), torch.cat(pos_predicted_boxes, 0),
                torch.cat(pos_target_boxes, 0))

    def _get_targets_single(self,
                            bbox_preds: Tensor,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None,
                            unmap_outputs: bool = True) -> tuple:
        """Targets of one image.

        Args:
            bbox_preds (Tensor): Box deltas of the image, reshaped to [H * W * A, 4].
            flat_anchors (Tensor): Anchors [H * W * A, 4].
            valid_flags (Tensor): Bool [H * W * A].
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            img_meta (dict): Meta of the image (``img_shape``).
            gt_instances_ignore (InstanceData, optional): Passed to the assigner.
            unmap_outputs (bool): Map labels back to all anchors. Defaults to True.

        Returns:
            tuple: labels and label_weights ([H * W * A], or over the inside anchors only),
            pos_inds and neg_inds (into the inside anchors), the SamplingResult, then the
            assigner's ``pos_idx`` [P], ``pos_predicted_boxes`` [P, 4] and
            ``target_boxes`` [P, 4] (P = 2 * match_times * G).
        """
        inside_flags = anchor_inside_flags(flat_anchors, valid_flags, img_meta['img_shape'][:2],
                                           self.train_cfg.get('allowed_border', -1))
        if not inside_flags.any():
            raise ValueError('There is no valid anchor inside the image boundary; check the '
                             'image size and anchor sizes, or set train_cfg.allowed_border=-1')
        anchors = flat_anchors[inside_flags, :]
        bbox_preds = bbox_preds.reshape(-1, 4)[inside_flags, :]
        # The assigner matches on the decoded predictions too; they keep their gradient, the
        # GIoU loss flows through the matched ones.
        decoded_bbox_preds = get_box_tensor(self.bbox_coder.decode(anchors, bbox_preds))
        pred_instances = InstanceData(priors=anchors, decoder_priors=decoded_bbox_preds)
        assign_result = self.assigner.assign(pred_instances, gt_instances, gt_instances_ignore)
        pos_bbox_weights = assign_result.get_extra_property('pos_idx')
        pos_predicted_boxes = assign_result.get_extra_property('pos_predicted_boxes')
        pos_target_boxes = assign_result.get_extra_property('target_boxes')
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)

        num_valid_anchors = anchors.shape[0]
        labels = anchors.new_full((num_valid_anchors, ), self.num_classes, dtype=torch.long)
        label_weights = anchors.new_zeros(num_valid_anchors, dtype=torch.float)
        pos_inds = sampling_result.pos_inds
        neg_inds = sampling_result.neg_inds
        if len(pos_inds) > 0:
            labels[pos_inds] = sampling_result.pos_gt_labels
            pos_weight = self.train_cfg.get('pos_weight', -1)
            label_weights[pos_inds] = 1.0 if pos_weight <= 0 else pos_weight
        if len(neg_inds) > 0:
            label_weights[neg_inds] = 1.0
        if unmap_outputs:
            num_total_anchors = flat_anchors.size(0)
            labels = unmap(labels, num_total_anchors, inside_flags, fill=self.num_classes)
            label_weights = unmap(label_weights, num_total_anchors, inside_flags)
        return (labels, label_weights, pos_inds, neg_inds, sampling_result, pos_bbox_weights,
                pos_predicted_boxes, pos_target_boxes)
