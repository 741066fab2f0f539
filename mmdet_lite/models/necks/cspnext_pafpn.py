"""CSPNeXtPAFPN: the RTMDet neck, a PAFPN of CSP layers with CSPNeXt blocks."""
import math
from typing import Sequence

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .csp_pafpn_base import CSPPAFPNBase


@MODELS.register_module()
class CSPNeXtPAFPN(CSPPAFPNBase):
    """Path aggregation network of RTMDet (`Lyu et al. 2022
    <https://arxiv.org/abs/2212.07784>`_).

    CSP layers with CSPNeXt blocks (3x3 conv + 5x5 depthwise separable conv, no residual) and
    3x3 output convs; see :class:`~mmdet_lite.models.necks.csp_pafpn_base.CSPPAFPNBase` for
    the data flow.

    Args:
        in_channels (Sequence[int]): Channels of each input level, finest first.
        out_channels (int): Channels of every output level.
        num_csp_blocks (int): Blocks per CSP layer. Defaults to 3.
        use_depthwise (bool): Depthwise separable downsample convs and blocks.
            Defaults to False.
        expand_ratio (float): CSP layers' branch width ratio. Defaults to 0.5.
        upsample_cfg (dict): ``nn.Upsample`` arguments.
            Defaults to ``dict(scale_factor=2, mode='nearest')``.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to Swish (RTMDet configs set SiLU).
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to
            Kaiming uniform (a=sqrt(5), fan_in, leaky_relu) on every Conv2d.
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_csp_blocks: int = 3,
                 use_depthwise: bool = False,
                 expand_ratio: float = 0.5,
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
                         use_depthwise=use_depthwise, expand_ratio=expand_ratio,
                         use_cspnext_block=True, out_kernel_size=3, upsample_cfg=upsample_cfg,
                         conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                         init_cfg=init_cfg, depthwise_out_convs=use_depthwise)
