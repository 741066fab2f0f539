"""RetinaHead: the classification and box subnets of RetinaNet (Lin et al., 2017).

Two parallel towers of 3x3 convs, shared across levels: one ends in a sigmoid logit per
(anchor, class), the other in four box deltas per anchor. Targets, losses (focal + L1 in the
standard config) and multi-class post-processing (score threshold, top-k, per-class
NMS) come from :class:`AnchorHead` and :class:`BaseDenseHead`.
"""
from typing import Tuple

from mmcv.cnn import ConvModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .anchor_head import AnchorHead


@MODELS.register_module()
class RetinaHead(AnchorHead):
    """RetinaNet head: ``stacked_convs`` convs per tower, then 3x3 predictors.

    With the defaults there are 9 anchors per position (3 octave scales x 3 ratios), so
    ``retina_cls`` has ``9 * num_classes`` output channels and ``retina_reg`` 36.

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        stacked_convs (int): Convs in each of the two towers. Defaults to 4.
        conv_cfg (dict, optional): Conv layer config of the towers.
        norm_cfg (dict, optional): Norm layer config of the towers (None: conv + bias).
        anchor_generator (dict): Anchor generator config; by default 3 scales per octave
            from a base scale of 4 and 3 ratios on strides 8..128 (P3-P7).
        init_cfg (dict or list[dict]): Normal(std=0.01) for every conv; ``retina_cls`` gets
            a bias giving every class a prior probability of 0.01, so that the many easy
            negatives do not swamp the focal loss at the start of training.
        **kwargs: Remaining AnchorHead arguments (``feat_channels``, ``bbox_coder``,
            ``loss_cls``, ``loss_bbox``, ``train_cfg``, ``test_cfg`` ...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 stacked_convs: int = 4,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 anchor_generator: ConfigType = dict(
                     type='AnchorGenerator',
                     octave_base_scale=4,
                     scales_per_octave=3,
                     ratios=[0.5, 1.0, 2.0],
                     strides=[8, 16, 32, 64, 128]),
                 init_cfg: OptMultiConfig = dict(
                     type='Normal',
                     layer='Conv2d',
                     std=0.01,
                     override=dict(type='Normal', name='retina_cls', std=0.01,
                                   bias_prob=0.01)),
                 **kwargs) -> None:
        if not isinstance(stacked_convs, int) or stacked_convs < 0:
            raise ValueError(f'stacked_convs must be a non-negative int, got {stacked_convs!r}')
        # Set before super().__init__, which calls _init_layers.
        self.stacked_convs = stacked_convs
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        super().__init__(num_classes, in_channels, anchor_generator=anchor_generator,
                         init_cfg=init_cfg, **kwargs)

    def _tower(self) -> nn.ModuleList:
        """``stacked_convs`` 3x3 ConvModules (conv [+ norm] + ReLU), keys ``{i}.conv.*``."""
        return nn.ModuleList(
            ConvModule(self.in_channels if i == 0 else self.feat_channels, self.feat_channels,
                       3, stride=1, padding=1, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
            for i in range(self.stacked_convs))

    def _init_layers(self) -> None:
        """Create ``cls_convs``, ``reg_convs``, ``retina_cls`` and ``retina_reg``."""
        self.cls_convs = self._tower()
        self.reg_convs = self._tower()
        tower_channels = self.feat_channels if self.stacked_convs > 0 else self.in_channels
        self.retina_cls = nn.Conv2d(tower_channels,
                                    self.num_base_priors * self.cls_out_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(tower_channels,
                                    self.num_base_priors * self.bbox_coder.encode_size, 3,
                                    padding=1)

    def forward_single(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Predict one level.

        Args:
            x (Tensor): Features [B, in_channels, H, W].

        Returns:
            tuple: cls_score [B, A * num_classes, H, W] (sigmoid logits) and bbox_pred
            [B, A * 4, H, W] (deltas from the anchors).
        """
        cls_feat = x
        for conv in self.cls_convs:
            cls_feat = conv(cls_feat)  # [B, feat_channels, H, W]
        reg_feat = x
        for conv in self.reg_convs:
            reg_feat = conv(reg_feat)  # [B, feat_channels, H, W]
        return self.retina_cls(cls_feat), self.retina_reg(reg_feat)
