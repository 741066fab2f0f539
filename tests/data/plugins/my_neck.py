"""A neck defined outside mmdet_lite: the plugin example of docs/customize_models.md.

Put the folder holding this file on ``PYTHONPATH`` and name the module in the config:

    custom_imports = dict(imports=['my_neck'], allow_failed_imports=False)
    model = dict(neck=dict(_delete_=True, type='MyNeck', in_channels=[...],
                           out_channels=256, num_outs=5))
"""
from typing import List, Tuple

import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS


@MODELS.register_module()
class MyNeck(BaseModule):
    """1x1 convs bringing every backbone map to ``out_channels``, plus max-pooled extra
    levels: an FPN without the top-down path.

    Args:
        in_channels (list[int]): Channels of each backbone output.
        out_channels (int): Channels of every output map.
        num_outs (int): Output maps; the ones past the backbone's are made by stride-2
            max pooling of the last. Defaults to 5.
    """

    def __init__(self, in_channels: List[int], out_channels: int, num_outs: int = 5,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_outs < len(in_channels):
            raise ValueError(f'num_outs ({num_outs}) must be >= len(in_channels) '
                             f'({len(in_channels)})')
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(channels, out_channels, kernel_size=1) for channels in in_channels)

    def forward(self, inputs: Tuple[Tensor, ...]) -> Tuple[Tensor, ...]:
        """Map C2..C5 [B, C_i, H/2^(i+1), W/2^(i+1)] to ``num_outs`` maps with
        ``out_channels`` each, strides 4 .. 4 * 2^(num_outs - 1)."""
        outs = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))  # [B, C, h/2, w/2]
        return tuple(outs)
