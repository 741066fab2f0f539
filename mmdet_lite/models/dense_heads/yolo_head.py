"""YOLOV3Head: the per-level prediction convs of YOLOv3 (Redmon & Farhadi, 2018).

Each level (coarse to fine, strides 32, 16, 8) has a 3x3 ConvModule "bridge" and a 1x1 conv
predicting, for each of its A anchors, ``5 + num_classes`` values laid out as::

    [tx, ty, tw, th, objectness, class_0 ... class_{C-1}]     (channel = anchor * (5 + C) + k)

Decoding (``YOLOBBoxCoder``): centre = anchor centre + (sigmoid(t_xy) - 0.5) * stride,
size = anchor size * exp(t_wh); score = sigmoid(class) * sigmoid(objectness).

Training targets, per image: a gt is the responsibility of the grid cell holding its centre,
on every level; ``GridAssigner`` then makes a prior of that cell positive for the gt it
overlaps best (IoU > pos_iou_thr, or the gt's best responsible prior), and any prior whose
best IoU with every gt is <= neg_iou_thr negative. A positive's target row is
``[encoded xy (in (0, 1)), encoded log-wh, 1, one-hot(label)]`` (label-smoothed with
``one_hot_smoother``); the losses are

- ``loss_cls``: BCE of the class logits vs the (smoothed) one-hot, positives only;
- ``loss_conf``: BCE of the objectness logit vs 1 / 0, positives and negatives;
- ``loss_xy``: BCE of the xy logits vs the in-cell offsets, positives only;
- ``loss_wh``: MSE of the wh values vs the log size ratios, positives only;

each a list with one value per level. The targets are
:class:`~.yolo_targets.YOLOV3TargetsMixin`, in yolo_targets.py.
"""
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule, is_norm
from mmengine.model import bias_init_with_prob, constant_init, normal_init
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.structures.bbox import get_box_tensor
from mmdet_lite.utils import ConfigType, InstanceList, OptConfigType, OptInstanceList
from ..task_modules.samplers import PseudoSampler
from ..utils import filter_scores_and_topk
from .base_dense_head import BaseDenseHead
from .yolo_targets import YOLOV3HeadArgumentError, YOLOV3TargetsMixin


@MODELS.register_module()
class YOLOV3Head(YOLOV3TargetsMixin, BaseDenseHead):
    """Head of `YOLOv3 <https://arxiv.org/abs/1804.02767>`_; see the module docstring. Its
    targets come from :class:`~.yolo_targets.YOLOV3TargetsMixin`.

    The state_dict holds, per level ``l``: ``convs_bridge.l`` (ConvModule, 3x3,
    ``in_channels[l]`` -> ``out_channels[l]``, ``conv`` + ``bn``) and ``convs_pred.l``
    (Conv2d 1x1 with bias, ``out_channels[l]`` -> ``A * (5 + num_classes)``).

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (Sequence[int]): Input channels of each level.
        out_channels (Sequence[int]): Bridge conv channels of each level.
            Defaults to (1024, 512, 256).
        anchor_generator (dict): Config of the anchor generator. Defaults to
            YOLOAnchorGenerator with YOLOv3's COCO anchors on strides 32, 16, 8.
        bbox_coder (dict): Box coder config. Defaults to YOLOBBoxCoder.
        featmap_strides (Sequence[int]): Stride of each level, coarse first.
            Defaults to (32, 16, 8).
        one_hot_smoother (float): Label smoothing eps: class targets become
            ``one_hot * (1 - eps) + eps / num_classes``. Defaults to 0 (off).
        conv_cfg (dict, optional): Conv layer config of the bridges. Defaults to None.
        norm_cfg (dict): Norm layer config of the bridges. Defaults to BN.
        act_cfg (dict): Activation of the bridges. Defaults to LeakyReLU(0.1).
        loss_cls (dict): Class loss. Defaults to sigmoid CrossEntropyLoss.
        loss_conf (dict): Objectness loss. Defaults to sigmoid CrossEntropyLoss.
        loss_xy (dict): Centre loss. Defaults to sigmoid CrossEntropyLoss.
        loss_wh (dict): Size loss. Defaults to MSELoss.
        train_cfg (dict, optional): ``assigner`` (GridAssigner) and optional ``sampler``
            (PseudoSampler when absent).
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``conf_thr``,
            ``min_bbox_size``, ``nms``, ``max_per_img``.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: Sequence[int],
                 out_channels: Sequence[int] = (1024, 512, 256),
                 anchor_generator: ConfigType = dict(
                     type='YOLOAnchorGenerator',
                     base_sizes=[[(116, 90), (156, 198), (373, 326)],
                                 [(30, 61), (62, 45), (59, 119)],
                                 [(10, 13), (16, 30), (33, 23)]],
                     strides=[32, 16, 8]),
                 bbox_coder: ConfigType = dict(type='YOLOBBoxCoder'),
                 featmap_strides: Sequence[int] = (32, 16, 8),
                 one_hot_smoother: float = 0.,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='LeakyReLU', negative_slope=0.1),
                 loss_cls: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=True,
                                             loss_weight=1.0),
                 loss_conf: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=True,
                                              loss_weight=1.0),
                 loss_xy: ConfigType = dict(type='CrossEntropyLoss', use_sigmoid=True,
                                            loss_weight=1.0),
                 loss_wh: ConfigType = dict(type='MSELoss', loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None) -> None:
        # No init_cfg argument: init_weights below does the whole initialization.
        super().__init__(init_cfg=None)
        if not len(in_channels) == len(out_channels) == len(featmap_strides):
            raise YOLOV3HeadArgumentError(
                f'in_channels ({len(in_channels)}), out_channels ({len(out_channels)}) and '
                f'featmap_strides ({len(featmap_strides)}) need one entry per level each')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.featmap_strides = featmap_strides
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        if self.train_cfg:
            self.assigner = TASK_UTILS.build(self.train_cfg['assigner'])
            if train_cfg.get('sampler', None) is not None:
                # mmdetection passes ``context=self`` straight to ``build`` (a TypeError in
                # mmengine); handed over as a default argument here, as AnchorHead does.
                self.sampler = TASK_UTILS.build(self.train_cfg['sampler'],
                                                default_args=dict(context=self))
            else:
                self.sampler = PseudoSampler()
        self.one_hot_smoother = one_hot_smoother
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.prior_generator = TASK_UTILS.build(anchor_generator)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_conf = MODELS.build(loss_conf)
        self.loss_xy = MODELS.build(loss_xy)
        self.loss_wh = MODELS.build(loss_wh)
        # BaseDenseHead's attributes; post-processing here is YOLOv3's own (predict_by_feat).
        self.use_sigmoid_cls = True
        self.cls_out_channels = num_classes

        self.num_base_priors = self.prior_generator.num_base_priors[0]
        if len(self.prior_generator.num_base_priors) != len(featmap_strides):
            raise YOLOV3HeadArgumentError(
                f'the anchor generator has {len(self.prior_generator.num_base_priors)} levels '
                f'but featmap_strides has {len(featmap_strides)}')
        self._init_layers()

    @property
    def num_levels(self) -> int:
        """int: Number of feature levels."""
        return len(self.featmap_strides)

    @property
    def num_attrib(self) -> int:
        """int: Values predicted per anchor: 4 box + 1 objectness + num_classes."""
        return 5 + self.num_classes

    def _init_layers(self) -> None:
        """Create ``convs_bridge`` (3x3 ConvModules) and ``convs_pred`` (1x1 Conv2d)."""
        self.convs_bridge = nn.ModuleList()
        self.convs_pred = nn.ModuleList()
        for in_c, out_c in zip(self.in_channels, self.out_channels):
            self.convs_bridge.append(
                ConvModule(in_c, out_c, 3, padding=1, conv_cfg=self.conv_cfg,
                           norm_cfg=self.norm_cfg, act_cfg=self.act_cfg))
            self.convs_pred.append(nn.Conv2d(out_c, self.num_base_priors * self.num_attrib, 1))

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs, norms at 1, then prior-probability biases of ``convs_pred``:
        objectness 8 objects per 608x608 image spread over the level's cells (as the
        ultralytics YOLOv3), classes 0.01."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, mean=0, std=0.01)
            if is_norm(m):
                constant_init(m, 1)
        with torch.no_grad():
            for conv_pred, stride in zip(self.convs_pred, self.featmap_strides):
                bias = conv_pred.bias.view(self.num_base_priors, -1)  # [A, 5 + C]
                bias[:, 4] = bias_init_with_prob(8 / (608 / stride)**2)
                bias[:, 5:] = bias_init_with_prob(0.01)

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[Tuple[Tensor, ...]]:
        """Predict every level with its own layers.

        Args:
            x (tuple[Tensor]): Features, coarse first, [B, in_channels[l], H_l, W_l].

        Returns:
            tuple: A 1-tuple (as mmdetection) holding the tuple of prediction maps, each
            [B, A * (5 + num_classes), H_l, W_l].
        """
        if len(x) != self.num_levels:
            raise YOLOV3HeadArgumentError(f'expected {self.num_levels} feature levels, got '
                                          f'{len(x)}')
        pred_maps = []
        for feat, conv_bridge, conv_pred in zip(x, self.convs_bridge, self.convs_pred):
            feat = conv_bridge(feat)  # [B, out_channels[l], H_l, W_l]
            pred_maps.append(conv_pred(feat))  # [B, A * (5 + C), H_l, W_l]
        return tuple(pred_maps),

    # ------------------------------------------------------------------------- predict

    def predict_by_feat(self,
                        pred_maps: Sequence[Tensor],
                        batch_img_metas: Optional[List[dict]],
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Turn the raw prediction maps of a batch into detections per image.

        Per image: drop priors with objectness < ``conf_thr`` (if > 0), keep the top
        ``nms_pre`` (prior, class) pairs with class score > ``score_thr``, multiply by the
        objectness, then (optionally) rescale, drop small boxes and run class-wise NMS.

        Args:
            pred_maps (Sequence[Tensor]): Per level [B, A * (5 + C), H_l, W_l].
            batch_img_metas (list[dict]): Meta of each image.
            cfg (dict, optional): Post-processing config; ``test_cfg`` when None.
            rescale (bool): Map boxes back to the original image size. Defaults to False.
            with_nms (bool): Run NMS. Defaults to True.

        Returns:
            list[InstanceData]: Per image ``bboxes`` [K, 4], ``scores`` [K], ``labels`` [K].
        """
        if len(pred_maps) != self.num_levels:
            raise YOLOV3HeadArgumentError(f'expected {self.num_levels} prediction maps, got '
                                          f'{len(pred_maps)}')
        cfg = self._resolve_cfg(cfg)
        num_imgs = len(batch_img_metas)
        featmap_sizes = [pred_map.shape[-2:] for pred_map in pred_maps]
        mlvl_anchors = self.prior_generator.grid_priors(featmap_sizes,
                                                        device=pred_maps[0].device)
        flat_preds, flat_strides = [], []
        for pred, stride in zip(pred_maps, self.featmap_strides):
            # Channels are (anchor, attribute): one row per prior, ordered (y, x, anchor)
            # like the anchors of grid_priors.
            pred = pred.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.num_attrib)
            pred = torch.cat([pred[..., :2].sigmoid(), pred[..., 2:]], dim=-1)
            flat_preds.append(pred)
            flat_strides.append(pred.new_tensor(stride).expand(pred.size(1)))
        flat_preds = torch.cat(flat_preds, dim=1)  # [B, N, 5 + C]
        flat_strides = torch.cat(flat_strides)  # [N]
        flat_bboxes = self.bbox_coder.decode(torch.cat(mlvl_anchors), flat_preds[..., :4],
                                             flat_strides.unsqueeze(-1))  # [B, N, 4]
        flat_objectness = flat_preds[..., 4].sigmoid()  # [B, N]
        flat_cls_scores = flat_preds[..., 5:].sigmoid()  # [B, N, C]

        conf_thr = cfg.get('conf_thr', -1)
        score_thr = cfg.get('score_thr', 0)
        nms_pre = cfg.get('nms_pre', -1)
        results_list = []
        for bboxes, scores, objectness, img_meta in zip(flat_bboxes, flat_cls_scores,
                                                        flat_objectness, batch_img_metas):
            if conf_thr > 0:
                confident = objectness >= conf_thr
                bboxes, scores, objectness = \
                    bboxes[confident], scores[confident], objectness[confident]
            scores, labels, keep_idxs, _ = filter_scores_and_topk(scores, score_thr, nms_pre)
            # mmdetection multiplies the objectness in during post-processing (after an
            # optional rescale, which does not touch scores): the same numbers.
            results = InstanceData(scores=scores * objectness[keep_idxs], labels=labels,
                                   bboxes=bboxes[keep_idxs])
            results_list.append(self._bbox_post_process(results, cfg, rescale=rescale,
                                                        with_nms=with_nms, img_meta=img_meta))
        return results_list

    # ------------------------------------------------------------------------- loss

    def loss_by_feat(self,
                     pred_maps: Sequence[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the prediction maps against the ground truth.

        Args:
            pred_maps (Sequence[Tensor]): Per level [B, A * (5 + C), H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData], optional): Not used.

        Returns:
            dict: ``loss_cls``, ``loss_conf``, ``loss_xy``, ``loss_wh``; each a list with one
            scalar per level.
        """
        if self.train_cfg is None:
            raise ValueError('YOLOV3Head was built without train_cfg; the loss needs '
                             "train_cfg with an assigner, e.g. dict(type='GridAssigner', ...)")
        num_imgs = len(batch_img_metas)
        device = pred_maps[0].device
        featmap_sizes = [pred_map.shape[-2:] for pred_map in pred_maps]
        mlvl_anchors = self.prior_generator.grid_priors(featmap_sizes, device=device)
        anchor_list = [mlvl_anchors for _ in range(num_imgs)]
        responsible_flag_list = [
            self.responsible_flags(featmap_sizes, get_box_tensor(gt.bboxes), device)
            for gt in batch_gt_instances
        ]
        target_maps_list, neg_maps_list = self.get_targets(anchor_list, responsible_flag_list,
                                                           batch_gt_instances)
        losses = dict(loss_cls=[], loss_conf=[], loss_xy=[], loss_wh=[])
        for pred_map, target_map, neg_map in zip(pred_maps, target_maps_list, neg_maps_list):
            for name, value in zip(losses, self.loss_by_feat_single(pred_map, target_map,
                                                                    neg_map)):
                losses[name].append(value)
        return losses

    def loss_by_feat_single(self, pred_map: Tensor, target_map: Tensor,
                            neg_map: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Losses of one level.

        Args:
            pred_map (Tensor): [B, A * (5 + C), H, W].
            target_map (Tensor): [B, H * W * A, 5 + C] (see :meth:`_get_targets_single`).
            neg_map (Tensor): uint8 [B, H * W * A], 1 on negatives.

        Returns:
            tuple: loss_cls, loss_conf, loss_xy, loss_wh.
        """
        num_imgs = len(pred_map)
        pred_map = pred_map.permute(0, 2, 3, 1).reshape(num_imgs, -1, self.num_attrib)
        neg_mask = neg_map.float()  # [B, N]
        pos_mask = target_map[..., 4]  # [B, N], 1 on positives
        pos_and_neg_mask = neg_mask + pos_mask
        pos_mask = pos_mask.unsqueeze(dim=-1)  # [B, N, 1], broadcast over xy / wh / classes
        if torch.max(pos_and_neg_mask) > 1.:
            warnings.warn('There is overlap between pos and neg sample.')
            pos_and_neg_mask = pos_and_neg_mask.clamp(min=0., max=1.)

        loss_cls = self.loss_cls(pred_map[..., 5:], target_map[..., 5:], weight=pos_mask)
        loss_conf = self.loss_conf(pred_map[..., 4], target_map[..., 4],
                                   weight=pos_and_neg_mask)
        loss_xy = self.loss_xy(pred_map[..., :2], target_map[..., :2], weight=pos_mask)
        loss_wh = self.loss_wh(pred_map[..., 2:4], target_map[..., 2:4], weight=pos_mask)
        return loss_cls, loss_conf, loss_xy, loss_wh
