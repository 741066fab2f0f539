"""BFP: the Balanced Feature Pyramid of Libra R-CNN (https://arxiv.org/abs/1904.02701)."""
from typing import Optional, Sequence, Tuple

import torch.nn.functional as F
from mmcv.cnn import ConvModule, NonLocal2d
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig

from .neck_arg_checks import NeckArgumentError

REFINE_TYPES = (None, 'conv', 'non_local')


@MODELS.register_module()
class BFP(BaseModule):
    """Balanced Feature Pyramid: gather all levels into one map, refine it, scatter it back.

    Every level is resized to the size of level ``refine_level`` (adaptive max-pool for
    finer levels, nearest interpolation for the others) and averaged; the average is
    optionally refined (3x3 conv or an embedded-Gaussian non-local block) and resized
    back to each level (nearest for finer levels, adaptive max-pool for the others), where
    it is added to the input as a residual.

    Args:
        in_channels (int): Channels of every input level (all levels share it).
        num_levels (int): Number of input levels.
        refine_level (int): Level whose size the maps are gathered at. Defaults to 2.
        refine_type (str, optional): None, ``'conv'`` or ``'non_local'``. Defaults to None.
        conv_cfg (dict, optional): Conv layer config of the refine block.
        norm_cfg (dict, optional): Norm layer config of the refine block.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Xavier
            uniform on every Conv2d.
    """

    def __init__(self,
                 in_channels: int,
                 num_levels: int,
                 refine_level: int = 2,
                 refine_type: Optional[str] = None,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        if refine_type not in REFINE_TYPES:
            raise NeckArgumentError(f'BFP refine_type must be one of {REFINE_TYPES}, got '
                                    f'{refine_type!r}.')
        self.in_channels = in_channels
        self.num_levels = num_levels
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.refine_level = refine_level
        self.refine_type = refine_type
        if not 0 <= refine_level < num_levels:
            raise NeckArgumentError(f'BFP refine_level must be in [0, {num_levels - 1}] for '
                                    f'num_levels={num_levels}, got {refine_level}.')

        if refine_type == 'conv':
            self.refine = ConvModule(in_channels, in_channels, 3, padding=1,
                                     conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        elif refine_type == 'non_local':
            self.refine = NonLocal2d(in_channels, reduction=1, use_scale=False,
                                     conv_cfg=conv_cfg, norm_cfg=norm_cfg)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Balance the pyramid.

        Args:
            inputs (Sequence[Tensor]): ``num_levels`` maps ``[B, in_channels, H_i, W_i]``.

        Returns:
            tuple[Tensor]: Maps of the same shapes as the inputs.
        """
        if len(inputs) != self.num_levels:
            raise NeckArgumentError(f'BFP expects num_levels={self.num_levels} input maps, '
                                    f'got {len(inputs)}.')
        gather_size = inputs[self.refine_level].shape[2:]
        gathered = []
        for i, x in enumerate(inputs):
            if i < self.refine_level:
                gathered.append(F.adaptive_max_pool2d(x, output_size=gather_size))
            else:
                gathered.append(F.interpolate(x, size=gather_size, mode='nearest'))
        bsf = sum(gathered) / len(gathered)  # [B, C, H_r, W_r]
        if self.refine_type is not None:
            bsf = self.refine(bsf)

        outs = []
        for i, x in enumerate(inputs):
            if i < self.refine_level:
                residual = F.interpolate(bsf, size=x.shape[2:], mode='nearest')
            else:
                residual = F.adaptive_max_pool2d(bsf, output_size=x.shape[2:])
            outs.append(residual + x)
        return tuple(outs)
