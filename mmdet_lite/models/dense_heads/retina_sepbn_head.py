"""RetinaSepBNHead: RetinaNet's head with the tower convs shared across levels but one set of
norm layers per level (used by the EfficientNet RetinaNet).

In :class:`RetinaHead` every level runs through the very same tower modules, norms included.
Pyramid levels have different feature statistics, so here each level gets its own
ConvModules whose ``conv`` is level 0's (one set of weights) while the norm layer stays the
level's own. The 3x3 predictors ``retina_cls`` / ``retina_reg`` are shared by all levels as
in RetinaHead. Targets, losses and post-processing come from :class:`AnchorHead`.
"""
from typing import List, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import bias_init_with_prob, normal_init
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig
from .anchor_head import AnchorHead


class RetinaSepBNHeadArgumentError(ValueError, AssertionError):
    """A RetinaSepBNHead argument mmdetection asserts on (also an AssertionError)."""


@MODELS.register_module()
class RetinaSepBNHead(AnchorHead):
    """RetinaNet head with level-shared tower convs and per-level norms.

    State dict keys: ``cls_convs.{level}.{i}.conv.*`` and ``.{norm}.*`` (likewise
    ``reg_convs``) for every level < ``num_ins``, then ``retina_cls.*`` and ``retina_reg.*``.
    The shared conv weights are listed under every level (a ``state_dict`` does not
    de-duplicate), as in mmdetection's checkpoints; loading one writes the same tensor once
    per level, so the last level's copy is what every level ends up with.

    Args:
        num_classes (int): Number of object classes (background excluded).
        num_ins (int): Number of input levels, i.e. of per-level tower copies.
        in_channels (int): Channels of each input feature map.
        stacked_convs (int): Convs in each of the two towers. Defaults to 4.
        conv_cfg (dict, optional): Conv layer config of the towers.
        norm_cfg (dict, optional): Norm layer config of the towers (None: conv + bias and
            nothing per level, i.e. RetinaHead's towers).
        init_cfg (None): Must be None: :meth:`init_weights` sets the initialization.
        **kwargs: Remaining :class:`AnchorHead` arguments (``feat_channels``,
            ``anchor_generator`` (AnchorHead's default, not RetinaHead's), ``bbox_coder``,
            ``loss_cls``, ``loss_bbox``, ``train_cfg``, ``test_cfg`` ...).
    """

    def __init__(self,
                 num_classes: int,
                 num_ins: int,
                 in_channels: int,
                 stacked_convs: int = 4,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        if init_cfg is not None:
            raise RetinaSepBNHeadArgumentError(
                'RetinaSepBNHead: init_cfg must be None (init_weights initializes the shared '
                f'convs and the predictors itself), got {init_cfg!r}')
        # Set before super().__init__, which calls _init_layers.
        self.stacked_convs = stacked_convs
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.num_ins = num_ins
        # init_cfg=None replaces AnchorHead's Normal(Conv2d) default, as in mmdetection.
        super().__init__(num_classes=num_classes, in_channels=in_channels, init_cfg=None,
                         **kwargs)

    def _tower_conv(self, in_channels: int) -> ConvModule:
        """One 3x3 conv [+ norm] + ReLU with ``feat_channels`` outputs."""
        return ConvModule(in_channels, self.feat_channels, 3, stride=1, padding=1,
                          conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)

    def _init_layers(self) -> None:
        """Create per-level ``cls_convs`` / ``reg_convs``, tie their convs to level 0's, and
        create the shared ``retina_cls`` / ``retina_reg``."""
        # Never called in forward; kept because mmdetection defines it (it shows in the repr).
        self.relu = nn.ReLU(inplace=True)
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        for _ in range(self.num_ins):
            cls_convs, reg_convs = nn.ModuleList(), nn.ModuleList()
            # cls and reg convs alternate, as in mmdetection, so that a seed gives the same
            # default (pre-init_weights) weights.
            for i in range(self.stacked_convs):
                channels = self.in_channels if i == 0 else self.feat_channels
                cls_convs.append(self._tower_conv(channels))
                reg_convs.append(self._tower_conv(channels))
            self.cls_convs.append(cls_convs)
            self.reg_convs.append(reg_convs)
        # Every level's ConvModule runs level 0's conv; its norm layer stays its own.
        for level in range(1, self.num_ins):
            for i in range(self.stacked_convs):
                self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
                self.reg_convs[level][i].conv = self.reg_convs[0][i].conv
        # Input channels are feat_channels even with stacked_convs=0, as in mmdetection.
        self.retina_cls = nn.Conv2d(self.feat_channels,
                                    self.num_base_priors * self.cls_out_channels, 3, padding=1)
        self.retina_reg = nn.Conv2d(self.feat_channels, self.num_base_priors * 4, 3, padding=1)

    def init_weights(self) -> None:
        """Normal(std=0.01) for the shared tower convs and the predictors, and a 0.01 prior
        probability in the class bias (so the many easy negatives do not swamp the focal
        loss at the start). The norm layers are left as they are."""
        # As in mmdetection: with init_cfg None the base class only calls init_weights of
        # direct children, and the ConvModules sit inside ModuleLists, so their own init
        # (Kaiming conv, unit norm) never runs; the norms keep their construction values.
        super().init_weights()
        for conv_module in self.cls_convs[0]:
            normal_init(conv_module.conv, std=0.01)
        for conv_module in self.reg_convs[0]:
            normal_init(conv_module.conv, std=0.01)
        normal_init(self.retina_cls, std=0.01, bias=bias_init_with_prob(0.01))
        normal_init(self.retina_reg, std=0.01)

    def forward(self, feats: Tuple[Tensor, ...]) -> Tuple[List[Tensor], List[Tensor]]:
        """Run level ``l`` through tower copy ``l`` and the shared predictors.

        Args:
            feats (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l]
                (at most ``num_ins`` of them).

        Returns:
            tuple: ``cls_scores``, per level [B, A * cls_out_channels, H_l, W_l] (sigmoid
            logits with a focal loss), and ``bbox_preds``, per level [B, A * 4, H_l, W_l]
            (deltas from the anchors).
        """
        cls_scores, bbox_preds = [], []
        for level, x in enumerate(feats):
            cls_feat = x
            for conv in self.cls_convs[level]:
                cls_feat = conv(cls_feat)  # [B, feat_channels, H, W]
            reg_feat = x
            for conv in self.reg_convs[level]:
                reg_feat = conv(reg_feat)  # [B, feat_channels, H, W]
            cls_scores.append(self.retina_cls(cls_feat))  # [B, A * num_classes, H, W]
            bbox_preds.append(self.retina_reg(reg_feat))  # [B, A * 4, H, W]
        return cls_scores, bbox_preds
