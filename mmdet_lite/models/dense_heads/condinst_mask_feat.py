"""CondInst's mask-feature branch (Tian et al., 2020: "Conditional Convolutions for Instance
Segmentation"): the neck levels P3-P5 fused into one low-channel map at P3's stride, which
every instance's dynamic convs then read (:class:`CondInstMaskHead`, ``condinst_mask_head.py``)::

    P3, P4, P5 -> 3x3 conv each -> aligned_bilinear to P3's grid -> sum
    -> num_stacked_convs 3x3 convs -> 1x1 conv_pred -> mask_feat [B, out_channels, H/8, W/8]

:func:`~mmdet_lite.models.utils.aligned_bilinear` is CondInst's integer upsampling, also used
on the mask logits.
"""
from typing import Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, kaiming_init
from torch import Tensor, nn

from mmdet_lite.utils import MultiConfig, OptConfigType
from ..utils import aligned_bilinear


class CondInstArgumentError(ValueError, AssertionError):
    """Bad input to a CondInst module (an AssertionError in mmdetection)."""


class MaskFeatModule(BaseModule):
    """The mask-feature branch of CondInst: levels ``start_level..end_level`` each get a 3x3
    conv, are upsampled (:func:`aligned_bilinear`) to the first one's grid and summed, then
    ``num_stacked_convs`` 3x3 convs and a 1x1 ``conv_pred`` to ``out_channels``.

    Not registered (as in mmdetection): :class:`CondInstMaskHead` builds it from its
    ``mask_feature_head`` config. (Not RTMDet-Ins's class of the same name, which fuses the
    levels by concatenation.)

    State dict: ``convs_all_levels.{j}.conv{start_level + j}`` (ConvModule without a conv
    bias), ``conv_branch.{i}`` (ConvModules without a conv bias) and ``conv_pred``.

    Args:
        in_channels (int): Channels of the neck levels.
        feat_channels (int): Hidden channels.
        start_level (int): First neck level used.
        end_level (int): Last neck level used (included).
        out_channels (int): Channels of the output mask features.
        mask_stride (int): Stride of the output (that of ``start_level``). Defaults to 4.
        num_stacked_convs (int): 3x3 convs after the sum. Defaults to 4.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict, optional): Norm layer config. Defaults to None.
        init_cfg (dict or list[dict]): Defaults to Normal(std=0.01) for every Conv2d.
        **kwargs: Ignored, as in mmdetection.
    """

    def __init__(self,
                 in_channels: int,
                 feat_channels: int,
                 start_level: int,
                 end_level: int,
                 out_channels: int,
                 mask_stride: int = 4,
                 num_stacked_convs: int = 4,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 init_cfg: MultiConfig = [dict(type='Normal', layer='Conv2d', std=0.01)],
                 **kwargs) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 0 <= start_level <= end_level:
            raise CondInstArgumentError(
                f'expected 0 <= start_level <= end_level, got start_level={start_level}, '
                f'end_level={end_level}')
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.start_level = start_level
        self.end_level = end_level
        self.mask_stride = mask_stride
        self.num_stacked_convs = num_stacked_convs
        self.out_channels = out_channels
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self._init_layers()

    def _init_layers(self) -> None:
        """``convs_all_levels``, ``conv_branch`` and ``conv_pred``."""
        self.convs_all_levels = nn.ModuleList()
        for level in range(self.start_level, self.end_level + 1):
            # A Sequential of one named conv: the checkpoint key is ...{j}.conv{level}.
            level_convs = nn.Sequential()
            level_convs.add_module(
                f'conv{level}',
                ConvModule(self.in_channels, self.feat_channels, 3, padding=1,
                           conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, inplace=False,
                           bias=False))
            self.convs_all_levels.append(level_convs)
        self.conv_branch = nn.Sequential(*[
            ConvModule(self.feat_channels, self.feat_channels, 3, padding=1,
                       conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, bias=False)
            for _ in range(self.num_stacked_convs)
        ])
        self.conv_pred = nn.Conv2d(self.feat_channels, self.out_channels, 1, stride=1)

    def init_weights(self) -> None:
        """init_cfg's Normal(std=0.01), then Kaiming-uniform (a=1) for ``conv_pred``.

        mmdetection also passes ``convs_all_levels`` and ``conv_branch`` to mmengine's
        ``kaiming_init``, which only touches a module's own ``weight`` / ``bias``: on those
        containers it does nothing. The same calls are kept, so the same layers are touched.
        """
        super().init_weights()
        kaiming_init(self.convs_all_levels, a=1, distribution='uniform')
        kaiming_init(self.conv_branch, a=1, distribution='uniform')
        kaiming_init(self.conv_pred, a=1, distribution='uniform')

    def forward(self, x: Tuple[Tensor, ...]) -> Tensor:
        """Fuse the levels into the mask features.

        Args:
            x (tuple[Tensor]): Neck levels, each [B, in_channels, H_l, W_l].

        Returns:
            Tensor: [B, out_channels, H_s, W_s] at the grid of ``start_level``.
        """
        inputs = x[self.start_level:self.end_level + 1]
        if len(inputs) != self.end_level - self.start_level + 1:
            raise CondInstArgumentError(
                f'MaskFeatModule uses levels {self.start_level}..{self.end_level} but got '
                f'{len(x)} levels')
        fused = self.convs_all_levels[0](inputs[0])  # [B, feat_channels, H_s, W_s]
        target_h, target_w = fused.shape[-2:]
        for level_convs, feat in zip(self.convs_all_levels[1:], inputs[1:]):
            feat = level_convs(feat)  # [B, feat_channels, H_l, W_l]
            factor_h, factor_w = target_h // feat.shape[-2], target_w // feat.shape[-1]
            if factor_h != factor_w:
                raise CondInstArgumentError(
                    f'levels must be downsampled equally in height and width, got factors '
                    f'{factor_h} and {factor_w}')
            fused = fused + aligned_bilinear(feat, factor_h)
        return self.conv_pred(self.conv_branch(fused))  # [B, out_channels, H_s, W_s]
