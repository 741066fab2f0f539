"""SSDHead: per-level anchor classifiers and box regressors of SSD and SSDLite.

SSD (Liu et al., https://arxiv.org/abs/1512.02325) predicts, on each of its feature levels,
softmax scores over classes + background and box deltas for a different number of anchors
per position, each level with its own convs (nothing is shared across levels). Training
uses hard negative mining: every positive anchor enters the classification loss, but only
the ``neg_pos_ratio`` x (number of positives) negatives with the highest loss.

Targets (MaxIoUAssigner + PseudoSampler) come from :class:`AnchorHead`; post-processing from
:class:`BaseDenseHead`.
"""
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                              OptInstanceList)
from ..losses import smooth_l1_loss
from ..task_modules.samplers import PseudoSampler
from .anchor_head import AnchorHead


class SSDHeadArgumentError(ValueError, AssertionError):
    """An SSDHead input that mmdetection rejects with an assert."""


@MODELS.register_module()
class SSDHead(AnchorHead):
    """SSD head: per level, an optional conv tower and a conv each for scores and deltas.

    Level ``i`` has ``cls_convs[i]`` and ``reg_convs[i]`` (``nn.Sequential``): ``stacked_convs``
    3x3 convs (depthwise separable with ``use_depthwise``), then for SSDLite
    (``use_depthwise``) a 3x3 depthwise ConvModule, then the predictor: a 3x3 conv (1x1 for
    SSDLite) to ``A_i * (num_classes + 1)`` scores or ``A_i * 4`` deltas, where ``A_i`` is the
    level's number of anchors per position (4 or 6 in SSD300).

    Args:
        num_classes (int): Number of object classes (background excluded). Defaults to 80.
        in_channels (Sequence[int]): Channels of each input level. Defaults to SSD300's
            (512, 1024, 512, 256, 256, 256).
        stacked_convs (int): Convs in each tower before the predictors. Defaults to 0.
        feat_channels (int): Channels of the tower convs. Defaults to 256.
        use_depthwise (bool): SSDLite layers (depthwise 3x3 + 1x1 predictors). Defaults to
            False.
        conv_cfg (dict, optional): Conv layer config of the tower / depthwise convs.
        norm_cfg (dict, optional): Norm layer config of the tower / depthwise convs.
        act_cfg (dict, optional): Activation config of the tower / depthwise convs.
        anchor_generator (dict): Anchor generator config. The default (input 300 with
            ``basesize_ratio_range=(0.1, 0.9)``) is mmdetection's, which its
            SSDAnchorGenerator rejects (300 needs a range starting at 0.15 or 0.2), so
            ``SSDHead()`` without an anchor_generator raises ValueError there and here;
            the configs always give one.
        bbox_coder (dict): Box coder config. Defaults to DeltaXYWHBBoxCoder with unit stds.
        reg_decoded_bbox (bool): Regress decoded boxes instead of deltas. Defaults to False.
        train_cfg (dict, optional): ``assigner``, optional ``sampler`` (PseudoSampler when
            absent), ``neg_pos_ratio``, ``smoothl1_beta``, ``allowed_border``, ``pos_weight``.
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``min_bbox_size``, ``nms``,
            ``max_per_img``.
        init_cfg (dict or list[dict]): Initialization config. Defaults to Xavier uniform on
            every Conv2d, zero bias.
    """

    def __init__(self,
                 num_classes: int = 80,
                 in_channels: Sequence[int] = (512, 1024, 512, 256, 256, 256),
                 stacked_convs: int = 0,
                 feat_channels: int = 256,
                 use_depthwise: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 act_cfg: OptConfigType = None,
                 anchor_generator: ConfigType = dict(
                     type='SSDAnchorGenerator',
                     scale_major=False,
                     input_size=300,
                     strides=[8, 16, 32, 64, 100, 300],
                     ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2]),
                     basesize_ratio_range=(0.1, 0.9)),
                 bbox_coder: ConfigType = dict(
                     type='DeltaXYWHBBoxCoder',
                     clip_border=True,
                     target_means=[.0, .0, .0, .0],
                     target_stds=[1.0, 1.0, 1.0, 1.0]),
                 reg_decoded_bbox: bool = False,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: MultiConfig = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform', bias=0)) -> None:
        # Skips AnchorHead.__init__ (as mmdetection does): SSD has no loss_cls / loss_bbox
        # modules (the losses are written out in loss_by_feat_single) and a list of
        # anchors-per-position, one per level, instead of a single number.
        super(AnchorHead, self).__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.stacked_convs = stacked_convs
        self.feat_channels = feat_channels
        self.use_depthwise = use_depthwise
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg

        self.cls_out_channels = num_classes + 1  # softmax over classes + background (last)
        self.prior_generator = TASK_UTILS.build(anchor_generator)
        self.num_base_priors = self.prior_generator.num_base_priors  # list, one per level
        self._init_layers()

        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.reg_decoded_bbox = reg_decoded_bbox
        self.use_sigmoid_cls = False
        self.cls_focal_loss = False
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if self.train_cfg:
            self.assigner = TASK_UTILS.build(self.train_cfg['assigner'])
            if self.train_cfg.get('sampler', None) is not None:
                self.sampler = TASK_UTILS.build(self.train_cfg['sampler'],
                                                default_args=dict(context=self))
            else:
                self.sampler = PseudoSampler(context=self)

    def _init_layers(self) -> None:
        """Create ``cls_convs`` and ``reg_convs``, one ``nn.Sequential`` per level."""
        tower_conv = DepthwiseSeparableConvModule if self.use_depthwise else ConvModule
        cfgs = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        # SSDLite predicts with 1x1 convs after a depthwise 3x3; SSD with plain 3x3 convs.
        pred_kernel, pred_padding = (1, 0) if self.use_depthwise else (3, 1)
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for channels, num_priors in zip(self.in_channels, self.num_base_priors):
            for convs, out_per_prior in ((self.cls_convs, self.cls_out_channels),
                                         (self.reg_convs, 4)):
                layers = []
                in_c = channels
                for _ in range(self.stacked_convs):  # not used by the COCO configs
                    layers.append(tower_conv(in_c, self.feat_channels, 3, padding=1, **cfgs))
                    in_c = self.feat_channels
                if self.use_depthwise:
                    layers.append(ConvModule(in_c, in_c, 3, padding=1, groups=in_c, **cfgs))
                layers.append(nn.Conv2d(in_c, num_priors * out_per_prior,
                                        kernel_size=pred_kernel, padding=pred_padding))
                convs.append(nn.Sequential(*layers))

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
        """Predict every level with its own layers.

        Args:
            x (tuple[Tensor]): Levels [B, in_channels[i], H_i, W_i]; SSD300: 38, 19, 10, 5,
                3, 1 pixels square.

        Returns:
            tuple: ``cls_scores``, per level [B, A_i * (num_classes + 1), H_i, W_i], and
            ``bbox_preds``, per level [B, A_i * 4, H_i, W_i].
        """
        cls_scores, bbox_preds = [], []
        for feat, cls_conv, reg_conv in zip(x, self.cls_convs, self.reg_convs):
            cls_scores.append(cls_conv(feat))
            bbox_preds.append(reg_conv(feat))
        return cls_scores, bbox_preds

    def loss_by_feat_single(self, cls_score: Tensor, bbox_pred: Tensor, anchor: Tensor,
                            labels: Tensor, label_weights: Tensor, bbox_targets: Tensor,
                            bbox_weights: Tensor, avg_factor: float) -> Tuple[Tensor, Tensor]:
        """Losses of one image (all levels together), with hard negative mining.

        Args:
            cls_score (Tensor): Logits of every anchor [N, num_classes + 1].
            bbox_pred (Tensor): Deltas of every anchor [N, 4].
            anchor (Tensor): Anchors [N, 4].
            labels (Tensor): Target class per anchor [N]; ``num_classes`` is background.
            label_weights (Tensor): [N]; 0 for anchors left out (ignored).
            bbox_targets (Tensor): Encoded targets [N, 4].
            bbox_weights (Tensor): [N, 4]; 1 for positives.
            avg_factor (float): Normaliser of both losses: the positives of the whole batch.

        Returns:
            tuple: ``loss_cls`` of shape [1] and ``loss_bbox`` (scalar).
        """
        loss_cls_all = F.cross_entropy(cls_score, labels, reduction='none') * label_weights
        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().reshape(-1)
        # Every background anchor is a candidate negative (ignored ones have weight 0 and
        # so a zero loss).
        neg_inds = (labels == self.num_classes).nonzero().reshape(-1)

        # Hard negative mining: keep only the neg_pos_ratio * num_pos negatives the model
        # gets most wrong, so the thousands of easy background anchors do not swamp the loss.
        num_neg = min(int(self.train_cfg['neg_pos_ratio'] * pos_inds.numel()), neg_inds.numel())
        hardest_neg_losses, _ = loss_cls_all[neg_inds].topk(num_neg)
        loss_cls = (loss_cls_all[pos_inds].sum() + hardest_neg_losses.sum()) / avg_factor

        if self.reg_decoded_bbox:
            bbox_pred = get_box_tensor(self.bbox_coder.decode(anchor, bbox_pred))
        loss_bbox = smooth_l1_loss(bbox_pred, bbox_targets, bbox_weights,
                                   beta=self.train_cfg['smoothl1_beta'], avg_factor=avg_factor)
        return loss_cls[None], loss_bbox

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None
                     ) -> Dict[str, List[Tensor]]:
        """Losses of the head outputs against the ground truth.

        Args:
            cls_scores (list[Tensor]): Per level [B, A_i * (num_classes + 1), H_i, W_i].
            bbox_preds (list[Tensor]): Per level [B, A_i * 4, H_i, W_i].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            dict[str, list[Tensor]]: ``loss_cls`` (each of shape [1]) and ``loss_bbox``
            (scalars), one entry per *image* (not per level, unlike other anchor heads).
        """
        featmap_sizes = [score.shape[-2:] for score in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise SSDHeadArgumentError(
                f'SSDHead got {len(featmap_sizes)} levels of scores but its anchor generator '
                f'has {self.prior_generator.num_levels} levels.')
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=cls_scores[0].device)
        labels_list, label_weights_list, bbox_targets_list, bbox_weights_list, avg_factor = \
            self.get_targets(anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
                             batch_gt_instances_ignore)

        num_imgs = len(batch_img_metas)
        # All levels of an image in one row, anchors ordered (level, y, x, anchor), as the
        # targets are.
        all_cls_scores = torch.cat([
            s.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels)
            for s in cls_scores], dim=1)  # [B, N, num_classes + 1]
        all_bbox_preds = torch.cat([
            b.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4) for b in bbox_preds], dim=1)  # [B, N, 4]
        all_labels = torch.cat(labels_list, dim=1)  # [B, N]
        all_label_weights = torch.cat(label_weights_list, dim=1)  # [B, N]
        all_bbox_targets = torch.cat(bbox_targets_list, dim=1)  # [B, N, 4]
        all_bbox_weights = torch.cat(bbox_weights_list, dim=1)  # [B, N, 4]

        losses_cls, losses_bbox = [], []
        for i in range(num_imgs):
            loss_cls, loss_bbox = self.loss_by_feat_single(
                all_cls_scores[i], all_bbox_preds[i], torch.cat(anchor_list[i]), all_labels[i],
                all_label_weights[i], all_bbox_targets[i], all_bbox_weights[i],
                avg_factor=avg_factor)
            losses_cls.append(loss_cls)
            losses_bbox.append(loss_bbox)
        return dict(loss_cls=losses_cls, loss_bbox=losses_bbox)
