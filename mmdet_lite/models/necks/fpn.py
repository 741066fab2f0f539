"""Feature Pyramid Network (Lin et al., https://arxiv.org/abs/1612.03144)."""
from typing import List, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

from .neck_arg_checks import (NeckArgumentError, NeckTypeError, check_list,
                              resolve_backbone_end_level)

#: Where the first extra (stride-2 conv) level reads from when ``add_extra_convs`` is set.
EXTRA_CONVS_SOURCES = ('on_input', 'on_lateral', 'on_output')


@MODELS.register_module()
class FPN(BaseModule):
    """Feature Pyramid Network: one ``out_channels`` map per scale, fine to coarse.

    Each used backbone level gets a 1x1 lateral conv; coarser laterals are upsampled and
    added into finer ones (top-down path); a 3x3 conv then smooths every sum. Levels beyond
    the backbone's are made by stride-2 max-pooling of the last output (Faster/Mask R-CNN)
    or, with ``add_extra_convs``, by stride-2 3x3 convs (RetinaNet).

    Args:
        in_channels (list[int]): Channels of each backbone level, e.g. ``[256, 512, 1024,
            2048]`` for ResNet-50.
        out_channels (int): Channels of every output level.
        num_outs (int): Number of output levels, including the extra ones.
        start_level (int): Index of the first backbone level used. Defaults to 0.
        end_level (int): Index of the last backbone level used (inclusive); -1 means the
            last input. Extra levels are only allowed when the last input is used, so with
            any other end_level ``num_outs`` must equal ``end_level - start_level + 1``.
            Defaults to -1.
        add_extra_convs (bool | str): False: extra levels by max-pool. A string picks the
            input of the first extra conv: ``'on_input'`` (last used backbone map),
            ``'on_lateral'`` (last lateral) or ``'on_output'`` (last FPN output); True
            means ``'on_input'``. Defaults to False.
        relu_before_extra_convs (bool): Apply ReLU before the second and later extra
            convs. Defaults to False.
        no_norm_on_lateral (bool): Leave the lateral convs without norm layer even when
            ``norm_cfg`` is set. Defaults to False.
        conv_cfg (dict, optional): Conv layer config for ConvModule. Defaults to None.
        norm_cfg (dict, optional): Norm layer config for ConvModule. Defaults to None.
        act_cfg (dict, optional): Activation config for ConvModule. Defaults to None.
        upsample_cfg (dict): Keyword arguments of ``F.interpolate`` in the top-down path.
            Without ``scale_factor`` the coarse map is resized to the finer lateral's exact
            size, so odd input sizes work. Defaults to ``dict(mode='nearest')``.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to Xavier
            uniform on every Conv2d.

    Example:
        >>> neck = FPN([256, 512, 1024, 2048], 256, num_outs=5)
        >>> # inputs of sizes 16, 8, 4, 2 -> outputs of sizes 16, 8, 4, 2, 1
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 add_extra_convs: Union[bool, str] = False,
                 relu_before_extra_convs: bool = False,
                 no_norm_on_lateral: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 act_cfg: OptConfigType = None,
                 upsample_cfg: ConfigType = dict(mode='nearest'),
                 init_cfg: OptMultiConfig = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        check_list(in_channels, 'in_channels', type(self).__name__)
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.no_norm_on_lateral = no_norm_on_lateral
        self.upsample_cfg = dict(upsample_cfg)

        self.backbone_end_level = resolve_backbone_end_level(
            self.num_ins, start_level, end_level, num_outs, type(self).__name__)
        self.start_level = start_level
        self.end_level = end_level
        self.add_extra_convs = self._check_extra_convs(add_extra_convs)

        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(start_level, self.backbone_end_level):
            self.lateral_convs.append(
                ConvModule(self.in_channels[i], out_channels, 1, conv_cfg=conv_cfg,
                           norm_cfg=None if no_norm_on_lateral else norm_cfg,
                           act_cfg=act_cfg, inplace=False))
            self.fpn_convs.append(
                ConvModule(out_channels, out_channels, 3, padding=1, conv_cfg=conv_cfg,
                           norm_cfg=norm_cfg, act_cfg=act_cfg, inplace=False))

        # Extra conv levels are appended to fpn_convs so their keys continue the
        # numbering (fpn_convs.4.* for P6 of RetinaNet), as mmdet checkpoints expect.
        num_extra = num_outs - (self.backbone_end_level - start_level)
        if self.add_extra_convs and num_extra > 0:
            for i in range(num_extra):
                if i == 0 and self.add_extra_convs == 'on_input':
                    extra_in = self.in_channels[self.backbone_end_level - 1]
                else:
                    extra_in = out_channels
                self.fpn_convs.append(
                    ConvModule(extra_in, out_channels, 3, stride=2, padding=1,
                               conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                               inplace=False))

    @staticmethod
    def _check_extra_convs(add_extra_convs: Union[bool, str]) -> Union[bool, str]:
        """Normalize ``add_extra_convs`` to False or one of :data:`EXTRA_CONVS_SOURCES`."""
        if isinstance(add_extra_convs, bool):
            return 'on_input' if add_extra_convs else False
        if isinstance(add_extra_convs, str):
            if add_extra_convs not in EXTRA_CONVS_SOURCES:
                raise NeckArgumentError(f'FPN add_extra_convs must be a bool or one of '
                                        f'{EXTRA_CONVS_SOURCES}, got {add_extra_convs!r}.')
            return add_extra_convs
        raise NeckTypeError('FPN add_extra_convs must be a bool or a str, got '
                            f'{type(add_extra_convs).__name__}.')

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Build the pyramid.

        Args:
            inputs (Sequence[Tensor]): One map per backbone level, fine to coarse,
                ``[B, in_channels[i], H_i, W_i]`` (ResNet: strides 4, 8, 16, 32).

        Returns:
            tuple[Tensor]: ``num_outs`` maps ``[B, out_channels, H_j, W_j]``, fine to coarse;
            level j has the size of input ``start_level + j``, each extra level halves
            (rounding up) the one before it.
        """
        self._check_num_inputs(inputs)
        laterals = self._top_down(self._laterals(inputs))
        # [B, C_out, H_i, W_i]: 3x3 convs reduce the aliasing of upsampling.
        outs = [self.fpn_convs[i](lateral) for i, lateral in enumerate(laterals)]
        return tuple(self._add_extra_levels(inputs, laterals, outs))

    def _check_num_inputs(self, inputs: Sequence[Tensor]) -> None:
        """Require one input map per ``in_channels`` entry."""
        if len(inputs) != self.num_ins:
            raise NeckArgumentError(
                f'{type(self).__name__} expects {self.num_ins} input maps (one per '
                f'in_channels entry {self.in_channels}), got {len(inputs)}.')

    def _laterals(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        """1x1 lateral convs of the used levels: ``[B, C_out, H_i, W_i]`` each."""
        return [conv(inputs[self.start_level + i]) for i, conv in enumerate(self.lateral_convs)]

    def _top_down(self, laterals: List[Tensor]) -> List[Tensor]:
        """Add each coarser lateral, upsampled, into the next finer one (coarse first).

        Args:
            laterals (list[Tensor]): Lateral maps, fine to coarse; replaced in the list.

        Returns:
            list[Tensor]: The same list, holding the merged maps.
        """
        # The add is out of place because an in-place one would overwrite the output a
        # lateral ReLU (act_cfg) saved for its backward pass.
        for i in range(len(laterals) - 1, 0, -1):
            if 'scale_factor' in self.upsample_cfg:
                upsampled = F.interpolate(laterals[i], **self.upsample_cfg)
            else:
                # size= instead of scale_factor=2: a 33-px map over a 65-px one is exact.
                upsampled = F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                          **self.upsample_cfg)
            laterals[i - 1] = laterals[i - 1] + upsampled
        return laterals

    def _add_extra_levels(self, inputs: Sequence[Tensor], laterals: List[Tensor],
                          outs: List[Tensor]) -> List[Tensor]:
        """Append the levels beyond the used backbone levels to ``outs``.

        Args:
            inputs (Sequence[Tensor]): The neck inputs (source of ``'on_input'``).
            laterals (list[Tensor]): Merged laterals (source of ``'on_lateral'``).
            outs (list[Tensor]): Outputs of the used levels (source of ``'on_output'``).

        Returns:
            list[Tensor]: ``outs`` extended to ``num_outs`` maps.
        """
        num_used = len(laterals)
        if self.num_outs <= len(outs):
            return outs
        if not self.add_extra_convs:
            # kernel 1, stride 2: subsampling, [B, C, H, W] -> [B, C, ceil(H/2), ceil(W/2)]
            for _ in range(self.num_outs - num_used):
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            return outs
        if self.add_extra_convs == 'on_input':
            source = inputs[self.backbone_end_level - 1]
        elif self.add_extra_convs == 'on_lateral':
            source = laterals[-1]
        else:  # 'on_output'
            source = outs[-1]
        outs.append(self.fpn_convs[num_used](source))
        for i in range(num_used + 1, self.num_outs):
            prev = F.relu(outs[-1]) if self.relu_before_extra_convs else outs[-1]
            outs.append(self.fpn_convs[i](prev))
        return outs
