"""HRNet backbone (`Sun et al. 2019 <https://arxiv.org/abs/1904.04514>`_), mmdetection 3.3's.

HRNet keeps a high-resolution branch through the whole network: a stem brings the image to
stride 4, then stage k (2..4) adds one branch at half the resolution of the previous
one, and every ``HRModule`` of a stage runs residual blocks in each branch and then mixes
all branches (upsampled or strided-conv downsampled to each branch's size). HRNetV2p-W18
returns 4 maps of 18, 36, 72 and 144 channels at strides 4, 8, 16 and 32.

Argument names, defaults and state_dict keys are mmdetection's, so its ImageNet checkpoints
(``open-mmlab://msra/hrnetv2_w18`` ...) load through ``init_cfg``.
"""
import warnings
from typing import List, Optional, Sequence

from mmengine.model import BaseModule, ModuleList, Sequential
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.layers.res_layer import (BasicBlock, Bottleneck, ResLayer, build_conv,
                                                build_norm)
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

__all__ = ['HRNet', 'HRModule', 'HRNetArgumentError']


class HRNetArgumentError(ValueError, AssertionError):
    """An HRNet argument that mmdetection rejects with an assert (hence also an
    AssertionError)."""


def _conv_norm(conv_cfg: OptConfigType, norm_cfg: ConfigType, in_channels: int,
               out_channels: int, kernel_size: int, stride: int,
               relu_inplace: Optional[bool] = None) -> nn.Sequential:
    """``conv (no bias) -> norm [-> ReLU]`` as an ``nn.Sequential`` (keys ``0.*``, ``1.*``).

    ``relu_inplace`` None adds no ReLU; True/False adds one, in place or not (mmdetection's
    transitions use an in-place ReLU, HRModule's fuse layers a non-in-place one).
    """
    layers = [
        build_conv(conv_cfg, in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                   padding=kernel_size // 2, bias=False),
        build_norm(norm_cfg, out_channels)[1],
    ]
    if relu_inplace is not None:
        layers.append(nn.ReLU(inplace=relu_inplace))
    return nn.Sequential(*layers)


class HRModule(BaseModule):
    """One multi-resolution module: residual blocks per branch, then exchange across branches.

    Output branch i is ``ReLU(sum_j f_ij(x_j))`` with ``f_ii`` the identity, ``f_ij`` for a
    lower-resolution ``j > i`` a 1x1 conv + norm + nearest upsampling by ``2**(j - i)``, and
    for a higher-resolution ``j < i`` a chain of ``i - j`` stride-2 3x3 conv + norm (ReLU
    between them, none after the last).

    Args:
        num_branches (int): Number of branches.
        blocks (type): Block class, ``BasicBlock`` or ``Bottleneck``.
        num_blocks (Sequence[int]): Blocks in each branch.
        in_channels (list[int]): Input channels of each branch.
        num_channels (Sequence[int]): Block ``planes`` of each branch; branch i outputs
            ``num_channels[i] * blocks.expansion`` channels.
        multiscale_output (bool): Output every branch; False outputs only branch 0 (fused
            from all). Defaults to True.
        with_cp (bool): Activation checkpointing in the blocks. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        block_init_cfg (dict, optional): ``init_cfg`` of every block. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self,
                 num_branches: int,
                 blocks: type,
                 num_blocks: Sequence[int],
                 in_channels: List[int],
                 num_channels: Sequence[int],
                 multiscale_output: bool = True,
                 with_cp: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 block_init_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        # mmdetection raises ValueError (not an assert) for these.
        for name, values in (('num_blocks', num_blocks), ('num_channels', num_channels),
                             ('in_channels', in_channels)):
            if len(values) != num_branches:
                raise ValueError(f'HRModule: num_branches ({num_branches}) != length of '
                                 f'{name} ({len(values)}).')
        self.block_init_cfg = block_init_cfg
        self.num_branches = num_branches
        self.multiscale_output = multiscale_output
        self.with_cp = with_cp
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.branches = ModuleList(
            ResLayer(blocks, in_channels[i], num_channels[i], num_blocks[i], conv_cfg=conv_cfg,
                     norm_cfg=norm_cfg, with_cp=with_cp, init_cfg=block_init_cfg)
            for i in range(num_branches))
        # After the blocks every branch has its output width; the exchange works on those.
        self.in_channels = [c * blocks.expansion for c in num_channels]
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=False)

    def _make_fuse_layers(self) -> Optional[nn.ModuleList]:
        """``fuse_layers[i][j]`` brings branch j to branch i's size and width (None if i == j).

        A single branch has nothing to exchange (None). With ``multiscale_output=False``
        only output branch 0 is built.
        """
        if self.num_branches == 1:
            return None
        channels = self.in_channels
        num_outputs = self.num_branches if self.multiscale_output else 1
        fuse_layers = []
        for i in range(num_outputs):
            row = []
            for j in range(self.num_branches):
                if j == i:
                    row.append(None)
                elif j > i:  # lower resolution: match the width, then upsample
                    up = _conv_norm(self.conv_cfg, self.norm_cfg, channels[j], channels[i],
                                    kernel_size=1, stride=1)
                    up.add_module('2', nn.Upsample(scale_factor=2**(j - i), mode='nearest'))
                    row.append(up)
                else:  # higher resolution: i - j stride-2 convs, widening only in the last
                    steps = [
                        _conv_norm(self.conv_cfg, self.norm_cfg, channels[j], channels[j],
                                   kernel_size=3, stride=2, relu_inplace=False)
                        for _ in range(i - j - 1)
                    ]
                    steps.append(_conv_norm(self.conv_cfg, self.norm_cfg, channels[j],
                                            channels[i], kernel_size=3, stride=2))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        return nn.ModuleList(fuse_layers)

    def forward(self, x: List[Tensor]) -> List[Tensor]:
        """Run the branches and exchange information between them.

        Args:
            x (list[Tensor]): One map per branch, branch i ``[B, in_channels[i], H / 2**i,
                W / 2**i]``.

        Returns:
            list[Tensor]: Branch i ``[B, num_channels[i] * expansion, H / 2**i, W / 2**i]``,
            for every branch, or only branch 0 when ``multiscale_output`` is False.
        """
        feats = [branch(feat) for branch, feat in zip(self.branches, x)]
        if self.num_branches == 1:
            return feats
        outs = []
        for i, row in enumerate(self.fuse_layers):
            # Summed in branch order, starting from branch 0, as in mmdetection.
            fused = 0
            for j, feat in enumerate(feats):
                fused = fused + (feat if j == i else row[j](feat))
            outs.append(self.relu(fused))
        return outs


@MODELS.register_module()
class HRNet(BaseModule):
    """HRNet backbone, returning the maps of the last stage's branches.

    Args:
        extra (dict): ``stage1`` .. ``stage4``, each a dict with ``num_modules`` (HRModules
            in the stage), ``num_branches``, ``block`` ('BASIC' or 'BOTTLENECK'),
            ``num_blocks`` and ``num_channels`` (one entry per branch). Stage 1 has one
            branch and no exchange; it runs as a plain residual layer.
        in_channels (int): Input image channels. Defaults to 3.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        norm_eval (bool): Keep every BatchNorm in eval mode (frozen running statistics)
            during training. Defaults to True.
        with_cp (bool): Activation checkpointing in every block. Defaults to False.
        zero_init_residual (bool): Stored, but has no effect, as in mmdetection 3.3 (see
            the comment in ``__init__``). Defaults to False.
        multiscale_output (bool): Return all 4 branches; False returns only the
            highest-resolution one (fused from all). Defaults to True.
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None:
            Kaiming convs, unit norms.
    """

    blocks_dict = {'BASIC': BasicBlock, 'BOTTLENECK': Bottleneck}

    def __init__(self,
                 extra: dict,
                 in_channels: int = 3,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 norm_eval: bool = True,
                 with_cp: bool = False,
                 zero_init_residual: bool = False,
                 multiscale_output: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        self.pretrained = pretrained
        if init_cfg and pretrained:
            raise HRNetArgumentError('init_cfg and pretrained cannot be set at the same time; '
                                     "use init_cfg=dict(type='Pretrained', checkpoint=...).")
        if isinstance(pretrained, str):
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...) instead.")
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif pretrained is not None:
            raise TypeError(f'pretrained must be a str path or None, got '
                            f'{type(pretrained).__name__}.')
        elif init_cfg is None:
            self.init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
            ]
        self._check_extra(extra)

        self.extra = extra
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        # mmdetection 3.3 zero-inits the blocks' last norms only when zero_init_residual is
        # set and the backbone has no `init_cfg` attribute, but BaseModule always sets one:
        # the flag never takes effect, and the blocks get init_cfg=None (kept for parity).
        self.zero_init_residual = zero_init_residual

        # Stem: two stride-2 3x3 convs to 64 channels at stride 4.
        self.norm1_name, norm1 = build_norm(norm_cfg, 64, postfix=1)
        self.norm2_name, norm2 = build_norm(norm_cfg, 64, postfix=2)
        self.conv1 = build_conv(conv_cfg, in_channels, 64, kernel_size=3, stride=2, padding=1,
                                bias=False)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv(conv_cfg, 64, 64, kernel_size=3, stride=2, padding=1,
                                bias=False)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)

        # Stage 1: one branch, a residual layer from the 64-channel stem.
        self.stage1_cfg = extra['stage1']
        block = self.blocks_dict[self.stage1_cfg['block']]
        planes, num_blocks = self.stage1_cfg['num_channels'][0], self.stage1_cfg['num_blocks'][0]
        self.layer1 = ResLayer(block, 64, planes, num_blocks, conv_cfg=conv_cfg,
                               norm_cfg=norm_cfg, with_cp=with_cp, init_cfg=None)
        branch_channels = [planes * block.expansion]

        # Stages 2-4: a transition to the new branch layout, then the HRModules.
        for k in (2, 3, 4):
            stage_cfg = extra[f'stage{k}']
            setattr(self, f'stage{k}_cfg', stage_cfg)
            block = self.blocks_dict[stage_cfg['block']]
            channels = [c * block.expansion for c in stage_cfg['num_channels']]
            self.add_module(f'transition{k - 1}',
                            self._make_transition_layer(branch_channels, channels))
            self.add_module(f'stage{k}', self._make_stage(
                stage_cfg, channels, multiscale_output=multiscale_output if k == 4 else True))
            branch_channels = channels

    @staticmethod
    def _check_extra(extra: dict) -> None:
        """mmdetection's asserts on ``extra`` (raised as ``HRNetArgumentError``)."""
        missing = [f'stage{k}' for k in range(1, 5) if f'stage{k}' not in extra]
        if missing:
            raise HRNetArgumentError(f'HRNet extra needs stage1..stage4; missing {missing}.')
        for k in range(1, 5):
            cfg = extra[f'stage{k}']
            if not len(cfg['num_blocks']) == len(cfg['num_channels']) == cfg['num_branches']:
                raise HRNetArgumentError(
                    f'HRNet extra.stage{k}: num_blocks {tuple(cfg["num_blocks"])} and '
                    f'num_channels {tuple(cfg["num_channels"])} need one entry per branch, '
                    f'num_branches={cfg["num_branches"]}.')

    @property
    def norm1(self) -> nn.Module:
        """nn.Module: the norm after the stem's first conv."""
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        """nn.Module: the norm after the stem's second conv."""
        return getattr(self, self.norm2_name)

    def _make_transition_layer(self, pre_channels: List[int],
                               cur_channels: List[int]) -> nn.ModuleList:
        """Map the previous stage's branches to the next stage's.

        Existing branch i: None if its width is unchanged, else 3x3 conv + norm + ReLU. Each
        new branch: a chain of stride-2 3x3 conv + norm + ReLU from the lowest-resolution
        previous branch, keeping its width until the last step, which sets the new width.
        """
        num_pre = len(pre_channels)
        layers = []
        for i, out_channels in enumerate(cur_channels):
            if i < num_pre:
                layers.append(None if out_channels == pre_channels[i] else _conv_norm(
                    self.conv_cfg, self.norm_cfg, pre_channels[i], out_channels,
                    kernel_size=3, stride=1, relu_inplace=True))
                continue
            steps = []
            for step in range(i + 1 - num_pre):
                step_in = pre_channels[-1]
                step_out = out_channels if step == i - num_pre else step_in
                steps.append(_conv_norm(self.conv_cfg, self.norm_cfg, step_in, step_out,
                                        kernel_size=3, stride=2, relu_inplace=True))
            layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def _make_stage(self, stage_cfg: dict, in_channels: List[int],
                    multiscale_output: bool = True) -> Sequential:
        """``num_modules`` HRModules; ``multiscale_output`` applies to the last one only."""
        block = self.blocks_dict[stage_cfg['block']]
        num_modules = stage_cfg['num_modules']
        modules = [
            HRModule(stage_cfg['num_branches'], block, stage_cfg['num_blocks'],
                     list(in_channels), stage_cfg['num_channels'],
                     multiscale_output=multiscale_output or i < num_modules - 1,
                     with_cp=self.with_cp, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                     block_init_cfg=None)
            for i in range(num_modules)
        ]
        return Sequential(*modules)

    @staticmethod
    def _apply_transition(transition: nn.ModuleList, feats: List[Tensor]) -> List[Tensor]:
        """Branch inputs of the next stage from the previous stage's outputs.

        As in mmdetection, every non-None transition reads the *last* (lowest-resolution)
        previous branch, also one that re-widens an existing branch; HRNet configs never
        re-widen, so only the new branches take that path.
        """
        return [feats[i] if layer is None else layer(feats[-1])
                for i, layer in enumerate(transition)]

    def forward(self, x: Tensor) -> List[Tensor]:
        """Compute the high-resolution representations.

        Args:
            x (Tensor): Images of shape [B, in_channels, H, W].

        Returns:
            list[Tensor]: Branch i of stage 4, ``[B, C_i, H / 2**(i+2), W / 2**(i+2)]`` with
            ``C_i`` = stage4 ``num_channels[i] * expansion`` (W18: 18, 36, 72, 144 channels
            at strides 4, 8, 16, 32); only branch 0 when ``multiscale_output`` is False.
        """
        x = self.relu(self.norm1(self.conv1(x)))  # [B, 64, H/2, W/2]
        x = self.relu(self.norm2(self.conv2(x)))  # [B, 64, H/4, W/4]
        feats = [self.layer1(x)]  # [B, 256, H/4, W/4] for 4 Bottlenecks of 64 planes
        feats = self.stage2(self._apply_transition(self.transition1, feats))  # 2 branches
        feats = self.stage3(self._apply_transition(self.transition2, feats))  # 3 branches
        return self.stage4(self._apply_transition(self.transition3, feats))  # 4 branches

    def train(self, mode: bool = True) -> 'HRNet':
        """Switch train/eval mode, keeping BatchNorms in eval mode when ``norm_eval``."""
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
