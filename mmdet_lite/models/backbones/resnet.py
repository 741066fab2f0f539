"""ResNet backbone (`He et al. 2016 <https://arxiv.org/abs/1512.03385>`_) and ResNetV1d.

Argument names, defaults and state_dict keys are mmdetection 3.x's, so an mmdetection
checkpoint (or, for the default config, a torchvision ResNet state_dict) loads as is.
The residual blocks live in :mod:`mmdet_lite.models.layers.res_layer` and are re-exported here.
"""
import os
import warnings
from typing import List, Optional, Sequence, Tuple

from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmdet_lite.models.layers.res_layer import (BasicBlock, Bottleneck, ResLayer, build_conv,
                                                build_norm, check_plugin_spec)
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

__all__ = ['ResNet', 'ResNetV1d', 'BasicBlock', 'Bottleneck', 'ResNetArgumentError']


class ResNetArgumentError(ValueError, AssertionError):
    """A ResNet argument that mmdetection rejects with an assert (hence also an
    AssertionError)."""


@MODELS.register_module()
class ResNet(BaseModule):
    """ResNet backbone returning the feature maps of the selected stages.

    Stage i (0-based) has ``base_channels * 2**i * expansion`` output channels and, with the
    default strides, stride ``4 * 2**i``: ResNet-50 on [2, 3, 768, 768] gives
    [2, 256, 192, 192], [2, 512, 96, 96], [2, 1024, 48, 48], [2, 2048, 24, 24].

    Args:
        depth (int): 18, 34 (BasicBlock) or 50, 101, 152 (Bottleneck).
        in_channels (int): Input image channels. Defaults to 3.
        stem_channels (int, optional): Stem output channels. Defaults to ``base_channels``.
        base_channels (int): Base channels of the first stage. Defaults to 64.
        num_stages (int): Number of stages, 1 to 4. Defaults to 4.
        strides (Sequence[int]): Stride of each stage's first block. Defaults to (1, 2, 2, 2).
        dilations (Sequence[int]): Dilation of each stage. Defaults to (1, 1, 1, 1).
        out_indices (Sequence[int]): Stages whose outputs are returned. Defaults to (0, 1, 2, 3).
        style (str): 'pytorch' puts a Bottleneck's stride on its 3x3 conv, 'caffe' on its
            first 1x1 conv. Defaults to 'pytorch'.
        deep_stem (bool): Replace the 7x7 stem conv by three 3x3 conv-norm-ReLU.
            Defaults to False.
        avg_down (bool): Downsample shortcuts with AvgPool2d + stride-1 1x1 conv.
            Defaults to False.
        frozen_stages (int): Freeze (eval mode, no gradient) the stem and stages 1..k;
            -1 freezes nothing, 0 only the stem. Defaults to -1.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        norm_cfg (dict): Norm layer config; ``requires_grad=False`` freezes norm parameters.
            Defaults to dict(type='BN', requires_grad=True).
        norm_eval (bool): Keep every BatchNorm in eval mode (frozen running statistics)
            during training. Defaults to True.
        dcn (dict, optional): Deformable conv config for the 3x3 convs of the stages flagged in
            ``stage_with_dcn``, e.g. dict(type='DCN', deform_groups=1,
            fallback_on_stride=False). Defaults to None.
        stage_with_dcn (Sequence[bool]): Which stages use ``dcn``. Defaults to (False,) * 4.
        plugins (list[dict], optional): Extra layers in the blocks, each
            dict(cfg=dict(type=...), position='after_conv1'|'after_conv2'|'after_conv3',
            stages=(bool,) * num_stages); ``stages`` defaults to all. Defaults to None.
        with_cp (bool): Activation checkpointing in every block. Defaults to False.
        zero_init_residual (bool): Start the last norm of every block at zero so blocks begin
            as identities. Defaults to True.
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config, e.g.
            dict(type='Pretrained', checkpoint=PATH, prefix='backbone.'). Defaults to None:
            Kaiming convs, unit norms.
    """

    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: Optional[int] = None,
                 base_channels: int = 64,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = 'pytorch',
                 deep_stem: bool = False,
                 avg_down: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN', requires_grad=True),
                 norm_eval: bool = True,
                 dcn: OptConfigType = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 plugins: Optional[List[dict]] = None,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'Invalid depth {depth} for {type(self).__name__}; expected one of '
                           f'{sorted(self.arch_settings)}.')
        self._check_args(self.arch_settings[depth][0], num_stages, strides, dilations,
                         out_indices, style, frozen_stages, dcn, stage_with_dcn)
        self.block, stage_blocks = self.arch_settings[depth]
        self.zero_init_residual = zero_init_residual
        block_init_cfg = self._resolve_init_cfg(pretrained, init_cfg)

        self.depth = depth
        self.stem_channels = base_channels if stem_channels is None else stem_channels
        self.base_channels = base_channels
        self.num_stages = num_stages
        self.strides = strides
        self.dilations = dilations
        self.out_indices = out_indices
        self.style = style
        self.deep_stem = deep_stem
        self.avg_down = avg_down
        self.frozen_stages = frozen_stages
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.with_cp = with_cp
        self.norm_eval = norm_eval
        self.dcn = dcn
        self.stage_with_dcn = stage_with_dcn
        self.plugins = plugins
        self.stage_blocks = stage_blocks[:num_stages]

        self._make_stem_layer(in_channels, self.stem_channels)
        self.inplanes = self.stem_channels
        self.res_layers = []
        for i, num_blocks in enumerate(self.stage_blocks):
            planes = base_channels * 2**i
            res_layer = self.make_res_layer(
                block=self.block,
                inplanes=self.inplanes,
                planes=planes,
                num_blocks=num_blocks,
                stride=strides[i],
                dilation=dilations[i],
                style=style,
                avg_down=avg_down,
                with_cp=with_cp,
                conv_cfg=conv_cfg,
                norm_cfg=norm_cfg,
                dcn=dcn if dcn is not None and stage_with_dcn[i] else None,
                plugins=self.make_stage_plugins(plugins, i) if plugins is not None else None,
                init_cfg=block_init_cfg)
            self.inplanes = planes * self.block.expansion
            layer_name = f'layer{i + 1}'
            self.add_module(layer_name, res_layer)
            self.res_layers.append(layer_name)

        self._freeze_stages()
        self.feat_dim = self.block.expansion * base_channels * 2**(len(self.stage_blocks) - 1)

    @staticmethod
    def _check_args(block, num_stages, strides, dilations, out_indices, style, frozen_stages,
                    dcn, stage_with_dcn) -> None:
        """The checks of mmdetection's ResNet (its asserts raise ``ResNetArgumentError``)."""
        if not 1 <= num_stages <= 4:
            raise ResNetArgumentError(f'num_stages must be in 1..4, got {num_stages}.')
        if not len(strides) == len(dilations) == num_stages:
            raise ResNetArgumentError(
                f'strides (length {len(strides)}) and dilations (length {len(dilations)}) '
                f'need one entry per stage, num_stages={num_stages}.')
        # Only the largest index is checked, as in mmdetection; negative ones select nothing.
        if not out_indices or max(out_indices) >= num_stages:
            raise ResNetArgumentError(f'out_indices must be non-empty stage indices below '
                                      f'num_stages, 0..{num_stages - 1}, got '
                                      f'{tuple(out_indices)}.')
        # mmdetection's Bottleneck asserts the style; its BasicBlock ignores it.
        if issubclass(block, Bottleneck) and style not in ('pytorch', 'caffe'):
            raise ResNetArgumentError(f"style must be 'pytorch' or 'caffe', got {style!r}.")
        # Values below -1 freeze nothing, like -1 (mmdetection does not check them).
        if frozen_stages > num_stages:
            raise ValueError(f'frozen_stages must be in -1..{num_stages} (num_stages), got '
                             f'{frozen_stages}: there is no stage {frozen_stages} to freeze.')
        if dcn is not None and len(stage_with_dcn) != num_stages:
            raise ResNetArgumentError(f'stage_with_dcn (length {len(stage_with_dcn)}) needs one '
                                      f'flag per stage, num_stages={num_stages}.')

    def _resolve_init_cfg(self, pretrained: Optional[str],
                          init_cfg: OptMultiConfig) -> OptConfigType:
        """Set ``self.init_cfg`` and return the per-block init config (zero-init residual)."""
        if init_cfg and pretrained:
            raise ResNetArgumentError('init_cfg and pretrained cannot be set at the same time; '
                                      "use init_cfg=dict(type='Pretrained', checkpoint=...) "
                                      'only.')
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f'pretrained must be a str path or None, got '
                                f'{type(pretrained).__name__}.')
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...) instead.")
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
            return None
        if init_cfg is not None:
            return None
        self.init_cfg = [
            dict(type='Kaiming', layer='Conv2d'),
            dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
        ]
        if not self.zero_init_residual:
            return None
        # Identity, not issubclass, as mmdetection 3.3: the zero init reaches ResNet's own
        # block classes only. ResNeXt's Bottleneck is a subclass, so a ResNeXt's residual
        # norms start at 1 like every other norm (an mmdetection quirk, kept for parity).
        if self.block is Bottleneck:
            return dict(type='Constant', val=0, override=dict(name='norm3'))
        if self.block is BasicBlock:
            return dict(type='Constant', val=0, override=dict(name='norm2'))
        return None

    def make_stage_plugins(self, plugins: List[dict], stage_idx: int) -> List[dict]:
        """Select the plugins of stage ``stage_idx``.

        Args:
            plugins (list[dict]): Plugin specs: dict(cfg=..., position=..., stages=...).
                Plugins of the same type in one position need distinct ``postfix`` in ``cfg``.
            stage_idx (int): 0-based stage index.

        Returns:
            list[dict]: The specs whose ``stages`` flag this stage (all if ``stages`` is
            missing), without the ``stages`` key.
        """
        stage_plugins = []
        for plugin in plugins:
            check_plugin_spec(plugin)
            plugin = dict(plugin)
            stages = plugin.pop('stages', None)
            if stages is not None and len(stages) != self.num_stages:
                raise ValueError(f'plugin stages {tuple(stages)} need one flag per stage, '
                                 f'num_stages={self.num_stages}.')
            if stages is None or stages[stage_idx]:
                stage_plugins.append(plugin)
        return stage_plugins

    def make_res_layer(self, **kwargs) -> ResLayer:
        """Pack all blocks of a stage into a ``ResLayer`` (overridden by ResNeXt)."""
        return ResLayer(**kwargs)

    @property
    def norm1(self) -> nn.Module:
        """nn.Module: the stem's norm (7x7 stem only)."""
        return getattr(self, self.norm1_name)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        if self.deep_stem:
            # stem.0/1/2, stem.3/4/5, stem.6/7/8: conv, norm, ReLU three times.
            layers = []
            channels = [in_channels, stem_channels // 2, stem_channels // 2, stem_channels]
            for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
                layers += [
                    build_conv(self.conv_cfg, cin, cout, kernel_size=3,
                               stride=2 if i == 0 else 1, padding=1, bias=False),
                    build_norm(self.norm_cfg, cout)[1],
                    nn.ReLU(inplace=True),
                ]
            self.stem = nn.Sequential(*layers)
        else:
            self.conv1 = build_conv(self.conv_cfg, in_channels, stem_channels,
                                    kernel_size=7, stride=2, padding=3, bias=False)
            self.norm1_name, norm1 = build_norm(self.norm_cfg, stem_channels, postfix=1)
            self.add_module(self.norm1_name, norm1)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            if self.deep_stem:
                self.stem.eval()
                stem = [self.stem]
            else:
                # Only norm1 goes to eval mode; conv1 keeps the model's mode, as in
                # mmdetection 3.3 (a plain conv behaves the same in both modes).
                self.norm1.eval()
                stem = [self.conv1, self.norm1]
            for module in stem:
                for param in module.parameters():
                    param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            layer = getattr(self, f'layer{i}')
            layer.eval()
            for param in layer.parameters():
                param.requires_grad = False

    def init_weights(self) -> None:
        """Initialize weights, checking first that a local Pretrained checkpoint exists.

        As in mmdetection 3.3 with mmcv, the offset convs (``conv_offset``) of the DCN
        (``type='DCN'``) layers end with the init of ``init_cfg``: the default Kaiming init
        of every ``Conv2d`` reaches them and nothing zeroes them afterwards, because mmcv's
        ``DeformConv2dPack`` has no ``init_weights`` for mmengine to call (DCNv2's
        ``ModulatedDeformConv2dPack`` has one, and its offsets end at zero).
        """
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        for cfg in cfgs:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                path = cfg.get('checkpoint')
                if isinstance(path, str) and '://' not in path and not os.path.isfile(
                        os.path.expanduser(path)):
                    raise FileNotFoundError(
                        f'{type(self).__name__} init_cfg checkpoint file not found: {path!r} '
                        f'(relative to {os.getcwd()}). Set backbone.init_cfg.checkpoint to '
                        'an existing file, or backbone.init_cfg=None to start from random '
                        'weights.')
        super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Compute the feature maps of the stages in ``out_indices``.

        Args:
            x (Tensor): Images of shape [B, in_channels, H, W].

        Returns:
            tuple[Tensor]: For each i in ``out_indices``, a map of shape
            [B, base_channels * 2**i * expansion, H / (4 * 2**i), W / (4 * 2**i)] with the
            default strides (ResNet-50: [B, 256, H/4, W/4] ... [B, 2048, H/32, W/32]).
        """
        if self.deep_stem:
            x = self.stem(x)  # [B, stem_channels, H/2, W/2]
        else:
            x = self.relu(self.norm1(self.conv1(x)))  # [B, stem_channels, H/2, W/2]
        x = self.maxpool(x)  # [B, stem_channels, H/4, W/4]
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)  # [B, base * 2**i * expansion, H/2**(i+2), ...]
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'ResNet':
        """Switch train/eval mode, keeping frozen stages and (with norm_eval) BNs in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


@MODELS.register_module()
class ResNetV1d(ResNet):
    """ResNet-D from `Bag of Tricks <https://arxiv.org/abs/1812.01187>`_: a deep 3x3 stem
    and average-pool downsampling shortcuts (``deep_stem=True, avg_down=True``).

    Args:
        **kwargs: Any other :class:`ResNet` argument.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(deep_stem=True, avg_down=True, **kwargs)
