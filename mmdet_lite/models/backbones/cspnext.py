"""CSPNeXt, the RTMDet backbone (mmdetection 3.3's ``cspnext.py``).

The stage layout of CSPDarknet (stride-2 conv, SPP in the last stage, CSP layer) with a
three-conv stem instead of Focus, CSPNeXt blocks (3x3 conv + 5x5 depthwise separable conv),
shallower middle stages (6 blocks instead of 9) and channel attention in every CSP layer.
"""
from typing import Sequence

from mmcv.cnn import ConvModule
from torch import nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from .csp_darknet import CSP_CONV_INIT, CSPBackboneBase

__all__ = ['CSPNeXt']


@MODELS.register_module()
class CSPNeXt(CSPBackboneBase):
    """CSPNeXt backbone of RTMDet (`Lyu et al. 2022 <https://arxiv.org/abs/2212.07784>`_).

    Layers: ``stem`` (three 3x3 convs, the first with stride 2) and ``stage1``..``stage4``
    (P5) or ``stage5`` (P6); see :class:`~.csp_darknet.CSPBackboneBase` for the stages,
    freezing and the forward.

    Args:
        arch (str): 'P5' or 'P6'. Defaults to 'P5'.
        deepen_factor (float): Blocks per CSP layer = ``max(round(n * deepen_factor), 1)``.
            Defaults to 1.0.
        widen_factor (float): Channels = ``int(c * widen_factor)``. Defaults to 1.0.
        out_indices (Sequence[int]): Layers to output (0 is the stem). Defaults to (2, 3, 4).
        frozen_stages (int): Freeze layers 0..frozen_stages; -1 freezes none. Defaults to -1.
        use_depthwise (bool): Depthwise separable stride-2 convs and block 3x3 convs.
            Defaults to False.
        expand_ratio (float): CSP layers' branch width ratio. Defaults to 0.5.
        arch_ovewrite (list, optional): Stage rows replacing the arch's (mmdetection's
            spelling). Defaults to None.
        spp_kernel_sizes (Sequence[int]): SPP pool kernels. Defaults to (5, 9, 13).
        channel_attention (bool): Channel attention in each CSP layer. Defaults to True.
        conv_cfg (dict, optional): Conv layer config of the stage convs, SPP and CSP layers;
            the stem convs ignore it, as in mmdetection. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to BN(momentum=0.03, eps=0.001).
        act_cfg (dict): Activation config. Defaults to SiLU.
        norm_eval (bool): Keep BN layers in eval mode (frozen running stats) while training.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Kaiming
            uniform (a=sqrt(5), fan_in, leaky_relu) on every Conv2d; RTMDet configs load an
            ImageNet checkpoint with ``dict(type='Pretrained', prefix='backbone.', ...)``.

    Example:
        >>> model = CSPNeXt(deepen_factor=0.167, widen_factor=0.375)  # RTMDet-tiny
        >>> # [1, 3, 64, 64] -> [1, 96, 8, 8], [1, 192, 4, 4], [1, 384, 2, 2]
    """
    arch_settings = {
        'P5': [[64, 128, 3, True, False], [128, 256, 6, True, False],
               [256, 512, 6, True, False], [512, 1024, 3, False, True]],
        'P6': [[64, 128, 3, True, False], [128, 256, 6, True, False],
               [256, 512, 6, True, False], [512, 768, 3, True, False],
               [768, 1024, 3, False, True]]
    }

    def __init__(self,
                 arch: str = 'P5',
                 deepen_factor: float = 1.0,
                 widen_factor: float = 1.0,
                 out_indices: Sequence[int] = (2, 3, 4),
                 frozen_stages: int = -1,
                 use_depthwise: bool = False,
                 expand_ratio: float = 0.5,
                 arch_ovewrite: list = None,
                 spp_kernel_sizes: Sequence[int] = (5, 9, 13),
                 channel_attention: bool = True,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', momentum=0.03, eps=0.001),
                 act_cfg: ConfigType = dict(type='SiLU'),
                 norm_eval: bool = False,
                 init_cfg: OptMultiConfig = CSP_CONV_INIT) -> None:
        super().__init__(init_cfg=init_cfg)
        arch_setting = self._setup(arch, arch_ovewrite, out_indices, frozen_stages,
                                   use_depthwise, norm_eval)
        stem_channels = int(arch_setting[0][0] * widen_factor)
        half = int(arch_setting[0][0] * widen_factor // 2)
        stem_cfgs = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)  # no conv_cfg, as mmdetection
        self.stem = nn.Sequential(
            ConvModule(3, half, 3, stride=2, padding=1, **stem_cfgs),  # [B, c/2, H/2, W/2]
            ConvModule(half, half, 3, stride=1, padding=1, **stem_cfgs),
            ConvModule(half, stem_channels, 3, stride=1, padding=1, **stem_cfgs))
        self._add_stages(
            arch_setting, deepen_factor, widen_factor, spp_kernel_sizes,
            csp_kwargs=dict(use_cspnext_block=True, expand_ratio=expand_ratio,
                            channel_attention=channel_attention),
            cfgs=dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg))
