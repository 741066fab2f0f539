"""NAS-FPN (Ghiasi et al., https://arxiv.org/abs/1904.07392): the searched P3-P7 pyramid."""
from typing import List, Sequence, Tuple

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import MultiConfig, OptConfigType

from .merge_cells import GlobalPoolingCell, SumCell
from .neck_arg_checks import NeckArgumentError, check_list, resolve_backbone_end_level


@MODELS.register_module()
class NASFPN(BaseModule):
    """NAS-FPN: ``stack_times`` repeats of the searched merge-cell graph over P3-P7.

    Used inputs get 1x1 lateral convs (P3-P5 for RetinaNet); the missing levels up to
    ``num_outs`` come from a 1x1 conv plus 2x2 max-pool on the level below (P6, P7). Each
    stage then rewires the five levels with sum and global-pooling cells. The graph is
    written for exactly five levels, so the forward pass needs ``num_outs`` levels = 5.

    Args:
        in_channels (list[int]): Channels of each input level.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels (5 for the P3-P7 graph).
        stack_times (int): Number of stacked NAS-FPN stages.
        start_level (int): First used input level. Defaults to 0.
        end_level (int): Last used input level (inclusive), -1 for the last.
            Defaults to -1.
        norm_cfg (dict, optional): Norm layer config of every conv. Defaults to None.
        init_cfg (dict or list[dict]): Initialization config. Defaults to Caffe2 Xavier
            on every Conv2d.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 stack_times: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 norm_cfg: OptConfigType = None,
                 init_cfg: MultiConfig = dict(type='Caffe2Xavier', layer='Conv2d')) -> None:
        super().__init__(init_cfg=init_cfg)
        check_list(in_channels, 'in_channels', 'NASFPN')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        self.stack_times = stack_times
        self.norm_cfg = norm_cfg
        self.backbone_end_level = resolve_backbone_end_level(
            self.num_ins, start_level, end_level, num_outs, 'NASFPN')
        self.start_level = start_level
        self.end_level = end_level

        self.lateral_convs = nn.ModuleList(
            ConvModule(self.in_channels[i], out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
            for i in range(start_level, self.backbone_end_level))

        num_extra = num_outs - (self.backbone_end_level - start_level)
        self.extra_downsamples = nn.ModuleList(
            nn.Sequential(
                ConvModule(out_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None),
                nn.MaxPool2d(2, 2)) for _ in range(num_extra))

        self.fpn_stages = ModuleList(self._build_stage(out_channels, norm_cfg)
                                     for _ in range(stack_times))

    @staticmethod
    def _build_stage(channels: int, norm_cfg: OptConfigType) -> nn.ModuleDict:
        """One searched stage; keys name the cell as ``<op>_<inputs>_<output level>``."""

        def sum_cell() -> SumCell:
            return SumCell(in_channels=channels, out_channels=channels, out_norm_cfg=norm_cfg)

        stage = nn.ModuleDict()
        stage['gp_64_4'] = GlobalPoolingCell(in_channels=channels, out_channels=channels,
                                             out_norm_cfg=norm_cfg)
        stage['sum_44_4'] = sum_cell()
        stage['sum_43_3'] = sum_cell()
        stage['sum_34_4'] = sum_cell()
        # The two attention cells feeding a later sum have no conv of their own.
        stage['gp_43_5'] = GlobalPoolingCell(with_out_conv=False)
        stage['sum_55_5'] = sum_cell()
        stage['gp_54_7'] = GlobalPoolingCell(with_out_conv=False)
        stage['sum_77_7'] = sum_cell()
        stage['gp_75_6'] = GlobalPoolingCell(in_channels=channels, out_channels=channels,
                                             out_norm_cfg=norm_cfg)
        return stage

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build P3-P7.

        Args:
            inputs (Sequence[Tensor]): Input maps, fine to coarse,
                ``[B, in_channels[i], H_i, W_i]``.

        Returns:
            tuple[Tensor]: Five maps ``[B, out_channels, H_j, W_j]`` (P3 to P7).
        """
        feats = [conv(inputs[self.start_level + i]) for i, conv in enumerate(self.lateral_convs)]
        for downsample in self.extra_downsamples:
            feats.append(downsample(feats[-1]))  # [B, C, floor(H/2), floor(W/2)]
        if len(feats) != 5:
            raise NeckArgumentError(f'NASFPN builds P3-P7 and needs 5 levels, got '
                                    f'{len(feats)} (num_outs={self.num_outs}).')
        p3, p4, p5, p6, p7 = feats

        for stage in self.fpn_stages:
            p4_1 = stage['gp_64_4'](p6, p4, out_size=p4.shape[-2:])
            p4_2 = stage['sum_44_4'](p4_1, p4, out_size=p4.shape[-2:])
            p3 = stage['sum_43_3'](p4_2, p3, out_size=p3.shape[-2:])
            p4 = stage['sum_34_4'](p3, p4_2, out_size=p4.shape[-2:])
            p5_att = stage['gp_43_5'](p4, p3, out_size=p5.shape[-2:])
            p5 = stage['sum_55_5'](p5, p5_att, out_size=p5.shape[-2:])
            p7_att = stage['gp_54_7'](p5, p4_2, out_size=p7.shape[-2:])
            p7 = stage['sum_77_7'](p7, p7_att, out_size=p7.shape[-2:])
            p6 = stage['gp_75_6'](p7, p5, out_size=p6.shape[-2:])
        return p3, p4, p5, p6, p7
