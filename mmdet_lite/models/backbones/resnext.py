"""ResNeXt backbone (`Xie et al. 2017 <https://arxiv.org/abs/1611.05431>`_).

A ResNet whose Bottleneck 3x3 conv is grouped and wider: ``groups`` paths of ``base_width``
channels per 64 base channels. ResNeXt-101 32x4d is ``ResNeXt(depth=101, groups=32,
base_width=4)``. State_dict keys equal mmdetection's (and ResNet's).
"""
import math

from mmdet_lite.models.layers.res_layer import Bottleneck as _ResNetBottleneck
from mmdet_lite.models.layers.res_layer import ResLayer
from mmdet_lite.registry import MODELS

from .resnet import ResNet

__all__ = ['ResNeXt', 'Bottleneck']


class Bottleneck(_ResNetBottleneck):
    """ResNeXt Bottleneck: a ResNet Bottleneck with a grouped, wider 3x3 conv.

    Args:
        inplanes (int): Input channels.
        planes (int): Base channels; the block outputs ``planes * 4``.
        groups (int): Groups (cardinality) of the 3x3 conv. Defaults to 1 (plain ResNet).
        base_width (int): Channels per group for ``base_channels`` planes. Defaults to 4.
        base_channels (int): Planes of the first stage, the reference for ``base_width``.
            Defaults to 64.
        **kwargs: Any other ResNet Bottleneck argument (stride, dilation, dcn, plugins...).
    """

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 groups: int = 1,
                 base_width: int = 4,
                 base_channels: int = 64,
                 **kwargs) -> None:
        if groups == 1:
            width = planes
        else:
            # e.g. 32x4d, stage 1 (planes=64): 32 groups * 4 channels = 128.
            width = math.floor(planes * (base_width / base_channels)) * groups
        super().__init__(inplanes, planes, groups=groups, width=width, **kwargs)


@MODELS.register_module()
class ResNeXt(ResNet):
    """ResNeXt backbone; depth 50, 101 or 152.

    Args:
        groups (int): Groups (cardinality) of every Bottleneck 3x3 conv. Defaults to 1.
        base_width (int): Channels per group in the first stage (doubling each stage).
            Defaults to 4.
        **kwargs: Any :class:`ResNet` argument (depth, out_indices, frozen_stages, dcn...).
    """

    arch_settings = {
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self, groups: int = 1, base_width: int = 4, **kwargs) -> None:
        # make_res_layer, called from ResNet.__init__, needs these.
        self.groups = groups
        self.base_width = base_width
        super().__init__(**kwargs)

    def make_res_layer(self, **kwargs) -> ResLayer:
        """Pack all blocks of a stage into a ``ResLayer`` of grouped Bottlenecks."""
        return ResLayer(groups=self.groups, base_width=self.base_width,
                        base_channels=self.base_channels, **kwargs)
