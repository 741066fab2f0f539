"""AnchorFreeHead: the shared skeleton of point-based dense heads (FCOS, CenterNet, AutoAssign...).

Instead of a set of anchor boxes, every feature-map location is one *point* prior
``((x + 0.5) * stride, (y + 0.5) * stride)`` (``MlvlPointGenerator``) and the head regresses the
distances from that point to the four sides of a box (``DistancePointBBoxCoder``). The layers
are two towers of 3x3 ConvModules shared by every level, one for classification and one for
regression, each followed by a 3x3 predictor::

    x [B, in_channels, H, W] -> cls_convs -> conv_cls -> cls_score [B, cls_out_channels, H, W]
                             -> reg_convs -> conv_reg -> bbox_pred [B, 4, H, W]

Subclasses add their own predictors (FCOS: centerness and per-level scales), choose the
training targets (``get_targets``) and the losses (``loss_by_feat``); prediction is
:class:`BaseDenseHead`'s.
"""
from abc import abstractmethod
from typing import Any, List, Sequence, Tuple, Union

import torch
from mmcv.cnn import ConvModule
from mmengine.model import constant_init
from torch import Tensor, nn

from mmdet_lite.registry import MODELS, TASK_UTILS
from mmdet_lite.utils import (ConfigType, InstanceList, MultiConfig, OptConfigType,
                              OptInstanceList)
from ..task_modules.prior_generators import MlvlPointGenerator
from .base_dense_head import BaseDenseHead

StrideType = Union[Sequence[int], Sequence[Tuple[int, int]]]


class AnchorFreeHeadArgumentError(ValueError, AssertionError):
    """An AnchorFreeHead argument is invalid (an AssertionError in mmdetection)."""


def flatten_levels(mlvl_maps: Sequence[Tensor]) -> Tensor:
    """Per-level maps [B, C, H_l, W_l] as rows [sum_l B * H_l * W_l, C], ordered level, then
    image, then position: the order of point heads' per-level targets (FCOS's)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(-1, m.size(1)) for m in mlvl_maps])


@MODELS.register_module()
class AnchorFreeHead(BaseDenseHead):
    """Point-based dense head: a cls tower and a reg tower, then 3x3 predictors.

    State dict: ``cls_convs.{i}`` and ``reg_convs.{i}`` (ConvModules: ``conv`` and, with a
    norm, ``gn`` / ``bn``), ``conv_cls`` (``cls_out_channels`` outputs) and ``conv_reg`` (4).

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        feat_channels (int): Channels of the tower convs. Defaults to 256.
        stacked_convs (int): Convs in each tower. Defaults to 4.
        strides (Sequence[int] | Sequence[tuple[int, int]]): Stride of each input level.
            Defaults to (4, 8, 16, 32, 64).
        dcn_on_last_conv (bool): Make the last conv of each tower a DCNv2. Defaults to False.
        conv_bias (bool | str): Bias of the tower convs; ``'auto'``: only without a norm
            layer. Defaults to ``'auto'``.
        loss_cls (dict): Classification loss; ``use_sigmoid`` decides between one sigmoid per
            class and a softmax over classes + background. Defaults to FocalLoss.
        loss_bbox (dict): Box loss. Defaults to IoULoss.
        bbox_coder (dict): Box coder. Defaults to DistancePointBBoxCoder.
        conv_cfg (dict, optional): Conv layer config of the towers.
        norm_cfg (dict, optional): Norm layer config of the towers.
        train_cfg (dict, optional): Training config (subclass specific).
        test_cfg (dict, optional): ``nms_pre``, ``score_thr``, ``min_bbox_size``, ``nms``,
            ``max_per_img``.
        init_cfg (dict or list[dict]): Normal(std=0.01) for every conv; ``conv_cls`` gets a
            bias giving every class a prior probability of 0.01 (focal loss start).
    """

    # Bumped from the unversioned layout whose predictors were called e.g. ``fcos_cls``;
    # see _load_from_state_dict.
    _version = 1

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 feat_channels: int = 256,
                 stacked_convs: int = 4,
                 strides: StrideType = (4, 8, 16, 32, 64),
                 dcn_on_last_conv: bool = False,
                 conv_bias: Union[bool, str] = 'auto',
                 loss_cls: ConfigType = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.25,
                     loss_weight=1.0),
                 loss_bbox: ConfigType = dict(type='IoULoss', loss_weight=1.0),
                 bbox_coder: ConfigType = dict(type='DistancePointBBoxCoder'),
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(
                         type='Normal', name='conv_cls', std=0.01, bias_prob=0.01))
                 ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not (conv_bias == 'auto' or isinstance(conv_bias, bool)):
            raise AnchorFreeHeadArgumentError(
                f"conv_bias must be 'auto' or a bool, got {conv_bias!r}")
        self.num_classes = num_classes
        self.use_sigmoid_cls = loss_cls.get('use_sigmoid', False)
        # Sigmoid scores every class independently; softmax needs a background column.
        self.cls_out_channels = num_classes if self.use_sigmoid_cls else num_classes + 1
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.stacked_convs = stacked_convs
        self.strides = strides
        self.dcn_on_last_conv = dcn_on_last_conv
        self.conv_bias = conv_bias
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.bbox_coder = TASK_UTILS.build(bbox_coder)
        self.prior_generator = MlvlPointGenerator(strides)
        # One point per location; named as in anchor heads so shared code can read it.
        self.num_base_priors = self.prior_generator.num_base_priors[0]
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.fp16_enabled = False  # kept for code that reads mmdetection's attribute
        self._init_layers()

    # ------------------------------------------------------------------ layers

    def _init_layers(self) -> None:
        """Create the two towers and the predictors."""
        self._init_cls_convs()
        self._init_reg_convs()
        self._init_predictor()

    def _tower(self) -> nn.ModuleList:
        """``stacked_convs`` 3x3 ConvModules; the last is a DCNv2 with ``dcn_on_last_conv``."""
        convs = nn.ModuleList()
        for i in range(self.stacked_convs):
            last = i == self.stacked_convs - 1
            convs.append(
                ConvModule(
                    self.in_channels if i == 0 else self.feat_channels,
                    self.feat_channels,
                    3,
                    stride=1,
                    padding=1,
                    conv_cfg=dict(type='DCNv2') if self.dcn_on_last_conv and last else
                    self.conv_cfg,
                    norm_cfg=self.norm_cfg,
                    bias=self.conv_bias))
        return convs

    def _init_cls_convs(self) -> None:
        """Create the classification tower ``cls_convs``."""
        self.cls_convs = self._tower()

    def _init_reg_convs(self) -> None:
        """Create the regression tower ``reg_convs``."""
        self.reg_convs = self._tower()

    def _init_predictor(self) -> None:
        """Create the 3x3 predictors ``conv_cls`` and ``conv_reg``."""
        self.conv_cls = nn.Conv2d(self.feat_channels, self.cls_out_channels, 3, padding=1)
        self.conv_reg = nn.Conv2d(self.feat_channels, 4, 3, padding=1)

    def init_weights(self) -> None:
        """Initialize by ``init_cfg``, then zero the offset convs of deformable tower convs.

        The Normal init of every ``Conv2d`` also reaches the ``conv_offset`` of a DCN layer;
        mmdetection's dense heads zero it afterwards, so that a deformable conv starts as a
        regular one.
        """
        super().init_weights()
        for module in self.modules():
            if hasattr(module, 'conv_offset'):
                constant_init(module.conv_offset, 0)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: List[str], unexpected_keys: List[str],
                              error_msgs: List[str]) -> None:
        """Rename the predictors of unversioned (old mmdetection) checkpoints.

        A state dict without version metadata may name the predictors after the model
        (``fcos_cls``, ``fcos_reg``, ``fcos_centerness``); the module right under the head
        whose name ends in ``cls`` / ``reg`` / ``centerness`` becomes ``conv_cls`` /
        ``conv_reg`` / ``conv_centerness``. Current names map to themselves.
        """
        if local_metadata.get('version') is None:
            renames = {}
            for key in state_dict:
                if not key.startswith(prefix):
                    continue
                parts = key[len(prefix):].split('.')
                for suffix in ('cls', 'reg', 'centerness'):
                    if parts[0].endswith(suffix):
                        renames[key] = prefix + '.'.join([f'conv_{suffix}'] + parts[1:])
                        break
            for old, new in renames.items():
                state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
        """Predict every level with the same (shared) layers.

        Args:
            x (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: ``cls_scores``, per level [B, cls_out_channels, H_l, W_l], and
            ``bbox_preds``, per level [B, 4, H_l, W_l].
        """
        cls_scores, bbox_preds = [], []
        for feat in x:
            cls_score, bbox_pred, _, _ = self.forward_single(feat)
            cls_scores.append(cls_score)
            bbox_preds.append(bbox_pred)
        return cls_scores, bbox_preds

    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Run both towers and predictors on one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].

        Returns:
            tuple: cls_score [B, cls_out_channels, H, W], bbox_pred [B, 4, H, W] and the
            tower outputs cls_feat, reg_feat [B, feat_channels, H, W] (subclasses put extra
            predictors on them, e.g. FCOS's centerness).
        """
        cls_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)  # [B, feat_channels, H, W]
        reg_feat = x
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)  # [B, feat_channels, H, W]
        return self.conv_cls(cls_feat), self.conv_reg(reg_feat), cls_feat, reg_feat

    # ------------------------------------------------------------------ training

    @abstractmethod
    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses of the head outputs against the ground truth.

        Args:
            cls_scores (list[Tensor]): Per level [B, cls_out_channels, H_l, W_l].
            bbox_preds (list[Tensor]): Per level [B, 4, H_l, W_l].
            batch_gt_instances (list[InstanceData]): ``bboxes`` [G, 4], ``labels`` [G].
            batch_img_metas (list[dict]): Meta of each image.
            batch_gt_instances_ignore (list[InstanceData | None], optional): Boxes to ignore.
        """

    @abstractmethod
    def get_targets(self, points: List[Tensor], batch_gt_instances: InstanceList) -> Any:
        """Training targets of every point of every image.

        Args:
            points (list[Tensor]): Points of each level, [N_l, 2] as (x, y).
            batch_gt_instances (list[InstanceData]): ``bboxes`` and ``labels`` per image.
        """
