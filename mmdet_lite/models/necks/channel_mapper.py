"""ChannelMapper: bring every backbone level to the same channel count (DETR-style necks)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig

from .neck_arg_checks import NeckArgumentError, check_list


@MODELS.register_module()
class ChannelMapper(BaseModule):
    """Map each input level to ``out_channels`` with one conv, without top-down mixing.

    Levels are independent: input i goes through ``convs[i]`` only. When ``num_outs``
    exceeds the number of inputs, extra levels are made by stride-2 3x3 convs, the first
    reading the last *input* map, the others the previous extra level.

    Args:
        in_channels (list[int]): Channels of each input level.
        out_channels (int): Channels of every output level.
        kernel_size (int): Kernel size of the per-level convs (padded to keep the size).
            Defaults to 3.
        conv_cfg (dict, optional): Conv layer config for ConvModule. Defaults to None.
        norm_cfg (dict, optional): Norm layer config for ConvModule. Defaults to None.
        act_cfg (dict, optional): Activation config for ConvModule.
            Defaults to ``dict(type='ReLU')``.
        bias (bool | str): Conv bias; ``'auto'`` means a bias only without norm layer.
            Defaults to ``'auto'``.
        num_outs (int, optional): Number of output levels; None (or anything up to the
            number of inputs) means one per input, more adds extra levels.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Xavier
            uniform on every Conv2d.

    Example:
        >>> # DETR: one C5 map [B, 2048, H/32, W/32] -> [B, 256, H/32, W/32]
        >>> neck = ChannelMapper([2048], 256, kernel_size=1, act_cfg=None, num_outs=1)
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 kernel_size: int = 3,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 act_cfg: OptConfigType = dict(type='ReLU'),
                 bias: Union[bool, str] = 'auto',
                 num_outs: Optional[int] = None,
                 init_cfg: OptMultiConfig = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        check_list(in_channels, 'in_channels', 'ChannelMapper')
        in_channels = list(in_channels)
        if num_outs is None:
            num_outs = len(in_channels)
        self.in_channels = in_channels
        self.num_outs = num_outs
        conv_kwargs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, bias=bias)

        self.convs = nn.ModuleList(
            ConvModule(c, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                       **conv_kwargs) for c in in_channels)

        # None (not an empty list) when unused, so the module tree and state_dict keys
        # match mmdet's exactly.
        self.extra_convs = None
        if num_outs > len(in_channels):
            self.extra_convs = nn.ModuleList()
            for i in range(num_outs - len(in_channels)):
                extra_in = in_channels[-1] if i == 0 else out_channels
                self.extra_convs.append(
                    ConvModule(extra_in, out_channels, 3, stride=2, padding=1,
                               **conv_kwargs))

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Map channels level by level.

        Args:
            inputs (Sequence[Tensor]): One map per input level,
                ``[B, in_channels[i], H_i, W_i]``.

        Returns:
            tuple[Tensor]: ``max(num_outs, len(in_channels))`` maps
            ``[B, out_channels, H_i, W_i]``; the extra
            levels halve (rounding up) the size of the level before.
        """
        if len(inputs) != len(self.convs):
            raise NeckArgumentError(f'ChannelMapper expects {len(self.convs)} input maps (one '
                                    f'per in_channels entry {self.in_channels}), got '
                                    f'{len(inputs)}.')
        outs = [conv(x) for conv, x in zip(self.convs, inputs)]  # [B, C_out, H_i, W_i]
        if self.extra_convs is not None:
            # The first extra level reads the raw last input, as in mmdet.
            prev = inputs[-1]
            for conv in self.extra_convs:
                prev = conv(prev)  # [B, C_out, ceil(H/2), ceil(W/2)]
                outs.append(prev)
        return tuple(outs)
