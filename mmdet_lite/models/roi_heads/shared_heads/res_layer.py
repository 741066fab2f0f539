"""The C4 shared head: the last ResNet stage, run on every RoI's pooled features.

Faster R-CNN "C4" stops the backbone after stage 3 (stride 16, 1024 channels), pools each
RoI to 14x14 there, and runs stage 4 (``layer4``: stride 2, 2048 channels) per RoI, so the
box head sees [K, 2048, 7, 7] features.
"""
import warnings
from typing import Optional

from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig
from ...backbones import ResNet
from ...layers import ResLayer as _ResStage


class SharedHeadArgumentError(ValueError, AssertionError):
    """Conflicting ``init_cfg`` and ``pretrained`` (mmdetection asserts on it)."""


@MODELS.register_module()
class ResLayer(BaseModule):
    """One ResNet stage as a RoI shared head; its module is ``layer{stage + 1}``.

    ::

        RoI feats [K, 64 * 2**(stage-1) * 4, S, S] -> layer{stage+1}
            -> [K, 64 * 2**stage * 4, S / stride, S / stride]
        (ResNet-50, stage 3: [K, 1024, 14, 14] -> layer4 -> [K, 2048, 7, 7])

    Args:
        depth (int): ResNet depth (18, 34, 50, 101, 152), for the block type and count.
        stage (int): Index of the stage to build (0-based; 3 is ``layer4``).
        stride (int): Stride of the stage's first block. Defaults to 2.
        dilation (int): Dilation of the 3x3 convs. Defaults to 1.
        style (str): 'pytorch' (stride in the 3x3 conv) or 'caffe' (in the first 1x1).
        norm_cfg (dict): Norm layer config. Defaults to BN with trainable parameters.
        norm_eval (bool): Keep the BN layers in eval mode while training (frozen
            statistics). Defaults to True.
        with_cp (bool): Activation checkpointing in every block.
        dcn (dict, optional): Deformable conv config of the blocks.
        pretrained (str, optional): Deprecated: ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)``.
        init_cfg (dict | list[dict], optional): Initialization config; None gives Kaiming
            convs and unit norms.
    """

    def __init__(self,
                 depth: int,
                 stage: int = 3,
                 stride: int = 2,
                 dilation: int = 1,
                 style: str = 'pytorch',
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 with_cp: bool = False,
                 dcn: OptConfigType = None,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.norm_eval = norm_eval
        self.norm_cfg = norm_cfg
        self.stage = stage
        self.fp16_enabled = False
        if depth not in ResNet.arch_settings:
            raise KeyError(f'Invalid depth {depth} for the ResLayer shared head; expected '
                           f'one of {sorted(ResNet.arch_settings)}.')
        block, stage_blocks = ResNet.arch_settings[depth]
        planes = 64 * 2**stage
        inplanes = 64 * 2**(stage - 1) * block.expansion  # the previous stage's output
        res_layer = _ResStage(block, inplanes, planes, stage_blocks[stage], stride=stride,
                              dilation=dilation, style=style, with_cp=with_cp,
                              norm_cfg=norm_cfg, dcn=dcn)
        self.add_module(f'layer{stage + 1}', res_layer)

        if init_cfg and pretrained:
            raise SharedHeadArgumentError('init_cfg and pretrained cannot be specified at '
                                          'the same time')
        if isinstance(pretrained, str):
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          '"init_cfg" instead')
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif pretrained is None:
            if init_cfg is None:
                self.init_cfg = [
                    dict(type='Kaiming', layer='Conv2d'),
                    dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
                ]
        else:
            raise TypeError(f'pretrained must be a str or None, got {type(pretrained)}')

    def forward(self, x: Tensor) -> Tensor:
        """Run the stage.

        Args:
            x (Tensor): RoI features [K, inplanes, S, S].

        Returns:
            Tensor: [K, planes * expansion, S / stride, S / stride].
        """
        return getattr(self, f'layer{self.stage + 1}')(x)

    def train(self, mode: bool = True) -> 'ResLayer':
        """Switch train/eval mode, keeping the BN layers in eval with ``norm_eval``."""
        super().train(mode)
        if self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
