"""YOLOXPAFPN: the YOLOX neck, a PAFPN of CSP layers with Darknet bottlenecks."""
import math
from typing import Sequence

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .csp_pafpn_base import CSPPAFPNBase


@MODELS.register_module()
class YOLOXPAFPN(CSPPAFPNBase):
    """Path aggregation network of YOLOX (`Ge et al. 2021 <https://arxiv.org/abs/2107.08430>`_).

    CSP layers with Darknet bottlenecks (no residual, expand ratio 0.5) and 1x1 output convs;
    see :class:`~mmdet_lite.models.necks.csp_pafpn_base.CSPPAFPNBase` for the data flow.

    Args:
        in_channels (Sequence[int]): Channels of each input level, finest first.
        out_channels (int): Channels of every output level.
        num_csp_blocks (int): Bottlenecks per CSP layer. Defaults to 3.
        use_depthwise (bool): Depthwise separable downsample convs and bottlenecks.
            Defaults to False.
        upsample_cfg (dict): ``nn.Upsample`` arguments.
            Defaults to ``dict(scale_factor=2, mode='nearest')``.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to
            Kaiming uniform (a=sqrt(5), fan_in, leaky_relu) on every Conv2d, i.e. torch's
            default conv init.

    Example:
        >>> neck = YOLOXPAFPN([64, 128, 256], 64, num_csp_blocks=1)
        >>> # inputs [1, 64, 32, 32], [1, 128, 16, 16], [1, 256, 8, 8]
        >>> # outputs [1, 64, 32, 32], [1, 64, 16, 16], [1, 64, 8, 8]
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_csp_blocks: int = 3,
                 use_depthwise: bool = False,
                 upsample_cfg: ConfigType = dict(scale_factor=2, mode='nearest'),
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: ConfigType = dict(type='Swish'),
                 init_cfg: OptMultiConfig = dict(
                     type='Kaiming',
                     layer='Conv2d',
                     a=math.sqrt(5),
                     distribution='uniform',
                     mode='fan_in',
                     nonlinearity='leaky_relu')) -> None:
        super().__init__(in_channels, out_channels, num_csp_blocks=num_csp_blocks,
                         use_depthwise=use_depthwise, expand_ratio=0.5,
                         use_cspnext_block=False, out_kernel_size=1, upsample_cfg=upsample_cfg,
                         conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                         init_cfg=init_cfg)
