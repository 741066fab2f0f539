"""RTMDetSepBNHead: RTMDet's head with one set of layers per level, convs shared across levels.

Every level has its own towers and prediction convs; with ``share_conv`` the towers' conv
weights are the level-0 ones while each level keeps its own BN statistics (the levels' feature
statistics differ). Training and post-processing are :class:`RTMDetHead`'s.
"""
from typing import Tuple

from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule, is_norm
from mmengine.model import bias_init_with_prob, constant_init, normal_init
from torch import nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType
from ..layers.transformer.utils import inverse_sigmoid
from ..utils import sigmoid_geometric_mean
from .rtmdet_head import RTMDetHead


@MODELS.register_module()
class RTMDetSepBNHead(RTMDetHead):
    """RTMDetHead with separate layers (and BN) per level and optionally shared convs.

    State dict keys: ``cls_convs.{level}.{i}.conv.weight`` / ``.bn.*`` (likewise
    ``reg_convs``), ``rtm_cls.{level}.*``, ``rtm_reg.{level}.*`` and, with objectness,
    ``rtm_obj.{level}.*``. Shared conv weights are still listed under every level (a
    ``state_dict`` does not de-duplicate), as in mmdetection's checkpoints. There is no
    ``scales``: the distances are ``rtm_reg * stride`` (``exp(rtm_reg) * stride`` with
    ``exp_on_reg``).

    Args:
        num_classes (int): Number of object classes (background excluded).
        in_channels (int): Channels of each input feature map.
        share_conv (bool): Use level 0's tower convs on every level (BNs stay per level).
            Defaults to True.
        use_depthwise (bool): Depthwise separable tower convs. Defaults to False. As in
            mmdetection it cannot be combined with ``share_conv`` (AttributeError).
        norm_cfg (dict): Norm of the tower convs. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation of the tower convs. Defaults to ``dict(type='SiLU')``.
        pred_kernel_size (int): Kernel size of the prediction convs. Defaults to 1.
        exp_on_reg (bool): Exponentiate the regression output (positive distances).
            Defaults to False.
        **kwargs: :class:`RTMDetHead` arguments (``with_objectness`` defaults to True there;
            RTMDet configs set False), ``stacked_convs``, ``feat_channels``, ...
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 share_conv: bool = True,
                 use_depthwise: bool = False,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: ConfigType = dict(type='SiLU'),
                 pred_kernel_size: int = 1,
                 exp_on_reg: bool = False,
                 **kwargs) -> None:
        self.share_conv = share_conv
        self.exp_on_reg = exp_on_reg
        self.use_depthwise = use_depthwise
        super().__init__(num_classes, in_channels, norm_cfg=norm_cfg, act_cfg=act_cfg,
                         pred_kernel_size=pred_kernel_size, **kwargs)

    def _init_layers(self) -> None:
        """Create per-level ``cls_convs``, ``reg_convs``, ``rtm_cls``, ``rtm_reg`` [and
        ``rtm_obj``], then share the tower convs when ``share_conv``."""
        conv_type = DepthwiseSeparableConvModule if self.use_depthwise else ConvModule
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.rtm_cls = nn.ModuleList()
        self.rtm_reg = nn.ModuleList()
        if self.with_objectness:
            self.rtm_obj = nn.ModuleList()
        for _ in self.prior_generator.strides:
            cls_convs, reg_convs = nn.ModuleList(), nn.ModuleList()
            for i in range(self.stacked_convs):
                channels = self.in_channels if i == 0 else self.feat_channels
                cls_convs.append(self._tower_conv(channels, conv_type))
                reg_convs.append(self._tower_conv(channels, conv_type))
            self.cls_convs.append(cls_convs)
            self.reg_convs.append(reg_convs)
            self.rtm_cls.append(self._pred_conv(self.num_base_priors * self.cls_out_channels))
            self.rtm_reg.append(self._pred_conv(self.num_base_priors * 4))
            if self.with_objectness:
                self.rtm_obj.append(self._pred_conv(1))

        if self.share_conv:
            if self.use_depthwise:
                # mmdetection fails here too: a depthwise separable module has no ``conv``.
                raise AttributeError('RTMDetSepBNHead: share_conv=True needs ConvModule tower '
                                     'convs; use_depthwise=True has no single conv to share')
            # Point every level's ConvModule at level 0's conv; its norm stays its own.
            for level in range(1, len(self.prior_generator.strides)):
                for i in range(self.stacked_convs):
                    self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
                    self.reg_convs[level][i].conv = self.reg_convs[0][i].conv

    def init_weights(self) -> None:
        """Normal(std=0.01) convs, unit norms, and a 0.01 prior probability in the class (and
        objectness) biases of every level."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, mean=0, std=0.01)
            if is_norm(m):
                constant_init(m, 1)
        bias_cls = bias_init_with_prob(0.01)
        for rtm_cls, rtm_reg in zip(self.rtm_cls, self.rtm_reg):
            normal_init(rtm_cls, std=0.01, bias=bias_cls)
            normal_init(rtm_reg, std=0.01)
        if self.with_objectness:
            for rtm_obj in self.rtm_obj:
                normal_init(rtm_obj, std=0.01, bias=bias_cls)

    def forward(self, feats: Tuple) -> Tuple[tuple, tuple]:
        """Predict every level with its own layers.

        Args:
            feats (tuple[Tensor]): Multi-level features, each [B, in_channels, H_l, W_l].

        Returns:
            tuple: ``cls_scores``, per level [B, num_classes, H_l, W_l] (logits), and
            ``bbox_preds``, per level [B, 4, H_l, W_l]: distances (left, top, right, bottom)
            in input-image pixels, ``rtm_reg * stride_l`` (``exp(rtm_reg) * stride_l`` with
            ``exp_on_reg``).
        """
        cls_scores, bbox_preds = [], []
        for level, (x, stride) in enumerate(zip(feats, self.prior_generator.strides)):
            cls_feat = x
            for conv in self.cls_convs[level]:
                cls_feat = conv(cls_feat)  # [B, feat_channels, H, W]
            cls_score = self.rtm_cls[level](cls_feat)  # [B, num_classes, H, W]
            reg_feat = x
            for conv in self.reg_convs[level]:
                reg_feat = conv(reg_feat)  # [B, feat_channels, H, W]
            if self.with_objectness:
                objectness = self.rtm_obj[level](reg_feat)  # [B, 1, H, W]
                cls_score = inverse_sigmoid(sigmoid_geometric_mean(cls_score, objectness))
            reg_out = self.rtm_reg[level](reg_feat)  # [B, 4, H, W]
            if self.exp_on_reg:
                reg_out = reg_out.exp()
            cls_scores.append(cls_score)
            bbox_preds.append(reg_out * stride[0])
        return tuple(cls_scores), tuple(bbox_preds)
