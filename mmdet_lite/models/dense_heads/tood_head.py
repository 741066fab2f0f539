"""TOODHead: the task-aligned head (T-head) of TOOD (Feng et al., 2021: "TOOD: Task-aligned
One-stage Object Detection").

Per level, one stack of ``stacked_convs`` convs is shared by both tasks; each task builds its
own feature from all of the stack's outputs with layer attention (:class:`TaskDecomposition`),
and both predictions are then *aligned* with maps computed from the whole stack::

    feat = cat(inter_convs outputs)                        [B, N * C, H, W]
    cls_score = sqrt(sigmoid(tood_cls(cls_feat)) * sigmoid(cls_prob_module(feat)))
    reg_bbox  = box from tood_reg(reg_feat)                [B, 4, H, W] (x1, y1, x2, y2)
    bbox_pred = each coordinate resampled at its own offset (reg_offset_module(feat))

Boxes are in units of the level's stride, relative to the feature map (``anchor_free``:
distances from the anchor centre, ``exp`` then ``Scale``; ``anchor_based``: deltas from the
anchor through the box coder). Scores are probabilities, not logits.

Training (Task Alignment Learning): for the first ``initial_epoch`` epochs ATSS assigns the
targets (``initial_assigner``) and the classification loss is focal loss on the labels
(``initial_loss_cls``), the box loss weighted by centerness, as ATSS. Afterwards
``TaskAlignedAssigner`` picks each gt's priors of highest ``score ** alpha * IoU ** beta``,
the classification loss is quality focal loss towards the normalised alignment metric and the
box loss is weighted by that metric. The epoch is read from mmengine's ``MessageHub`` (its
``RuntimeInfoHook`` records it at every training epoch). The targets of both stages are
:class:`~.tood_targets.TOODTargetsMixin`, in tood_targets.py.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, Scale
from mmengine.model import bias_init_with_prob, normal_init
from mmengine.structures import InstanceData
from torchvision.ops import deform_conv2d
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import distance2bbox, get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, OptInstanceList, reduce_mean
from ..layers.task_decomposition import TaskDecomposition
from ..utils import filter_scores_and_topk, sigmoid_geometric_mean
from .atss_head import ATSSHead, ATSSHeadError
from .tood_targets import TOODTargetsMixin

__all__ = ['TOODHead', 'TaskDecomposition']  # TaskDecomposition: mmdetection's import path


@MODELS.register_module()
class TOODHead(TOODTargetsMixin, ATSSHead):
    """TOOD's T-head; trained with Task Alignment Learning (targets from
    :class:`~.tood_targets.TOODTargetsMixin`).

    State dict: ``inter_convs.{i}`` (ConvModules, ``conv`` + ``gn``; the first ``num_dcn``
    are DCNv2 with 4 deform groups), ``cls_decomp`` and ``reg_decomp``
    (:class:`TaskDecomposition`), ``tood_cls`` / ``tood_reg`` (3x3), ``cls_prob_module.{0,2}``
    (1x1 to C / 4, 3x3 to 1), ``reg_offset_module.{0,2}`` (1x1 to C / 4, 3x3 to 8) and
    ``scales.{l}.scale``.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        num_dcn (int): How many of the first ``inter_convs`` are DCNv2. Defaults to 0.
        anchor_type (str): ``'anchor_free'`` (distances from the anchor centre) or
            ``'anchor_based'`` (deltas from the anchor). Defaults to ``'anchor_free'``.
        initial_loss_cls (dict): Classification loss of the first ``initial_epoch`` epochs.
            Defaults to FocalLoss on probabilities (``activated=True``).
        **kwargs: ATSSHead arguments: ``stacked_convs``, ``feat_channels``,
            ``anchor_generator``, ``bbox_coder``, ``loss_cls`` (QualityFocalLoss with
            ``activated=True`` in the configs), ``loss_bbox``, ``conv_cfg``, ``norm_cfg``,
            ``train_cfg`` (``initial_epoch``, ``initial_assigner``, ``assigner``, ``alpha``,
            ``beta``, ``allowed_border``, ``pos_weight``), ``test_cfg``, ``init_cfg`` (unused:
            :meth:`init_weights` initialises every layer itself, as mmdetection's).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_dcn: int = 0,
                 anchor_type: str = 'anchor_free',
                 initial_loss_cls: ConfigType = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     activated=True,
                     gamma=2.0,
                     alpha=0.25,
                     loss_weight=1.0),
                 **kwargs) -> None:
        if anchor_type not in ('anchor_free', 'anchor_based'):
            raise ATSSHeadError(f"anchor_type must be 'anchor_free' or 'anchor_based', got "
                                f'{anchor_type!r}')
        # Read by _init_layers, which ATSSHead.__init__ calls.
        self.num_dcn = num_dcn
        self.anchor_type = anchor_type
        super().__init__(num_classes=num_classes, in_channels=in_channels, **kwargs)
        if self.train_cfg:
            self.initial_epoch = self.train_cfg['initial_epoch']
            self.initial_assigner = TASK_UTILS.build(self.train_cfg['initial_assigner'])
            self.initial_loss_cls = MODELS.build(initial_loss_cls)
            # ATSSHead._get_targets_single (the initial stage) assigns with self.assigner.
            self.assigner = self.initial_assigner
            self.alignment_assigner = TASK_UTILS.build(self.train_cfg['assigner'])
            self.alpha = self.train_cfg['alpha']
            self.beta = self.train_cfg['beta']

    def _init_layers(self) -> None:
        """Create the shared stack, the two task decompositions, the predictors, the
        alignment maps and one ``Scale`` per level."""
        # Unused in forward; kept for mmdetection's repr.
        self.relu = nn.ReLU(inplace=True)
        self.inter_convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            conv_cfg = dict(type='DCNv2', deform_groups=4) if i < self.num_dcn else self.conv_cfg
            self.inter_convs.append(
                ConvModule(self.in_channels if i == 0 else self.feat_channels,
                           self.feat_channels, 3, stride=1, padding=1, conv_cfg=conv_cfg,
                           norm_cfg=self.norm_cfg))
        la_down_rate = self.stacked_convs * 8
        self.cls_decomp = TaskDecomposition(self.feat_channels, self.stacked_convs,
                                            la_down_rate, self.conv_cfg, self.norm_cfg)
        self.reg_decomp = TaskDecomposition(self.feat_channels, self.stacked_convs,
                                            la_down_rate, self.conv_cfg, self.norm_cfg)
        self.tood_cls = nn.Conv2d(self.feat_channels,
                                  self.num_base_priors * self.cls_out_channels, 3, padding=1)
        self.tood_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * 4, 3, padding=1)

        stack_channels = self.feat_channels * self.stacked_convs
        hidden = self.feat_channels // 4
        self.cls_prob_module = nn.Sequential(
            nn.Conv2d(stack_channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 1, 3, padding=1))
        # One (dy, dx) per box coordinate.
        self.reg_offset_module = nn.Sequential(
            nn.Conv2d(stack_channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 4 * 2, 3, padding=1))
        self.scales = nn.ModuleList([Scale(1.0) for _ in self.prior_generator.strides])

    def init_weights(self) -> None:
        """Normal init of every layer (std 0.01; 0.001 for the offset branch); the class
        predictors start at a prior probability of 0.01.

        As mmdetection's, this replaces ``init_cfg`` entirely (the inherited default names
        ``atss_cls``, which this head does not have) and does not call the children's
        ``init_weights`` (the GN layers keep their construction-time init).
        """
        bias_cls = bias_init_with_prob(0.01)
        for conv in self.inter_convs:
            normal_init(conv.conv, std=0.01)
        for module in self.cls_prob_module:
            if isinstance(module, nn.Conv2d):
                normal_init(module, std=0.01)
        for module in self.reg_offset_module:
            if isinstance(module, nn.Conv2d):
                normal_init(module, std=0.001)
        normal_init(self.cls_prob_module[-1], std=0.01, bias=bias_cls)
        self.cls_decomp.init_weights()
        self.reg_decomp.init_weights()
        normal_init(self.tood_cls, std=0.01, bias=bias_cls)
        normal_init(self.tood_reg, std=0.01)

    # ------------------------------------------------------------------ forward

    def forward(self, feats: Tuple[Tensor, ...]) -> Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...]]:
        """Predict every level.

        Args:
            feats (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: ``cls_scores``, per level [B, A * num_classes, H_l, W_l] (probabilities),
            and ``bbox_preds``, per level [B, A * 4, H_l, W_l]: boxes (x1, y1, x2, y2) in units
            of the level's stride (A = 1 anchor per position).
        """
        cls_scores, bbox_preds = [], []
        for level, (x, scale, stride) in enumerate(
                zip(feats, self.scales, self.prior_generator.strides)):
            b, _, h, w = x.shape
            anchors = get_box_tensor(self.prior_generator.single_level_grid_priors(
                (h, w), level, device=x.device))  # [H * W, 4]
            anchors = torch.cat([anchors] * b)  # [B * H * W, 4], image-major

            inter_feats = []
            for conv in self.inter_convs:
                x = conv(x)  # [B, C, H, W]
                inter_feats.append(x)
            feat = torch.cat(inter_feats, 1)  # [B, N * C, H, W]

            avg_feat = F.adaptive_avg_pool2d(feat, (1, 1))  # shared by both tasks
            cls_feat = self.cls_decomp(feat, avg_feat)  # [B, C, H, W]
            reg_feat = self.reg_decomp(feat, avg_feat)

            # Class probability aligned with a class-agnostic "objectness" map of the stack.
            cls_score = sigmoid_geometric_mean(self.tood_cls(cls_feat),
                                               self.cls_prob_module(feat))  # [B, K, H, W]

            if self.anchor_type == 'anchor_free':
                # Scale after exp, as mmdetection.
                reg_dist = scale(self.tood_reg(reg_feat).exp()).float()
                reg_dist = reg_dist.permute(0, 2, 3, 1).reshape(-1, 4)  # [B * H * W, 4]
                reg_bbox = distance2bbox(self.anchor_center(anchors) / stride[0], reg_dist)
            else:
                reg_dist = scale(self.tood_reg(reg_feat)).float()
                reg_dist = reg_dist.permute(0, 2, 3, 1).reshape(-1, 4)
                reg_bbox = get_box_tensor(self.bbox_coder.decode(anchors, reg_dist)) / stride[0]
            reg_bbox = reg_bbox.reshape(b, h, w, 4).permute(0, 3, 1, 2)  # [B, 4, H, W]

            reg_offset = self.reg_offset_module(feat)  # [B, 8, H, W]
            bbox_pred = self.deform_sampling(reg_bbox.contiguous(), reg_offset.contiguous())
            # Resampled corners may cross (x1 > x2 or y1 > y2), which would make GIoU
            # meaningless: such boxes fall back to the unsampled prediction.
            invalid = ((bbox_pred[:, [0]] > bbox_pred[:, [2]]) |
                       (bbox_pred[:, [1]] > bbox_pred[:, [3]])).expand_as(bbox_pred)
            bbox_pred = torch.where(invalid, reg_bbox, bbox_pred)

            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return tuple(cls_scores), tuple(bbox_preds)

    def deform_sampling(self, feat: Tensor, offset: Tensor) -> Tensor:
        """Bilinearly sample each channel of ``feat`` at its own offset from every position.

        A depthwise 1x1 deformable convolution with unit weights and one deform group per
        channel: ``out[b, c, y, x] = feat[b, c, y + offset[b, 2c, y, x],
        x + offset[b, 2c + 1, y, x]]``, zero outside the map.

        Args:
            feat (Tensor): [B, C, H, W].
            offset (Tensor): [B, 2 * C, H, W], (dy, dx) per channel in pixels of the map.

        Returns:
            Tensor: [B, C, H, W].
        """
        channels = feat.size(1)
        weight = feat.new_ones(channels, 1, 1, 1)
        return deform_conv2d(feat, offset, weight, stride=1, padding=0, dilation=1)

    def anchor_center(self, anchors: Tensor) -> Tensor:
        """Centres [N, 2] (x, y) of anchors [N, 4] (x1, y1, x2, y2)."""
        return torch.stack([(anchors[:, 0] + anchors[:, 2]) / 2,
                            (anchors[:, 1] + anchors[:, 3]) / 2], dim=-1)

    # ------------------------------------------------------------------ training

    def loss_by_feat_single(self, anchors: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                            labels: Tensor, label_weights: Tensor, bbox_targets: Tensor,
                            alignment_metrics: Tensor, stride: Tuple[int, int]) -> tuple:
        """Losses of one level, not normalised yet.

        Args:
            anchors (Tensor): [B, N_l, 4].
            cls_score (Tensor): [B, A * num_classes, H, W] probabilities.
            bbox_pred (Tensor): [B, A * 4, H, W] boxes in stride units.
            labels, label_weights (Tensor): [B, N_l] (label ``num_classes`` = background).
            bbox_targets (Tensor): [B, N_l, 4] gt boxes in pixels.
            alignment_metrics (Tensor): [B, N_l] normalised alignment metrics (initial
                stage: 1 for positives, 0 elsewhere).
            stride (tuple[int, int]): Stride of the level.

        Returns:
            tuple: ``loss_cls`` (a sum), ``loss_bbox`` (a weighted sum), the sum of the
            alignment metrics (the classification normaliser) and the sum of the box
            weights (the box normaliser).
        """
        if stride[0] != stride[1]:
            raise ATSSHeadError(f'TOODHead needs square strides, got {tuple(stride)}')
        anchors = anchors.reshape(-1, 4)
        cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, self.cls_out_channels).contiguous()
        bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, 4)
        bbox_targets = bbox_targets.reshape(-1, 4)
        labels = labels.reshape(-1)
        alignment_metrics = alignment_metrics.reshape(-1)
        label_weights = label_weights.reshape(-1)

        initial_stage = self.epoch < self.initial_epoch
        if initial_stage:
            loss_cls = self.initial_loss_cls(cls_score, labels, label_weights, avg_factor=1.0)
        else:
            # QFL: the target of a positive's class is its alignment metric, not 1.
            loss_cls = self.loss_cls(cls_score, (labels, alignment_metrics), label_weights,
                                     avg_factor=1.0)

        pos_inds = ((labels >= 0) & (labels < self.num_classes)).nonzero().squeeze(1)
        if len(pos_inds) > 0:
            pos_bbox_targets = bbox_targets[pos_inds]
            if initial_stage:
                pos_bbox_weight = self.centerness_target(anchors[pos_inds], pos_bbox_targets)
            else:
                pos_bbox_weight = alignment_metrics[pos_inds]
            loss_bbox = self.loss_bbox(bbox_pred[pos_inds], pos_bbox_targets / stride[0],
                                       weight=pos_bbox_weight, avg_factor=1.0)
        else:
            loss_bbox = bbox_pred.sum() * 0  # a zero that keeps the graph connected
            pos_bbox_weight = bbox_targets.new_tensor(0.)
        return loss_cls, loss_bbox, alignment_metrics.sum(), pos_bbox_weight.sum()

    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head outputs against the ground truth.

        The classification losses of all levels are divided by the sum of the alignment
        metrics, the box losses by the sum of the box weights (each averaged over ranks, at
        least 1).

        Args:
            cls_scores (list[Tensor]): Per level [B, A * num_classes, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, A * 4, H_l, W_l], stride units.
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.

        Returns:
            dict: ``loss_cls`` and ``loss_bbox``, each a list with one scalar per level.
        """
        num_imgs = len(batch_img_metas)
        featmap_sizes = [score.size()[-2:] for score in cls_scores]
        if len(featmap_sizes) != self.prior_generator.num_levels:
            raise ATSSHeadError(f'expected {self.prior_generator.num_levels} levels of '
                                f'predictions, got {len(featmap_sizes)}')
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas,
                                                        device=cls_scores[0].device)
        # The assigner compares pixel boxes with the gts.
        flat_cls_scores = torch.cat([
            score.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels)
            for score in cls_scores], 1)  # [B, N, K]
        flat_bbox_preds = torch.cat([
            pred.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4) * stride[0]
            for pred, stride in zip(bbox_preds, self.prior_generator.strides)], 1)  # [B, N, 4]

        (anchors_list, labels_list, label_weights_list, bbox_targets_list,
         alignment_metrics_list) = self.get_targets(
             flat_cls_scores, flat_bbox_preds, anchor_list, valid_flag_list,
             batch_gt_instances, batch_img_metas,
             batch_gt_instances_ignore=batch_gt_instances_ignore)

        losses_cls, losses_bbox, cls_norms, bbox_norms = [], [], [], []
        for level, stride in enumerate(self.prior_generator.strides):
            loss_cls, loss_bbox, cls_norm, bbox_norm = self.loss_by_feat_single(
                anchors_list[level], cls_scores[level], bbox_preds[level], labels_list[level],
                label_weights_list[level], bbox_targets_list[level],
                alignment_metrics_list[level], stride)
            losses_cls.append(loss_cls)
            losses_bbox.append(loss_bbox)
            cls_norms.append(cls_norm)
            bbox_norms.append(bbox_norm)
        cls_avg_factor = reduce_mean(sum(cls_norms)).clamp_(min=1).item()
        bbox_avg_factor = reduce_mean(sum(bbox_norms)).clamp_(min=1).item()
        return dict(loss_cls=[loss / cls_avg_factor for loss in losses_cls],
                    loss_bbox=[loss / bbox_avg_factor for loss in losses_bbox])

    # ------------------------------------------------------------------ inference

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Optional[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: ConfigType,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        """Detections of one image (arguments as :class:`BaseDenseHead`'s): the head already
        outputs probabilities and boxes (per level [A * K, H_l, W_l] and [A * 4, H_l, W_l],
        stride units), so each level is only filtered (``score_thr``, top ``nms_pre``) and
        scaled to pixels before the usual post-processing (no score factors)."""
        nms_pre = cfg.get('nms_pre', -1)
        mlvl_bboxes, mlvl_scores, mlvl_labels = [], [], []
        for cls_score, bbox_pred, priors, stride in zip(cls_score_list, bbox_pred_list,
                                                        mlvl_priors,
                                                        self.prior_generator.strides):
            if cls_score.size()[-2:] != bbox_pred.size()[-2:]:
                raise ATSSHeadError(f'cls_score {tuple(cls_score.shape)} and bbox_pred '
                                    f'{tuple(bbox_pred.shape)} differ in size')
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, 4) * stride[0]  # pixels
            scores = cls_score.permute(1, 2, 0).reshape(-1, self.cls_out_channels)
            scores, labels, _, kept = filter_scores_and_topk(
                scores, cfg.get('score_thr', 0), nms_pre,
                dict(bbox_pred=bbox_pred, priors=priors))
            mlvl_bboxes.append(kept['bbox_pred'])
            mlvl_scores.append(scores)
            mlvl_labels.append(labels)

        results = InstanceData()
        results.bboxes = torch.cat(mlvl_bboxes)
        results.scores = torch.cat(mlvl_scores)
        results.labels = torch.cat(mlvl_labels)
        return self._bbox_post_process(results, cfg, rescale=rescale, with_nms=with_nms,
                                       img_meta=img_meta)
