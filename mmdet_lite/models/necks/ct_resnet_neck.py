"""CTResNetNeck: the CenterNet neck, upsampling the last ResNet level with deconvolutions."""
import math
from typing import Sequence, Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptMultiConfig
from .neck_arg_checks import NeckArgumentError, NeckTypeError


def fill_bilinear_upsample_kernel(weight: Tensor) -> None:
    """Write a bilinear-interpolation kernel into a transposed conv weight, in place.

    CenterNet's init: with ``f = ceil(k / 2)`` and ``c = (2f - 1 - f % 2) / (2f)``, tap
    ``(i, j)`` is ``(1 - |i / f - c|) * (1 - |j / f - c|)`` (for k = 4: the outer product of
    [0.25, 0.75, 0.75, 0.25]). As in the original code only the slices ``weight[o, 0]`` get the
    kernel; the other input-channel slices keep their values.

    Args:
        weight (Tensor): ConvTranspose2d weight [C_in, C_out / groups, k, k].
    """
    size = weight.size(2)
    f = math.ceil(size / 2)
    c = (2 * f - 1 - f % 2) / (2. * f)
    for i in range(size):
        for j in range(weight.size(3)):
            weight[0, 0, i, j] = (1 - math.fabs(i / f - c)) * (1 - math.fabs(j / f - c))
    for out in range(1, weight.size(0)):
        weight[out, 0, :, :] = weight[0, 0, :, :]


@MODELS.register_module()
class CTResNetNeck(BaseModule):
    """Neck of CenterNet (`Zhou et al. 2019 <https://arxiv.org/abs/1904.07850>`_).

    For each stage i: a 3x3 conv (DCNv2 when ``use_dcn``) to ``num_deconv_filters[i]``
    channels, then a stride-2 transposed conv of kernel ``num_deconv_kernels[i]`` (padding 1),
    each followed by BN and ReLU. With kernel 4 every stage doubles the size.

    Args:
        in_channels (int): Channels of the last backbone level.
        num_deconv_filters (tuple[int]): Output channels of each stage.
        num_deconv_kernels (tuple[int]): Transposed-conv kernel of each stage.
        use_dcn (bool): Use DCNv2 for the 3x3 convs. Defaults to True.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 in_channels: int,
                 num_deconv_filters: Tuple[int, ...],
                 num_deconv_kernels: Tuple[int, ...],
                 use_dcn: bool = True,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if len(num_deconv_filters) != len(num_deconv_kernels):
            raise NeckArgumentError(
                'CTResNetNeck: num_deconv_filters and num_deconv_kernels must have the same '
                f'length, got {len(num_deconv_filters)} and {len(num_deconv_kernels)}.')
        self.fp16_enabled = False
        self.use_dcn = use_dcn
        # mmdetection advances in_channels while building; after __init__ it holds the
        # output channels of the last stage.
        self.in_channels = in_channels
        self.deconv_layers = self._make_deconv_layer(num_deconv_filters, num_deconv_kernels)

    def _make_deconv_layer(self, num_deconv_filters: Tuple[int, ...],
                           num_deconv_kernels: Tuple[int, ...]) -> nn.Sequential:
        """Build the conv / transposed-conv pairs (``deconv_layers.{2i}`` and ``{2i+1}``)."""
        layers = []
        for channels, kernel in zip(num_deconv_filters, num_deconv_kernels):
            layers.append(
                ConvModule(self.in_channels,
                           channels,
                           3,
                           padding=1,
                           conv_cfg=dict(type='DCNv2') if self.use_dcn else None,
                           norm_cfg=dict(type='BN')))
            layers.append(
                ConvModule(channels,
                           channels,
                           kernel,
                           stride=2,
                           padding=1,
                           conv_cfg=dict(type='deconv'),
                           norm_cfg=dict(type='BN')))
            self.in_channels = channels
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """CenterNet's init: bilinear transposed convs, BN to 1 / 0, and torch's default
        init for plain 3x3 convs (the DCNv2 offset convs keep their zeros)."""
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                m.reset_parameters()
                fill_bilinear_upsample_kernel(m.weight.data)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif not self.use_dcn and isinstance(m, nn.Conv2d):
                m.reset_parameters()

    def forward(self, x: Sequence[Tensor]) -> Tuple[Tensor]:
        """Upsample the last level.

        Args:
            x (Sequence[Tensor]): Backbone levels; only ``x[-1]`` ``[B, in_channels, H, W]``
                is read.

        Returns:
            tuple[Tensor]: One map ``[B, num_deconv_filters[-1], H * 2^S, W * 2^S]`` for S
            stages of kernel 4.
        """
        if not isinstance(x, (list, tuple)):
            raise NeckTypeError('CTResNetNeck expects a list or tuple of feature maps, got '
                                f'{type(x).__name__}.')
        return (self.deconv_layers(x[-1]), )
