"""RTMDetInsSepBNHead: the RTMDet-Ins head of the COCO configs, with per-level layers.

Every level has its own towers, BatchNorms and 1x1 predictors; with ``share_conv`` the
classification tower's conv weights are level 0's on every level while each level keeps its own
BN statistics. Distances drop the ``Scale``: ``relu(rtm_reg(x)) * stride``. Training, the
dynamic mask convs and post-processing are :class:`RTMDetInsHead`'s.

mmdetection keeps this class in ``rtmdet_ins_head.py``; the package makes it importable
from there too.
"""
import torch.nn.functional as F
from mmcv.cnn import is_norm
from mmengine.model import bias_init_with_prob, constant_init, normal_init
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType
from .rtmdet_ins_head import RTMDetInsHead


@MODELS.register_module()
class RTMDetInsSepBNHead(RTMDetInsHead):
    """RTMDet-Ins head with per-level towers and BatchNorms (the COCO configs' head).

    Every level has its own ``cls_convs``, ``kernel_convs`` and 1x1 predictors; with
    ``share_conv`` the classification convs (not their norms) are shared across levels.
    Distances are ``relu(rtm_reg(x)) * stride`` (no ``Scale``); ``rtm_reg`` starts at bias 1.

    mmdetection quirk, kept for its checkpoints: ``reg_convs[l]`` *is* ``cls_convs[l]``, so
    the box branch runs the classification tower (the reg convs it builds are dropped) and the
    state_dict lists the same tensors under both names.

    Args:
        num_classes (int): Number of object classes.
        in_channels (int): Channels of each input level.
        share_conv (bool): Share the tower convs across levels. Defaults to True.
        with_objectness (bool): Add the objectness branch. Defaults to False.
        norm_cfg (dict): Norm of the towers. Defaults to BN(requires_grad=True).
        act_cfg (dict): Activation of the towers. Defaults to SiLU(inplace=True).
        pred_kernel_size (int): Kernel size of the predictors. Defaults to 1.
        **kwargs: :class:`RTMDetInsHead`'s.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 share_conv: bool = True,
                 with_objectness: bool = False,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 act_cfg: ConfigType = dict(type='SiLU', inplace=True),
                 pred_kernel_size: int = 1,
                 **kwargs) -> None:
        self.share_conv = share_conv
        super().__init__(num_classes, in_channels, norm_cfg=norm_cfg, act_cfg=act_cfg,
                         pred_kernel_size=pred_kernel_size, with_objectness=with_objectness,
                         **kwargs)

    def _init_layers(self) -> None:
        """Per-level towers and predictors, then ``mask_head``."""
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.kernel_convs = nn.ModuleList()
        self.rtm_cls = nn.ModuleList()
        self.rtm_reg = nn.ModuleList()
        self.rtm_kernel = nn.ModuleList()
        self.rtm_obj = nn.ModuleList()
        self._init_dynamic_params()
        for _ in self.prior_generator.strides:
            # Built in mmdetection's order (cls, reg, kernel at each depth), so that a seed
            # gives the same construction-time weights.
            cls_convs, kernel_convs = nn.ModuleList(), nn.ModuleList()
            for i in range(self.stacked_convs):
                channels = self.in_channels if i == 0 else self.feat_channels
                cls_convs.append(self._tower_conv(channels))
                self._tower_conv(channels)  # the dropped reg conv (see the class docstring)
                kernel_convs.append(self._tower_conv(channels))
            self.cls_convs.append(cls_convs)
            self.reg_convs.append(cls_convs)
            self.kernel_convs.append(kernel_convs)
            self.rtm_cls.append(self._pred_conv(self.num_base_priors * self.cls_out_channels))
            self.rtm_reg.append(self._pred_conv(self.num_base_priors * 4))
            self.rtm_kernel.append(self._pred_conv(self.num_gen_params))
            if self.with_objectness:
                self.rtm_obj.append(self._pred_conv(1))
        if self.share_conv:
            for level_convs in self.cls_convs:
                for i, conv_module in enumerate(level_convs):
                    conv_module.conv = self.cls_convs[0][i].conv
        self.mask_head = self._mask_feat_module()

    def init_weights(self) -> None:
        """Normal(0, 0.01) convs, unit norms; class (and objectness) biases for a 0.01 prior,
        box biases 1; ``rtm_kernel`` keeps Normal(0, 0.01) with zero bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                normal_init(m, mean=0, std=0.01)
            if is_norm(m):
                constant_init(m, 1)
        bias_cls = bias_init_with_prob(0.01)
        for rtm_cls, rtm_reg in zip(self.rtm_cls, self.rtm_reg):
            normal_init(rtm_cls, std=0.01, bias=bias_cls)
            normal_init(rtm_reg, std=0.01, bias=1)
        if self.with_objectness:
            for rtm_obj in self.rtm_obj:
                normal_init(rtm_obj, std=0.01, bias=bias_cls)

    def _level_layers(self, level: int) -> tuple:
        return (self.cls_convs[level], self.reg_convs[level], self.kernel_convs[level],
                self.rtm_cls[level], self.rtm_reg[level], self.rtm_kernel[level],
                self.rtm_obj[level] if self.with_objectness else None)

    def _distances(self, reg_out: Tensor, level: int, stride: int) -> Tensor:
        return F.relu(reg_out) * stride
