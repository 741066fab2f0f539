"""NAS-FCOS neck (Wang et al., https://arxiv.org/abs/1906.04423): the searched FCOS FPN."""
from typing import List, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, caffe2_xavier_init
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig

from .merge_cells import ConcatCell
from .neck_arg_checks import NeckArgumentError, check_list, resolve_backbone_end_level

#: The searched cells, in execution order: ``c<a><b>[_k]`` concatenates features a and b
#: (indices into the growing feature list; 0-2 are the adapted C3-C5) and appends the result.
#: The two flags say which of the two inputs gets its own 3x3 conv.
CELLS = (('c22_1', True, True), ('c22_2', True, True), ('c32', True, False),
         ('c02', True, False), ('c42', True, True), ('c36', True, True), ('c61', True, True))


@MODELS.register_module()
class NASFCOS_FPN(BaseModule):
    """NAS-FCOS FPN: seven searched concat cells over the adapted C3-C5 maps.

    Used inputs (C3-C5 with the default ``start_level=1``, C2 being skipped) go through a
    1x1 conv + BN + ReLU ``adapt_convs``. The cells of :data:`CELLS` extend the feature
    list to ten entries; P3, P4 and P5 are features 9, 8 and 7, each plus feature 5,
    bilinearly resized to the size of inputs 1, 2 and 3. Extra levels are stride-2 3x3
    convs on the previous level, with a ReLU before every one but the first.

    Args:
        in_channels (list[int]): Channels of each input level (C2-C5).
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels.
        start_level (int): First used input level. Defaults to 1.
        end_level (int): Last used input level (inclusive), -1 for the last.
            Defaults to -1.
        add_extra_convs (bool): Stored for config compatibility; extra levels are
            always convs. Defaults to False.
        conv_cfg (dict, optional): Conv layer config of the cells' input convs.
        norm_cfg (dict, optional): Norm layer config of the cells' input convs.
        init_cfg (None): Must be None; weights are set by :meth:`init_weights`.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 1,
                 end_level: int = -1,
                 add_extra_convs: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        if init_cfg is not None:
            raise NeckArgumentError('NASFCOS_FPN init_cfg must be None (its init_weights '
                                    f'sets the weights), got {init_cfg!r}.')
        super().__init__(init_cfg)
        check_list(in_channels, 'in_channels', 'NASFCOS_FPN')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        self.norm_cfg = norm_cfg
        self.conv_cfg = conv_cfg
        self.backbone_end_level = resolve_backbone_end_level(
            self.num_ins, start_level, end_level, num_outs, 'NASFCOS_FPN')
        self.start_level = start_level
        self.end_level = end_level
        self.add_extra_convs = add_extra_convs

        self.adapt_convs = nn.ModuleList(
            ConvModule(self.in_channels[i], out_channels, 1, stride=1, padding=0, bias=False,
                       norm_cfg=dict(type='BN'), act_cfg=dict(type='ReLU', inplace=False))
            for i in range(start_level, self.backbone_end_level))

        self.fpn = nn.ModuleDict()
        for name, input1_conv, input2_conv in CELLS:
            self.fpn[name] = ConcatCell(
                in_channels=out_channels,
                out_channels=out_channels,
                with_out_conv=True,
                # BN + ReLU on the concatenation, then a grouped 1x1 conv that mixes each
                # channel pair (one from each input) into one channel.
                out_conv_cfg=dict(kernel_size=1, padding=0, bias=False, groups=out_channels),
                out_norm_cfg=dict(type='BN'),
                out_conv_order=('norm', 'act', 'conv'),
                with_input1_conv=input1_conv,
                with_input2_conv=input2_conv,
                input_conv_cfg=conv_cfg,
                input_norm_cfg=norm_cfg,
                upsample_mode='nearest')

        num_extra = num_outs - (self.backbone_end_level - start_level)
        self.extra_downsamples = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, stride=2, padding=1,
                       act_cfg=None if i == 0 else dict(type='ReLU', inplace=False),
                       order=('act', 'norm', 'conv'))
            for i in range(num_extra))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build P3-P5 and the extra levels.

        Args:
            inputs (Sequence[Tensor]): Input maps C2-C5, fine to coarse,
                ``[B, in_channels[i], H_i, W_i]``.

        Returns:
            tuple[Tensor]: ``num_outs`` maps ``[B, out_channels, H_j, W_j]``; the first
            three have the sizes of inputs 1-3.
        """
        feats = [conv(inputs[self.start_level + i]) for i, conv in enumerate(self.adapt_convs)]
        for name, cell in self.fpn.items():
            feats.append(cell(feats[int(name[1])], feats[int(name[2])]))

        outs = []
        for feat_idx, input_idx in ((9, 1), (8, 2), (7, 3)):
            feat = feats[feat_idx]
            merged = feat + F.interpolate(feats[5], size=feat.shape[2:], mode='bilinear',
                                          align_corners=False)
            outs.append(F.interpolate(merged, size=inputs[input_idx].shape[2:],
                                      mode='bilinear', align_corners=False))
        for conv in self.extra_downsamples:
            outs.append(conv(outs[-1]))
        return tuple(outs)

    def init_weights(self) -> None:
        """Caffe2 Xavier on the adapt and extra convs.

        The cells' convs keep ConvModule's own (Kaiming) initialisation, as in mmdetection.
        """
        super().init_weights()
        for module in list(self.adapt_convs.modules()) + list(self.extra_downsamples.modules()):
            if isinstance(module, nn.Conv2d):
                caffe2_xavier_init(module)
