"""Channel attention from a global average: SELayer, DyReLU (DyHead) and ChannelAttention
(CSPNeXt / RTMDet), under mmdetection 3.3's names, arguments and parameter names.

All three pool the map to one value per channel, turn it into per-channel coefficients with
1x1 convs, and rescale (or, for DyReLU, re-activate) the input with them.
"""
from typing import Sequence, Tuple, Union

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.utils import OptConfigType, OptMultiConfig


class AttentionArgumentError(ValueError, AssertionError):
    """An attention-layer argument mmdetection rejects with an assert."""


def _two_act_cfgs(act_cfg: Union[dict, Sequence[dict]], owner: str) -> Tuple[dict, dict]:
    """One config for both activations, or a pair: (after conv1, after conv2)."""
    if isinstance(act_cfg, dict):
        return act_cfg, act_cfg
    if len(act_cfg) != 2 or not all(isinstance(cfg, dict) for cfg in act_cfg):
        raise AttentionArgumentError(
            f'{owner}: act_cfg must be a dict or a pair of dicts, got {act_cfg!r}.')
    return act_cfg[0], act_cfg[1]


class SELayer(BaseModule):
    """Squeeze-and-Excitation: ``x * act2(conv2(act1(conv1(avgpool(x)))))``.

    Args:
        channels (int): Input and output channels C.
        ratio (int): Squeeze ratio; the hidden layer has ``int(C / ratio)`` channels.
            Defaults to 16.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        act_cfg (dict | Sequence[dict]): Activation after each conv; one dict is used for
            both. Defaults to (ReLU, Sigmoid).
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 ratio: int = 16,
                 conv_cfg: OptConfigType = None,
                 act_cfg: Union[dict, Sequence[dict]] = (dict(type='ReLU'),
                                                         dict(type='Sigmoid')),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        act1, act2 = _two_act_cfgs(act_cfg, 'SELayer')
        hidden = int(channels / ratio)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, hidden, 1, stride=1, conv_cfg=conv_cfg, act_cfg=act1)
        self.conv2 = ConvModule(hidden, channels, 1, stride=1, conv_cfg=conv_cfg, act_cfg=act2)

    def forward(self, x: Tensor) -> Tensor:
        """Rescale each channel.

        Args:
            x (Tensor): [B, C, H, W].

        Returns:
            Tensor: [B, C, H, W].
        """
        weights = self.conv2(self.conv1(self.global_avgpool(x)))  # [B, C, 1, 1]
        return x * weights


class DyReLU(BaseModule):
    """Dynamic ReLU (`Chen et al. 2020 <https://arxiv.org/abs/2003.10027>`_), the task-aware
    attention of DyHead: ``max(a1 * x + b1, a2 * x + b2)`` with per-channel, per-image
    coefficients predicted from the pooled input.

    ``conv2`` predicts 4 * C values in [0, 1] (HSigmoid); after subtracting 0.5 they map to
    ``a1 in [0, 2]`` (centred on the identity slope 1), ``b1 in [-0.5, 0.5]``,
    ``a2 in [-1, 1]`` and ``b2 in [-0.5, 0.5]``.

    Args:
        channels (int): Input and output channels C.
        ratio (int): Squeeze ratio; the hidden layer has ``int(C / ratio)`` channels.
            Defaults to 4.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        act_cfg (dict | Sequence[dict]): Activation after each conv; one dict is used for
            both. Defaults to (ReLU, HSigmoid(bias=3.0, divisor=6.0)), DyHead's official
            choice.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 ratio: int = 4,
                 conv_cfg: OptConfigType = None,
                 act_cfg: Union[dict, Sequence[dict]] = (dict(type='ReLU'),
                                                         dict(type='HSigmoid', bias=3.0,
                                                              divisor=6.0)),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        act1, act2 = _two_act_cfgs(act_cfg, 'DyReLU')
        self.channels = channels
        self.expansion = 4  # a1, b1, a2, b2
        hidden = int(channels / ratio)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, hidden, 1, stride=1, conv_cfg=conv_cfg, act_cfg=act1)
        self.conv2 = ConvModule(hidden, channels * self.expansion, 1, stride=1,
                                conv_cfg=conv_cfg, act_cfg=act2)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the two-piece dynamic activation.

        Args:
            x (Tensor): [B, C, H, W].

        Returns:
            Tensor: [B, C, H, W].
        """
        coeffs = self.conv2(self.conv1(self.global_avgpool(x))) - 0.5  # [B, 4C, 1, 1]
        a1, b1, a2, b2 = torch.split(coeffs, self.channels, dim=1)
        a1 = a1 * 2.0 + 1.0
        a2 = a2 * 2.0
        return torch.max(x * a1 + b1, x * a2 + b2)


class ChannelAttention(BaseModule):
    """CSPNeXt's channel attention: ``x * hardsigmoid(fc(avgpool(x)))``.

    Args:
        channels (int): Input and output channels C.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self, channels: int, init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Rescale each channel.

        Args:
            x (Tensor): [B, C, H, W].

        Returns:
            Tensor: [B, C, H, W].
        """
        # mmdetection pools with autocast off, so an fp16 mean never comes from an
        # autocast-chosen lower precision than the input's.
        with torch.autocast(device_type=x.device.type, enabled=False):
            pooled = self.global_avgpool(x)  # [B, C, 1, 1]
        return x * self.act(self.fc(pooled))
