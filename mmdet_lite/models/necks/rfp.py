"""RFP, the Recursive Feature Pyramid of DetectoRS (Qiao et al., https://arxiv.org/abs/2006.02334).

RFP feeds the FPN outputs back into a second (third, ...) backbone pass. That backbone
must provide ``rfp_forward(img, rfp_feats)`` taking the image and the fed-back features
and returning its stage outputs, as mmdetection's ``DetectoRS_ResNet`` does; any
registered backbone with that method works as ``rfp_backbone``.
"""
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule, ModuleList, constant_init, xavier_init
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptMultiConfig

from .fpn import FPN
from .neck_arg_checks import NeckArgumentError


class ASPP(BaseModule):
    """Atrous Spatial Pyramid Pooling as used by RFP.

    One branch per dilation: a 1x1 conv for dilation 1, else a 3x3 conv with that
    dilation; the last branch (dilation 1) reads the globally average-pooled input and is
    broadcast back. Every branch has a ReLU; outputs are concatenated.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Channels of each branch (output has ``4 * out_channels`` for
            four dilations).
        dilations (tuple[int]): Dilation per branch; the last must be 1.
            Defaults to ``(1, 3, 6, 1)``.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to
            Kaiming on Conv2d.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 dilations: Tuple[int, ...] = (1, 3, 6, 1),
                 init_cfg: OptMultiConfig = dict(type='Kaiming', layer='Conv2d')) -> None:
        super().__init__(init_cfg)
        if dilations[-1] != 1:
            raise NeckArgumentError(f'ASPP dilations must end with 1 (the global pooling '
                                    f'branch), got {tuple(dilations)}.')
        self.aspp = nn.ModuleList()
        for dilation in dilations:
            kernel_size = 3 if dilation > 1 else 1
            padding = dilation if dilation > 1 else 0
            self.aspp.append(nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size,
                                       stride=1, dilation=dilation, padding=padding,
                                       bias=True))
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, len(dilations) * C_out, H, W]."""
        pooled = self.gap(x)
        outs = []
        for i, conv in enumerate(self.aspp):
            outs.append(F.relu(conv(pooled if i == len(self.aspp) - 1 else x)))
        outs[-1] = outs[-1].expand_as(outs[-2])
        return torch.cat(outs, dim=1)


@MODELS.register_module()
class RFP(FPN):
    """Recursive FPN: unrolled ``rfp_steps`` passes of backbone + FPN.

    Step 1 is a plain FPN on the backbone features. Each further step runs ASPP on FPN
    levels 1.. (level 0 goes as is), gives them with the image to
    ``rfp_modules[k].rfp_forward``, runs the FPN on the new backbone features and blends
    with the previous step: ``w * new + (1 - w) * old``, ``w = sigmoid(rfp_weight(new))``.

    Args:
        rfp_steps (int): Number of unrolled steps (backbone passes).
        rfp_backbone (dict): Config of the backbone of steps 2.. (built ``rfp_steps - 1``
            times); it needs an ``rfp_forward(img, rfp_feats)`` method.
        aspp_out_channels (int): Channels of each ASPP branch.
        aspp_dilations (tuple[int]): ASPP dilations. Defaults to ``(1, 3, 6, 1)``.
        init_cfg (None): Must be None; weights are set by :meth:`init_weights`.
        **kwargs: :class:`FPN` arguments (``in_channels``, ``out_channels``, ``num_outs``...).
    """

    def __init__(self,
                 rfp_steps: int,
                 rfp_backbone: ConfigType,
                 aspp_out_channels: int,
                 aspp_dilations: Tuple[int, ...] = (1, 3, 6, 1),
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        if init_cfg is not None:
            raise NeckArgumentError('RFP init_cfg must be None (its init_weights sets the '
                                    f'weights), got {init_cfg!r}.')
        super().__init__(init_cfg=init_cfg, **kwargs)
        self.rfp_steps = rfp_steps
        self.rfp_modules = ModuleList(MODELS.build(rfp_backbone) for _ in range(1, rfp_steps))
        self.rfp_aspp = ASPP(self.out_channels, aspp_out_channels, aspp_dilations)
        self.rfp_weight = nn.Conv2d(self.out_channels, 1, kernel_size=1, stride=1, padding=0,
                                    bias=True)

    def init_weights(self) -> None:
        """Xavier FPN convs, each RFP backbone's own init, zero ``rfp_weight``.

        BaseModule's recursive init is skipped on purpose: it would re-initialise the RFP
        backbones' layers that their pretrained checkpoints do not cover. (ASPP keeps its
        construction-time init, as in mmdetection.)
        """
        for convs in (self.lateral_convs, self.fpn_convs):
            for m in convs.modules():
                if isinstance(m, nn.Conv2d):
                    xavier_init(m, distribution='uniform')
        for module in self.rfp_modules:
            module.init_weights()
        constant_init(self.rfp_weight, 0)

    def forward(self, inputs: Sequence[Tensor]) -> Union[Tuple[Tensor, ...], List[Tensor]]:
        """Run the recursive pyramid.

        Args:
            inputs (Sequence[Tensor]): The image ``[B, 3, H, W]`` followed by one backbone
                map per ``in_channels`` entry.

        Returns:
            tuple[Tensor] | list[Tensor]: ``num_outs`` maps ``[B, out_channels, H_j, W_j]``;
            a tuple (FPN's) with ``rfp_steps == 1``, else a list, as in mmdetection.
        """
        inputs = list(inputs)
        if len(inputs) != self.num_ins + 1:
            raise NeckArgumentError(f'RFP expects the image plus {self.num_ins} backbone maps '
                                    f'({self.num_ins + 1} tensors), got {len(inputs)}.')
        img = inputs.pop(0)
        x = super().forward(tuple(inputs))
        for backbone in self.rfp_modules:
            rfp_feats = [x[0]] + [self.rfp_aspp(x[i]) for i in range(1, len(x))]
            x_new = super().forward(backbone.rfp_forward(img, rfp_feats))
            blended = []
            for new, old in zip(x_new, x):
                weight = torch.sigmoid(self.rfp_weight(new))  # [B, 1, H, W]
                blended.append(weight * new + (1 - weight) * old)
            x = blended
        return x
