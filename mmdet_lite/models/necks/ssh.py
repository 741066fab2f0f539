"""SSH: the context modules of the Single Stage Headless face detector, one per level."""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .neck_arg_checks import NeckArgumentError


def _check_out_channels(out_channels: int, owner: str) -> None:
    if out_channels % 4:
        raise NeckArgumentError(f'{owner}: out_channels must be divisible by 4, got '
                                f'{out_channels}.')


class SSHContextModule(BaseModule):
    """The 5x5 and 7x7 receptive fields of SSH, as stacks of 3x3 convs sharing a first conv.

    ``conv5x5_1`` (with ReLU) feeds both ``conv5x5_2`` (-> the 5x5 branch) and ``conv7x7_2``
    (ReLU) -> ``conv7x7_3`` (-> the 7x7 branch); every conv maps to ``out_channels // 4``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels of the whole SSH module (divisible by 4).
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_out_channels(out_channels, 'SSHContextModule')
        self.in_channels = in_channels
        self.out_channels = out_channels
        quarter = out_channels // 4
        cfgs = dict(stride=1, padding=1, conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.conv5x5_1 = ConvModule(in_channels, quarter, 3, **cfgs)
        self.conv5x5_2 = ConvModule(quarter, quarter, 3, act_cfg=None, **cfgs)
        self.conv7x7_2 = ConvModule(quarter, quarter, 3, **cfgs)
        self.conv7x7_3 = ConvModule(quarter, quarter, 3, act_cfg=None, **cfgs)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Compute both context branches.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            tuple[Tensor, Tensor]: The 5x5 and 7x7 branches, each
            ``[B, out_channels // 4, H, W]``, without activation.
        """
        shared = self.conv5x5_1(x)
        conv5x5 = self.conv5x5_2(shared)
        conv7x7 = self.conv7x7_3(self.conv7x7_2(shared))
        return conv5x5, conv7x7


class SSHDetModule(BaseModule):
    """SSH detection module: ReLU of [3x3 branch (out/2), 5x5 branch (out/4), 7x7 (out/4)].

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (divisible by 4).
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        _check_out_channels(out_channels, 'SSHDetModule')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv3x3 = ConvModule(in_channels,
                                  out_channels // 2,
                                  3,
                                  stride=1,
                                  padding=1,
                                  conv_cfg=conv_cfg,
                                  norm_cfg=norm_cfg,
                                  act_cfg=None)
        self.context_module = SSHContextModule(in_channels=in_channels,
                                               out_channels=out_channels,
                                               conv_cfg=conv_cfg,
                                               norm_cfg=norm_cfg)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the module.

        Args:
            x (Tensor): [B, in_channels, H, W].

        Returns:
            Tensor: [B, out_channels, H, W], non-negative.
        """
        conv5x5, conv7x7 = self.context_module(x)
        return F.relu(torch.cat([self.conv3x3(x), conv5x5, conv7x7], dim=1))


@MODELS.register_module()
class SSH(BaseModule):
    """SSH neck (`Najibi et al. 2017 <https://arxiv.org/abs/1708.03979>`_): an independent
    :class:`SSHDetModule` (``ssh_module{i}``) on each level.

    Args:
        num_scales (int): Number of levels.
        in_channels (list[int]): Input channels per level.
        out_channels (list[int]): Output channels per level (each divisible by 4).
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Xavier
            uniform on every Conv2d.
    """

    def __init__(
        self,
        num_scales: int,
        in_channels: List[int],
        out_channels: List[int],
        conv_cfg: OptConfigType = None,
        norm_cfg: ConfigType = dict(type='BN'),
        init_cfg: OptMultiConfig = dict(type='Xavier', layer='Conv2d', distribution='uniform')
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not num_scales == len(in_channels) == len(out_channels):
            raise NeckArgumentError(
                f'SSH: num_scales ({num_scales}), len(in_channels) ({len(in_channels)}) and '
                f'len(out_channels) ({len(out_channels)}) must be equal.')
        self.num_scales = num_scales
        self.in_channels = in_channels
        self.out_channels = out_channels
        for idx, (in_c, out_c) in enumerate(zip(in_channels, out_channels)):
            self.add_module(
                f'ssh_module{idx}',
                SSHDetModule(in_channels=in_c,
                             out_channels=out_c,
                             conv_cfg=conv_cfg,
                             norm_cfg=norm_cfg))

    def forward(self, inputs: Sequence[Tensor]) -> tuple:
        """Apply each level's module.

        Args:
            inputs (Sequence[Tensor]): ``num_scales`` maps ``[B, in_channels[i], H_i, W_i]``.

        Returns:
            tuple[Tensor]: ``num_scales`` maps ``[B, out_channels[i], H_i, W_i]``.
        """
        if len(inputs) != self.num_scales:
            raise NeckArgumentError(f'SSH expects {self.num_scales} input levels, got '
                                    f'{len(inputs)}.')
        return tuple(getattr(self, f'ssh_module{idx}')(x) for idx, x in enumerate(inputs))
