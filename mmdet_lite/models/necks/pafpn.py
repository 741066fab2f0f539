"""PAFPN: FPN plus a bottom-up path (PANet, Liu et al., https://arxiv.org/abs/1803.01534)."""
from typing import List, Sequence, Tuple, Union

import torch.nn as nn
from mmcv.cnn import ConvModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig

from .fpn import FPN


@MODELS.register_module()
class PAFPN(FPN):
    """Path Aggregation FPN: after FPN's top-down path, a bottom-up path.

    The FPN outputs of the used levels ``N_i`` are re-aggregated from fine to coarse:
    ``N_{i+1} += downsample_convs[i](N_i)`` (stride-2 3x3), then every level but the
    finest goes through ``pafpn_convs`` (3x3). Extra levels follow FPN's rules, with
    ``'on_output'`` reading the last PAFPN output.

    Args:
        in_channels (list[int]): Channels of each backbone level.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels, including the extra ones.
        start_level (int): First used backbone level. Defaults to 0.
        end_level (int): Last used backbone level (inclusive), -1 for the last.
            Defaults to -1.
        add_extra_convs (bool | str): As in :class:`FPN`. Defaults to False.
        relu_before_extra_convs (bool): As in :class:`FPN`. Defaults to False.
        no_norm_on_lateral (bool): As in :class:`FPN`. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict, optional): Norm layer config. Defaults to None.
        act_cfg (dict, optional): Activation config. Defaults to None.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to
            Xavier uniform on every Conv2d.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False,
                 no_norm_on_lateral: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 act_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__(in_channels, out_channels, num_outs, start_level, end_level,
                         add_extra_convs, relu_before_extra_convs, no_norm_on_lateral,
                         conv_cfg, norm_cfg, act_cfg, init_cfg=init_cfg)
        conv_kwargs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                           inplace=False)
        self.downsample_convs = nn.ModuleList()
        self.pafpn_convs = nn.ModuleList()
        for _ in range(self.start_level + 1, self.backbone_end_level):
            self.downsample_convs.append(
                ConvModule(out_channels, out_channels, 3, stride=2, padding=1, **conv_kwargs))
            self.pafpn_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1, **conv_kwargs))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build the pyramid.

        Args:
            inputs (Sequence[Tensor]): One map per backbone level, fine to coarse,
                ``[B, in_channels[i], H_i, W_i]``.

        Returns:
            tuple[Tensor]: ``num_outs`` maps ``[B, out_channels, H_j, W_j]``, fine to coarse.
        """
        self._check_num_inputs(inputs)
        laterals = self._top_down(self._laterals(inputs))
        inter = [self.fpn_convs[i](lateral) for i, lateral in enumerate(laterals)]
        # Bottom-up: a short path from fine localisation to the coarse levels. Each sum
        # reads the already updated finer level.
        for i in range(len(inter) - 1):
            inter[i + 1] = inter[i + 1] + self.downsample_convs[i](inter[i])
        outs = [inter[0]] + [conv(x) for conv, x in zip(self.pafpn_convs, inter[1:])]
        return tuple(self._add_extra_levels(inputs, laterals, outs))
