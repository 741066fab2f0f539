"""Spatial pyramid pooling bottleneck (YOLOv3-SPP), the last stage of CSPDarknet (YOLOX) and
CSPNeXt (RTMDet).

mmdetection 3.3 defines it in ``mmdet/models/backbones/csp_darknet.py``; it lives here, with
the other shared layers, and the backbones import it from ``mmdet_lite.models.layers``.
mmdetection 3.3 has no SPPF (sequential-pooling) variant; mmyolo's ``SPPFBottleneck`` is
not part of it. The module is mmdetection's (same arguments, keys, repr and outputs); only
its forward computes the pyramid faster when it can (see ``SPPBottleneck.forward``).
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig


class SPPBottleneck(BaseModule):
    """1x1 conv to half the channels, parallel stride-1 max pools, concat, 1x1 conv.

    Each pool of kernel k has padding k // 2, so (for odd k) every branch keeps the input's
    size and the concatenation is ``[x, pool_k1(x), pool_k2(x), ...]`` along channels.

    Args:
        in_channels (int): Input channels C_in; the pooled branches have C_in // 2 each.
        out_channels (int): Output channels.
        kernel_sizes (Sequence[int]): Kernel sizes of the max pools. Defaults to (5, 9, 13).
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_sizes: Sequence[int] = (5, 9, 13),
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: ConfigType = dict(type='Swish'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        mid_channels = in_channels // 2
        cfgs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv1 = ConvModule(in_channels, mid_channels, 1, stride=1, **cfgs)
        self.poolings = nn.ModuleList(
            nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvModule(mid_channels * (len(kernel_sizes) + 1), out_channels, 1, **cfgs)
        self._chain_kernels = _chained_kernels(kernel_sizes)

    def forward(self, x: Tensor) -> Tensor:
        """Pool at several scales and fuse.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            Tensor: [B, out_channels, H, W].
        """
        x = self.conv1(x)  # [B, C_in // 2, H, W]
        # As mmdetection: the concatenation runs with autocast off.
        with torch.autocast(device_type=x.device.type, enabled=False):
            if (self._chain_kernels is not None and self._poolings_are_default()
                    and not (torch.is_grad_enabled() and x.requires_grad)):
                # A stride-1 max pool of kernel a then one of kernel b is exactly one of
                # kernel a + b - 1 (-inf padding), so 5, 9, 13 are three 5x5 pools in a
                # row: the same values, at a fraction of the cost of the large windows.
                # Inference only: where a window holds tied maxima the chained backward
                # routes the gradient to another of them than mmdetection's pools do.
                pooled, branches = x, []
                for k in self._chain_kernels:
                    pooled = F.max_pool2d(pooled, k, stride=1, padding=k // 2)
                    branches.append(pooled)
            else:
                branches = [pool(x) for pool in self.poolings]
            x = torch.cat([x] + branches, dim=1)  # [B, C_in // 2 * (1 + #kernels), H, W]
        return self.conv2(x)

    def _poolings_are_default(self) -> bool:
        # The chained path stands in for the poolings built in __init__ only; a user who
        # replaced them (other module, stride, dilation) gets their own modules run.
        return all(
            type(pool) is nn.MaxPool2d and pool.stride in (1, (1, 1)) and
            pool.dilation in (1, (1, 1)) and not pool.ceil_mode and
            pool.padding == pool.kernel_size // 2 for pool in self.poolings)


def _chained_kernels(kernel_sizes: Sequence[int]) -> Optional[List[int]]:
    """Kernels of successive stride-1 max pools whose outputs equal pools of
    ``kernel_sizes``, or None when there are none (even or non-increasing sizes).

    Pooling with kernel ``k_prev`` then ``k - k_prev + 1`` covers a window of ``k``; for
    (5, 9, 13) that is (5, 5, 5).
    """
    chain, previous = [], 1
    for k in kernel_sizes:
        if not isinstance(k, int) or k % 2 == 0 or k <= previous:
            return None
        chain.append(k - previous + 1)
        previous = k
    return chain
