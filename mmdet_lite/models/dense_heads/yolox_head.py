"""YOLOXHead: the decoupled, anchor-free head of YOLOX (Ge et al., 2021).

Every level has its own two towers of 3x3 convs (not shared across levels, unlike RetinaNet):
the classification tower ends in ``num_classes`` sigmoid logits, the regression tower in 4 box
values and 1 objectness logit. There is one prior per location: the point
``(x * stride, y * stride)`` (no half-stride offset) with its stride. A box is decoded as::

    center = prior_xy + pred[:2] * stride,    size = exp(pred[2:]) * stride

Training (``loss_by_feat``): SimOTA picks the positives per image on the detached predictions,
with the prior points moved to the cell centres (+ stride / 2) for the assignment only. Then

- ``loss_obj``: BCE of the objectness logit of every prior, target 1 on positives;
- ``loss_cls``: BCE of the class logits of the positives, target ``one_hot(label) * IoU`` (the
  IoU of the predicted box with its assigned gt);
- ``loss_bbox``: ``1 - IoU**2`` of the decoded positives with their gts;
- ``loss_l1`` (only once ``use_l1`` is True, set by ``YOLOXModeSwitchHook`` for the last
  epochs): L1 between the raw predictions and the gts encoded the same way;

each summed and divided by the number of positives of the batch (averaged over ranks, at
least 1). Prediction: score = sigmoid(cls) * sigmoid(obj) of the best class, a score
threshold, then class-wise NMS.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmengine.model import bias_init_with_prob
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import bbox_xyxy_to_cxcywh, get_box_tensor
from mmdet_lite.utils import (ConfigType, InstanceList, OptConfigType, OptInstanceList,
                              OptMultiConfig, reduce_mean)
from ..task_modules.prior_generators import MlvlPointGenerator
from ..task_modules.samplers import PseudoSampler
from ..utils import batched_nms
from .base_dense_head import BaseDenseHead


class YOLOXHeadArgumentError(ValueError, AssertionError):
    """A YOLOXHead argument or input is invalid (an AssertionError in mmdetection)."""


@MODELS.register_module()
class YOLOXHead(BaseDenseHead):
    """Head of `YOLOX <https://arxiv.org/abs/2107.08430>`_; see the module docstring.

    The state_dict holds, per level ``l`` and tower conv ``i``: ``multi_level_cls_convs.l.i``
    and ``multi_level_reg_convs.l.i`` (ConvModules: ``conv`` + ``bn``; depthwise:
    ``depthwise_conv`` + ``pointwise_conv``), then the 1x1 predictors
    ``multi_level_conv_cls.l`` (num_classes), ``multi_level_conv_reg.l`` (4) and
    ``multi_level_conv_obj.l`` (1).

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of every input level.
        feat_channels (int): Channels of the tower convs. Defaults to 256.
        stacked_convs (int): Convs per tower. Defaults to 2.
        strides (Sequence[int]): Stride of each input level. Defaults to (8, 16, 32).
        use_depthwise (bool): Depthwise separable tower convs (YOLOX-nano). Defaults to False.
        dcn_on_last_conv (bool): Make the last conv of each tower a DCNv2. Defaults to False.
        conv_bias (bool | str): Bias of the tower convs; ``'auto'``: only without a norm.
            Defaults to ``'auto'``.
        conv_cfg (dict, optional): Conv layer config of the towers. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish.
        loss_cls (dict): Class loss. Defaults to sigmoid CrossEntropyLoss, reduction sum.
        loss_bbox (dict): Box loss. Defaults to IoULoss(mode='square', eps=1e-16,
            reduction='sum', loss_weight=5.0).
        loss_obj (dict): Objectness loss. Defaults to sigmoid CrossEntropyLoss, reduction sum.
        loss_l1 (dict): L1 loss of the last epochs. Defaults to L1Loss, reduction sum.
        train_cfg (dict, optional): ``assigner`` (SimOTAAssigner in the configs).
        test_cfg (dict, optional): ``score_thr`` and ``nms``.
        init_cfg (dict or list[dict], optional): Defaults to Kaiming uniform (a=sqrt(5),
            fan_in, leaky_relu) on every Conv2d, i.e. torch's default conv init; the class
            and objectness biases are then set by :meth:`init_weights`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 256,
                 stacked_convs: int = 2,
                 strides: Sequence[int] = (8, 16, 32),
                 use_depthwise: bool = False,
                 dcn_on_last_conv: bool = False,
                 conv_bias: Union[bool, str] = 'auto',
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: ConfigType = dict(type='Swish'),
                 loss_cls: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=True,
                                             reduction='sum', loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='IoULoss', mode='square', eps=1e-16,
                                              reduction='sum', loss_weight=5.0),
                 loss_obj: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=True,
                                             reduction='sum', loss_weight=1.0),
                 loss_l1: ConfigType = dict(type='L1Loss', reduction='sum', loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = dict(
                     type='Kaiming',
                     layer='Conv2d',
                     a=math.sqrt(5),
                     distribution='uniform',
                     mode='fan_in',
                     nonlinearity='leaky_relu')) -> None:
        super().__init__(init_cfg=init_cfg)
        if not (conv_bias == 'auto' or isinstance(conv_bias, bool)):
            raise YOLOXHeadArgumentError(f"conv_bias must be 'auto' or a bool, got {conv_bias!r}")
        self.num_classes = num_classes
        self.cls_out_channels = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = strides
        self.use_depthwise = use_depthwise
        self.dcn_on_last_conv = dcn_on_last_conv
        self.conv_bias = conv_bias
        self.use_sigmoid_cls = True
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg

        self.loss_cls: nn.Module = MODELS.build(loss_cls)
        self.loss_bbox: nn.Module = MODELS.build(loss_bbox)
        self.loss_obj: nn.Module = MODELS.build(loss_obj)
        # Off for most of training; YOLOXModeSwitchHook turns it on for the last epochs.
        self.use_l1 = False
        self.loss_l1: nn.Module = MODELS.build(loss_l1)

        # Priors on the cell corners (offset 0): boxes are regressed from there.
        self.prior_generator = MlvlPointGenerator(strides, offset=0)
        self.test_cfg = test_cfg
        self.train_cfg = train_cfg
        if self.train_cfg:
            self.assigner = TASK_UTILS.build(self.train_cfg['assigner'])
            # SimOTA decides positives and negatives itself: nothing to sample.
            self.sampler = PseudoSampler()
        self._init_layers()

    # ------------------------------------------------------------------------- layers

    def _init_layers(self) -> None:
        """Create the towers and 1x1 predictors of every level (not shared across levels)."""
        self.multi_level_cls_convs = nn.ModuleList()
        self.multi_level_reg_convs = nn.ModuleList()
        self.multi_level_conv_cls = nn.ModuleList()
        self.multi_level_conv_reg = nn.ModuleList()
        self.multi_level_conv_obj = nn.ModuleList()
        for _ in self.strides:
            self.multi_level_cls_convs.append(self._build_stacked_convs())
            self.multi_level_reg_convs.append(self._build_stacked_convs())
            self.multi_level_conv_cls.append(nn.Conv2d(self.feat_channels,
                                                       self.cls_out_channels, 1))
            self.multi_level_conv_reg.append(nn.Conv2d(self.feat_channels, 4, 1))
            self.multi_level_conv_obj.append(nn.Conv2d(self.feat_channels, 1, 1))

    def _build_stacked_convs(self) -> nn.Sequential:
        """One tower: ``stacked_convs`` 3x3 conv-norm-act blocks."""
        conv_module = DepthwiseSeparableConvModule if self.use_depthwise else ConvModule
        convs = []
        for i in range(self.stacked_convs):
            is_last = i == self.stacked_convs - 1
            conv_cfg = dict(type='DCNv2') if self.dcn_on_last_conv and is_last else self.conv_cfg
            convs.append(
                conv_module(self.in_channels if i == 0 else self.feat_channels,
                            self.feat_channels, 3, stride=1, padding=1, conv_cfg=conv_cfg,
                            norm_cfg=self.norm_cfg, act_cfg=self.act_cfg, bias=self.conv_bias))
        return nn.Sequential(*convs)

    def init_weights(self) -> None:
        """``init_cfg`` first, then class and objectness biases giving a prior probability of
        0.01, so that the many background priors do not dominate the first iterations."""
        super().init_weights()
        bias = bias_init_with_prob(0.01)
        for conv_cls, conv_obj in zip(self.multi_level_conv_cls, self.multi_level_conv_obj):
            conv_cls.bias.data.fill_(bias)
            conv_obj.bias.data.fill_(bias)

    def forward_single(self, x: Tensor, cls_convs: nn.Module, reg_convs: nn.Module,
                       conv_cls: nn.Module, conv_reg: nn.Module,
                       conv_obj: nn.Module) -> Tuple[Tensor, Tensor, Tensor]:
        """Predict one level with that level's layers.

        Args:
            x (Tensor): Features [B, in_channels, H, W].

        Returns:
            tuple[Tensor, Tensor, Tensor]: Class logits [B, num_classes, H, W], box values
            [B, 4, H, W] and objectness logits [B, 1, H, W].
        """
        cls_feat = cls_convs(x)  # [B, feat_channels, H, W]
        reg_feat = reg_convs(x)  # [B, feat_channels, H, W]
        return conv_cls(cls_feat), conv_reg(reg_feat), conv_obj(reg_feat)

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Predict every level.

        Args:
            x (tuple[Tensor]): One map [B, in_channels, H_l, W_l] per stride.

        Returns:
            tuple[list[Tensor], list[Tensor], list[Tensor]]: ``cls_scores``
            [B, num_classes, H_l, W_l], ``bbox_preds`` [B, 4, H_l, W_l] and ``objectnesses``
            [B, 1, H_l, W_l], one per level.
        """
        cls_scores, bbox_preds, objectnesses = [], [], []
        for level_inputs in zip(x, self.multi_level_cls_convs, self.multi_level_reg_convs,
                                self.multi_level_conv_cls, self.multi_level_conv_reg,
                                self.multi_level_conv_obj):
            cls_score, bbox_pred, objectness = self.forward_single(*level_inputs)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
            objectnesses.append(objectness)
        return cls_scores, bbox_preds, objectnesses

    # ------------------------------------------------------------------------- shared

    def _flatten_outputs(self, cls_scores: Sequence[Tensor], bbox_preds: Sequence[Tensor],
                         objectnesses: Sequence[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Concatenate the levels, one row per prior (level by level, row-major).

        Returns:
            tuple[Tensor, Tensor, Tensor, Tensor]: Class logits [B, N, num_classes], box
            values [B, N, 4], objectness logits [B, N] and priors [N, 4] as
            (x, y, stride_w, stride_h).
        """
        if not len(cls_scores) == len(bbox_preds) == len(objectnesses):
            raise YOLOXHeadArgumentError(
                f'cls_scores, bbox_preds and objectnesses must have one tensor per level, '
                f'got {len(cls_scores)}, {len(bbox_preds)} and {len(objectnesses)}')
        num_imgs = cls_scores[0].size(0)
        mlvl_priors = self.prior_generator.grid_priors(
            [cls_score.shape[2:] for cls_score in cls_scores], dtype=cls_scores[0].dtype,
            device=cls_scores[0].device, with_stride=True)
        flat_cls = torch.cat([cls.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.cls_out_channels)
                              for cls in cls_scores], dim=1)
        flat_bbox = torch.cat([bbox.permute(0, 2, 3, 1).reshape(num_imgs, -1, 4)
                               for bbox in bbox_preds], dim=1)
        flat_obj = torch.cat([obj.permute(0, 2, 3, 1).reshape(num_imgs, -1)
                              for obj in objectnesses], dim=1)
        return flat_cls, flat_bbox, flat_obj, torch.cat(mlvl_priors)

    def _bbox_decode(self, priors: Tensor, bbox_preds: Tensor) -> Tensor:
        """Decode box values to boxes.

        Args:
            priors (Tensor): [N, 4] as (x, y, stride_w, stride_h).
            bbox_preds (Tensor): [B, N, 4] as (dx, dy, log w, log h) in strides.

        Returns:
            Tensor: [B, N, 4] boxes (x1, y1, x2, y2) in input-image pixels.
        """
        centers = bbox_preds[..., :2] * priors[:, 2:] + priors[:, :2]
        sizes = bbox_preds[..., 2:].exp() * priors[:, 2:]
        return torch.cat([centers - sizes / 2, centers + sizes / 2], dim=-1)

    # ------------------------------------------------------------------------- predict

    def predict_by_feat(self,
                        cls_scores: List[Tensor],
                        bbox_preds: List[Tensor],
                        objectnesses: Optional[List[Tensor]],
                        batch_img_metas: Optional[List[dict]] = None,
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Detections of each image: best class per prior, score threshold, NMS.

        Unlike the other dense heads there is no per-level top-k (``nms_pre``), no
        ``min_bbox_size`` and no ``max_per_img`` cut (mmdetection's YOLOX ignores them).

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l] logits.
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l].
            objectnesses (list[Tensor]): Per level [B, 1, H_l, W_l] logits.
            batch_img_metas (list[dict]): Meta of each image (``scale_factor`` to rescale).
            cfg (dict, optional): ``score_thr`` and ``nms``; ``test_cfg`` when None.
            rescale (bool): Map boxes back to the original image. Defaults to False.
            with_nms (bool): Run NMS; False keeps every box above the threshold, in prior
                order. Defaults to True.

        Returns:
            list[InstanceData]: Per image ``bboxes`` [K, 4], ``scores`` [K] (class
            probability times objectness) and ``labels`` [K].
        """
        if objectnesses is None or batch_img_metas is None:
            raise YOLOXHeadArgumentError('objectnesses (one tensor per level) and '
                                         'batch_img_metas are required')
        cfg = self._resolve_cfg(cfg)
        flat_cls, flat_bbox, flat_obj, priors = self._flatten_outputs(
            cls_scores, bbox_preds, objectnesses)
        cls_probs = flat_cls.sigmoid()  # [B, N, num_classes]
        obj_probs = flat_obj.sigmoid()  # [B, N]
        bboxes = self._bbox_decode(priors, flat_bbox)  # [B, N, 4]

        result_list = []
        for img_id, img_meta in enumerate(batch_img_metas):
            max_scores, labels = cls_probs[img_id].max(1)
            keep = obj_probs[img_id] * max_scores >= cfg['score_thr']
            results = InstanceData(bboxes=bboxes[img_id][keep],
                                   scores=max_scores[keep] * obj_probs[img_id][keep],
                                   labels=labels[keep])
            result_list.append(self._bbox_post_process(results, cfg, rescale=rescale,
                                                       with_nms=with_nms, img_meta=img_meta))
        return result_list

    def _bbox_post_process(self,
                           results: InstanceData,
                           cfg: ConfigType,
                           rescale: bool = False,
                           with_nms: bool = True,
                           img_meta: Optional[dict] = None) -> InstanceData:
        """Rescale to the original image, then class-wise NMS (all survivors kept)."""
        if rescale:
            if img_meta is None or img_meta.get('scale_factor') is None:
                raise YOLOXHeadArgumentError(
                    "rescale=True needs 'scale_factor' (w_scale, h_scale) in the image meta")
            scale_factor = results.bboxes.new_tensor(img_meta['scale_factor'])
            results.bboxes = results.bboxes / scale_factor.repeat((1, 2))
        if with_nms and results.bboxes.numel() > 0:
            dets, keep = batched_nms(results.bboxes, results.scores, results.labels, cfg['nms'])
            results = results[keep]
            results.scores = dets[:, -1]
        return results

    # ------------------------------------------------------------------------- loss

    def loss_by_feat(self,
                     cls_scores: Sequence[Tensor],
                     bbox_preds: Sequence[Tensor],
                     objectnesses: Sequence[Tensor],
                     batch_gt_instances: Sequence[InstanceData],
                     batch_img_metas: Sequence[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of a batch; see the module docstring.

        Args:
            cls_scores (list[Tensor]): Per level [B, num_classes, H_l, W_l] logits.
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l].
            objectnesses (list[Tensor]): Per level [B, 1, H_l, W_l] logits.
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4] and ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData], optional): Passed to the
                assigner (SimOTA does not use them).

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_obj`` and, with
            ``use_l1``, ``loss_l1``.
        """
        if not hasattr(self, 'assigner'):
            raise YOLOXHeadArgumentError(
                "YOLOXHead needs train_cfg with an 'assigner' (e.g. "
                "dict(assigner=dict(type='SimOTAAssigner', center_radius=2.5))) to compute losses")
        num_imgs = len(batch_img_metas)
        if batch_gt_instances_ignore is None:
            batch_gt_instances_ignore = [None] * num_imgs
        flat_cls, flat_bbox, flat_obj, priors = self._flatten_outputs(
            cls_scores, bbox_preds, objectnesses)
        flat_bboxes = self._bbox_decode(priors, flat_bbox)  # [B, N, 4]

        per_image = [
            self._get_targets_single(priors, flat_cls[i].detach(), flat_bboxes[i].detach(),
                                     flat_obj[i].detach(), batch_gt_instances[i],
                                     batch_img_metas[i], batch_gt_instances_ignore[i])
            for i in range(num_imgs)
        ]
        pos_masks, cls_targets, obj_targets, bbox_targets, l1_targets, num_pos_per_img = \
            zip(*per_image)

        num_pos = torch.tensor(sum(num_pos_per_img), dtype=torch.float, device=flat_cls.device)
        # The positives of all ranks, averaged, normalize every term (at least 1).
        num_total_samples = max(reduce_mean(num_pos), 1.0)
        pos_masks = torch.cat(pos_masks, 0)  # [B * N]

        loss_obj = self.loss_obj(flat_obj.view(-1, 1),
                                 torch.cat(obj_targets, 0)) / num_total_samples
        if num_pos > 0:
            loss_cls = self.loss_cls(flat_cls.view(-1, self.num_classes)[pos_masks],
                                     torch.cat(cls_targets, 0)) / num_total_samples
            loss_bbox = self.loss_bbox(flat_bboxes.view(-1, 4)[pos_masks],
                                       torch.cat(bbox_targets, 0)) / num_total_samples
        else:
            # Zero losses still connected to the class and box branches, so that every
            # parameter gets a gradient (needed by DDP) on batches without a gt.
            loss_cls = flat_cls.sum() * 0
            loss_bbox = flat_bboxes.sum() * 0
        losses = dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_obj=loss_obj)

        if self.use_l1:
            if num_pos > 0:
                losses['loss_l1'] = self.loss_l1(flat_bbox.view(-1, 4)[pos_masks],
                                                 torch.cat(l1_targets, 0)) / num_total_samples
            else:
                losses['loss_l1'] = flat_bbox.sum() * 0
        return losses

    @torch.no_grad()
    def _get_targets_single(
            self,
            priors: Tensor,
            cls_preds: Tensor,
            decoded_bboxes: Tensor,
            objectness: Tensor,
            gt_instances: InstanceData,
            img_meta: dict,
            gt_instances_ignore: Optional[InstanceData] = None
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, int]:
        """SimOTA targets of one image.

        Args:
            priors (Tensor): [N, 4] as (x, y, stride_w, stride_h), cell corners.
            cls_preds (Tensor): [N, num_classes] class logits.
            decoded_bboxes (Tensor): [N, 4] predicted boxes (x1, y1, x2, y2).
            objectness (Tensor): [N] objectness logits.
            gt_instances (InstanceData): ``bboxes`` [G, 4] and ``labels`` [G].
            img_meta (dict): Meta of the image (unused).
            gt_instances_ignore (InstanceData, optional): Passed to the assigner.

        Returns:
            tuple: ``pos_mask`` bool [N]; for the P positives (in prior order) ``cls_target``
            [P, num_classes] (one-hot times IoU), ``obj_target`` [N, 1], ``bbox_target``
            [P, 4], ``l1_target`` [P, 4] (zeros unless ``use_l1``); and P.
        """
        num_priors = priors.size(0)
        if len(gt_instances) == 0:
            return (cls_preds.new_zeros(num_priors).bool(),
                    cls_preds.new_zeros((0, self.num_classes)),
                    cls_preds.new_zeros((num_priors, 1)), cls_preds.new_zeros((0, 4)),
                    cls_preds.new_zeros((0, 4)), 0)

        # Assign from the cell centres, though boxes are regressed from the corners.
        center_priors = torch.cat([priors[:, :2] + priors[:, 2:] * 0.5, priors[:, 2:]], dim=-1)
        # The geometric mean of class and objectness probabilities drives the class cost.
        scores = (cls_preds.sigmoid() * objectness.unsqueeze(1).sigmoid()).sqrt()
        pred_instances = InstanceData(bboxes=decoded_bboxes, scores=scores, priors=center_priors)
        assign_result = self.assigner.assign(pred_instances=pred_instances,
                                             gt_instances=gt_instances,
                                             gt_instances_ignore=gt_instances_ignore)
        sampling_result = self.sampler.sample(assign_result, pred_instances, gt_instances)
        pos_inds = sampling_result.pos_inds
        num_pos = pos_inds.size(0)

        # IoU-aware class target: the positive's IoU with its gt instead of 1.
        pos_ious = assign_result.max_overlaps[pos_inds]
        cls_target = F.one_hot(sampling_result.pos_gt_labels,
                               self.num_classes) * pos_ious.unsqueeze(-1)
        obj_target = torch.zeros_like(objectness).unsqueeze(-1)
        obj_target[pos_inds] = 1
        bbox_target = get_box_tensor(sampling_result.pos_gt_bboxes)
        l1_target = cls_preds.new_zeros((num_pos, 4))
        if self.use_l1:
            l1_target = self._get_l1_target(l1_target, bbox_target, priors[pos_inds])
        pos_mask = torch.zeros_like(objectness).to(torch.bool)
        pos_mask[pos_inds] = 1
        return pos_mask, cls_target, obj_target, bbox_target, l1_target, num_pos

    def _get_l1_target(self, l1_target: Tensor, gt_bboxes: Tensor, priors: Tensor,
                       eps: float = 1e-8) -> Tensor:
        """Encode gts [P, 4] as the head's raw outputs: centre offset and log size, both in
        strides of their priors [P, 4] (cell corners); written into ``l1_target`` [P, 4]."""
        gt_cxcywh = bbox_xyxy_to_cxcywh(gt_bboxes)
        l1_target[:, :2] = (gt_cxcywh[:, :2] - priors[:, :2]) / priors[:, 2:]
        l1_target[:, 2:] = torch.log(gt_cxcywh[:, 2:] / priors[:, 2:] + eps)
        return l1_target
