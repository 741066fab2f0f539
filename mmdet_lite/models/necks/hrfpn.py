"""HRFPN, the pyramid of HRNet detectors (Sun et al., https://arxiv.org/abs/1904.04514)."""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig

from .neck_arg_checks import NeckArgumentError, check_list


@MODELS.register_module()
class HRFPN(BaseModule):
    """High-resolution pyramid: concat all branches at the finest size, then pool down.

    Branch i (stride ``2**i`` relative to branch 0) is bilinearly upsampled by ``2**i``,
    all branches are concatenated and reduced by a 1x1 conv to ``out_channels``; output
    level i is that map pooled by ``2**i`` (average or max) and passed through a 3x3 conv.

    Args:
        in_channels (list[int]): Channels of each HRNet branch.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels. Defaults to 5.
        pooling_type (str): ``'MAX'`` for max-pooling, anything else average.
            Defaults to ``'AVG'``.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict, optional): Stored only: mmdetection's HRFPN convs have no norm.
        with_cp (bool): Gradient checkpointing of the convs (saves memory when training).
            Defaults to False.
        stride (int): Stride of the 3x3 output convs. Defaults to 1.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Caffe2
            Xavier on every Conv2d.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int = 5,
                 pooling_type: str = 'AVG',
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 with_cp: bool = False,
                 stride: int = 1,
                 init_cfg: OptMultiConfig = dict(type='Caffe2Xavier', layer='Conv2d')) -> None:
        super().__init__(init_cfg)
        check_list(in_channels, 'in_channels', 'HRFPN')
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        self.with_cp = with_cp
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg

        self.reduction_conv = ConvModule(sum(self.in_channels), out_channels, kernel_size=1,
                                         conv_cfg=conv_cfg, act_cfg=None)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, kernel_size=3, padding=1, stride=stride,
                       conv_cfg=conv_cfg, act_cfg=None) for _ in range(num_outs))
        self.pooling = F.max_pool2d if pooling_type == 'MAX' else F.avg_pool2d

    def _run(self, module: nn.Module, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build the pyramid.

        Args:
            inputs (Sequence[Tensor]): One map per branch, branch i of size
                ``[B, in_channels[i], H / 2**i, W / 2**i]``.

        Returns:
            tuple[Tensor]: ``num_outs`` maps, level i ``[B, out_channels, H / 2**i, W / 2**i]``
            (divided further by ``stride``).
        """
        if len(inputs) != self.num_ins:
            raise NeckArgumentError(f'HRFPN expects {self.num_ins} input maps (one per '
                                    f'in_channels entry), got {len(inputs)}.')
        branches = [inputs[0]] + [
            F.interpolate(x, scale_factor=2**i, mode='bilinear')
            for i, x in enumerate(inputs) if i > 0]
        fused = self._run(self.reduction_conv, torch.cat(branches, dim=1))
        levels = [fused] + [self.pooling(fused, kernel_size=2**i, stride=2**i)
                            for i in range(1, self.num_outs)]
        return tuple(self._run(conv, x) for conv, x in zip(self.fpn_convs, levels))
