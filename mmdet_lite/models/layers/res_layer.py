"""Residual blocks of ResNet (``BasicBlock``, ``Bottleneck``) and ``ResLayer``, one stage of them.

Parameter names follow mmdetection 3.x (and torchvision): ``conv1``, ``bn1`` (``norm1``), ...,
``downsample.0``/``.1``; with ``avg_down`` the shortcut is ``downsample.0`` (AvgPool2d),
``downsample.1`` (conv), ``downsample.2`` (norm).
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer, build_plugin_layer
from mmengine.model import BaseModule, Sequential
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptConfigType, OptMultiConfig

PLUGIN_POSITIONS = ('after_conv1', 'after_conv2', 'after_conv3')


def resolve_layer_type(cfg: OptConfigType) -> OptConfigType:
    """Return a copy of ``cfg`` whose string ``type`` is replaced by the registered class.

    mmcv's ``build_conv_layer``/``build_norm_layer``/``build_plugin_layer`` look names up in
    mmengine's root registry unless a default scope is set; resolving through mmdet_lite's
    ``MODELS`` (which falls back to that root) also finds layers registered with mmdet_lite.
    """
    if not isinstance(cfg, dict) or not isinstance(cfg.get('type'), str):
        return cfg  # None, a class type, or a bad value that mmcv reports
    return dict(cfg, type=MODELS.get(cfg['type']))


def build_conv(cfg: OptConfigType, *args, **kwargs) -> nn.Module:
    """``mmcv.cnn.build_conv_layer`` with the type resolved by :func:`resolve_layer_type`."""
    return build_conv_layer(resolve_layer_type(cfg), *args, **kwargs)


def build_norm(cfg: ConfigType, num_features: int, postfix='') -> Tuple[str, nn.Module]:
    """``mmcv.cnn.build_norm_layer`` with the type resolved by :func:`resolve_layer_type`."""
    return build_norm_layer(resolve_layer_type(cfg), num_features, postfix=postfix)


def _maybe_checkpoint(fn: Callable[[Tensor], Tensor], x: Tensor, with_cp: bool) -> Tensor:
    """Run ``fn(x)``, recomputing its activations in backward instead of storing them."""
    if with_cp and torch.is_grad_enabled():
        return cp.checkpoint(fn, x, use_reentrant=False)
    return fn(x)


def check_plugin_spec(plugin: dict) -> None:
    """Raise if ``plugin`` is not dict(cfg=dict(type=...), position=<a PLUGIN_POSITIONS>)."""
    if not isinstance(plugin, dict) or not isinstance(plugin.get('cfg'), dict):
        raise TypeError(f"Each plugin must be a dict with a dict 'cfg', got {plugin!r}.")
    if plugin.get('position') not in PLUGIN_POSITIONS:
        raise ValueError(f'Unknown plugin position {plugin.get("position")!r}; expected one of '
                         f'{PLUGIN_POSITIONS}.')


def _check_style(style: str) -> None:
    if style not in ('pytorch', 'caffe'):
        raise ValueError(f"style must be 'pytorch' or 'caffe', got {style!r}.")


class BasicBlock(BaseModule):
    """Two 3x3 convs with an identity shortcut (ResNet-18/34).

    Args:
        inplanes (int): Input channels.
        planes (int): Output channels (``expansion`` is 1).
        stride (int): Stride of the first conv. Defaults to 1.
        dilation (int): Dilation of the first conv. Defaults to 1.
        downsample (nn.Module, optional): Shortcut projection used when the shape changes.
        style (str): 'pytorch' or 'caffe'; both put the stride on the first conv here.
        with_cp (bool): Recompute activations in backward to save memory. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        dcn (dict, optional): Unsupported here; must be None.
        plugins (list[dict], optional): Unsupported here; must be None or empty.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None.
    """
    expansion = 1

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 with_cp: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 dcn: OptConfigType = None,
                 plugins: Optional[List[dict]] = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg)
        _check_style(style)
        if dcn is not None:
            raise ValueError('BasicBlock (ResNet-18/34) does not support dcn; use a '
                             'Bottleneck depth (50/101/152) or dcn=None.')
        if plugins:
            raise ValueError('BasicBlock (ResNet-18/34) does not support plugins; use a '
                             'Bottleneck depth (50/101/152) or plugins=None.')
        self.norm1_name, norm1 = build_norm(norm_cfg, planes, postfix=1)
        self.norm2_name, norm2 = build_norm(norm_cfg, planes, postfix=2)
        self.conv1 = build_conv(conv_cfg, inplanes, planes, 3, stride=stride,
                                padding=dilation, dilation=dilation, bias=False)
        self.add_module(self.norm1_name, norm1)
        # As in mmdetection, only the first conv is dilated.
        self.conv2 = build_conv(conv_cfg, planes, planes, 3, padding=1, bias=False)
        self.add_module(self.norm2_name, norm2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation
        self.with_cp = with_cp

    @property
    def norm1(self) -> nn.Module:
        """nn.Module: the norm after ``conv1``."""
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        """nn.Module: the norm after ``conv2``."""
        return getattr(self, self.norm2_name)

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))  # [B, planes, H/s, W/s]
        out = self.norm2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, inplanes, H, W]. Returns: Tensor: [B, planes, H/s, W/s]."""
        return self.relu(_maybe_checkpoint(self._residual, x, self.with_cp))


class Bottleneck(BaseModule):
    """1x1 reduce, 3x3, 1x1 expand, with a shortcut (ResNet-50/101/152).

    Args:
        inplanes (int): Input channels.
        planes (int): Base channels; the block outputs ``planes * 4``.
        stride (int): Stride of the block. Defaults to 1.
        dilation (int): Dilation of the 3x3 conv. Defaults to 1.
        downsample (nn.Module, optional): Shortcut projection used when the shape changes.
        style (str): 'pytorch' puts the stride on the 3x3 conv, 'caffe' on the first 1x1.
        with_cp (bool): Recompute activations in backward to save memory. Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None (nn.Conv2d).
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        dcn (dict, optional): Conv config of a deformable 3x3 conv, e.g. dict(type='DCN',
            deform_groups=1, fallback_on_stride=False); with ``fallback_on_stride`` a strided
            3x3 conv stays a plain conv. Defaults to None.
        plugins (list[dict], optional): Extra layers inside the block, each
            dict(cfg=dict(type=...), position='after_conv1'|'after_conv2'|'after_conv3'); the
            layer is named by ``build_plugin_layer`` (abbreviation + cfg's ``postfix``).
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None.
        groups (int): Groups of the 3x3 conv (ResNeXt). Keyword only. Defaults to 1.
        width (int, optional): Channels of the 3x3 conv (ResNeXt). Keyword only. Defaults to
            ``planes``.
    """
    expansion = 4

    def __init__(self,
                 inplanes: int,
                 planes: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 with_cp: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 dcn: OptConfigType = None,
                 plugins: Optional[List[dict]] = None,
                 init_cfg: OptMultiConfig = None,
                 *,
                 groups: int = 1,
                 width: Optional[int] = None) -> None:
        super().__init__(init_cfg)
        _check_style(style)
        if dcn is not None and not isinstance(dcn, dict):
            raise TypeError(f'dcn must be a dict or None, got {type(dcn).__name__}.')
        if dcn is not None and conv_cfg is not None:
            raise ValueError('conv_cfg must be None when dcn is set: dcn replaces the 3x3 conv.')
        width = planes if width is None else width
        self.inplanes = inplanes
        self.planes = planes
        self.stride = stride
        self.dilation = dilation
        self.style = style
        self.with_cp = with_cp
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg
        self.dcn = dcn
        self.with_dcn = dcn is not None
        self.plugins = plugins
        self.with_plugins = bool(plugins)
        self.conv1_stride, self.conv2_stride = (1, stride) if style == 'pytorch' else (stride, 1)

        self.norm1_name, norm1 = build_norm(norm_cfg, width, postfix=1)
        self.norm2_name, norm2 = build_norm(norm_cfg, width, postfix=2)
        self.norm3_name, norm3 = build_norm(norm_cfg, planes * self.expansion, postfix=3)

        self.conv1 = build_conv(conv_cfg, inplanes, width, kernel_size=1,
                                stride=self.conv1_stride, bias=False)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = self._make_conv2(width, groups)
        self.add_module(self.norm2_name, norm2)
        self.conv3 = build_conv(conv_cfg, width, planes * self.expansion, kernel_size=1,
                                bias=False)
        self.add_module(self.norm3_name, norm3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

        plugins = plugins or []
        for plugin in plugins:
            check_plugin_spec(plugin)
        self.after_conv1_plugins, self.after_conv2_plugins, self.after_conv3_plugins = (
            [p['cfg'] for p in plugins if p['position'] == position]
            for position in PLUGIN_POSITIONS)
        self.after_conv1_plugin_names = self.make_block_plugins(width, self.after_conv1_plugins)
        self.after_conv2_plugin_names = self.make_block_plugins(width, self.after_conv2_plugins)
        self.after_conv3_plugin_names = self.make_block_plugins(planes * self.expansion,
                                                                self.after_conv3_plugins)

    def _make_conv2(self, width: int, groups: int) -> nn.Module:
        conv_cfg = self.conv_cfg
        if self.with_dcn:
            dcn = dict(self.dcn)  # popping must not touch the config shared by every block
            fallback_on_stride = dcn.pop('fallback_on_stride', False)
            if not (fallback_on_stride and self.conv2_stride != 1):
                conv_cfg = dcn
        # Only grouped convs get `groups`, so custom conv types without the argument still work.
        extra = dict(groups=groups) if groups != 1 else {}
        return build_conv(conv_cfg, width, width, kernel_size=3, stride=self.conv2_stride,
                          padding=self.dilation, dilation=self.dilation, bias=False,
                          **extra)

    def make_block_plugins(self, in_channels: int, plugins: Sequence[dict]) -> List[str]:
        """Build plugin layers and add them as submodules.

        Args:
            in_channels (int): Channels at the plugin's position.
            plugins (Sequence[dict]): Plugin layer configs; an optional ``postfix`` key is
                appended to the layer's name.

        Returns:
            list[str]: Names of the added submodules, in order.
        """
        names = []
        for cfg in plugins:
            cfg = dict(cfg)
            postfix = cfg.pop('postfix', '')
            name, layer = build_plugin_layer(resolve_layer_type(cfg), postfix=postfix,
                                             in_channels=in_channels)
            if hasattr(self, name):
                raise ValueError(f'Duplicate plugin name {name!r} in one block; give plugins '
                                 "of the same type distinct 'postfix' values in their cfg.")
            self.add_module(name, layer)
            names.append(name)
        return names

    def forward_plugin(self, x: Tensor, plugin_names: Sequence[str]) -> Tensor:
        """Apply the named plugins one after another."""
        for name in plugin_names:
            x = getattr(self, name)(x)
        return x

    @property
    def norm1(self) -> nn.Module:
        """nn.Module: the norm after ``conv1``."""
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        """nn.Module: the norm after ``conv2``."""
        return getattr(self, self.norm2_name)

    @property
    def norm3(self) -> nn.Module:
        """nn.Module: the norm after ``conv3``."""
        return getattr(self, self.norm3_name)

    def _residual(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))  # [B, width, H, W] ('caffe': H/s, W/s)
        out = self.forward_plugin(out, self.after_conv1_plugin_names)
        out = self.relu(self.norm2(self.conv2(out)))  # [B, width, H/s, W/s]
        out = self.forward_plugin(out, self.after_conv2_plugin_names)
        out = self.norm3(self.conv3(out))  # [B, 4 * planes, H/s, W/s]
        out = self.forward_plugin(out, self.after_conv3_plugin_names)
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, inplanes, H, W]. Returns: Tensor: [B, 4 * planes, H/s, W/s]."""
        return self.relu(_maybe_checkpoint(self._residual, x, self.with_cp))


class ResLayer(Sequential):
    """One ResNet stage: ``num_blocks`` blocks, the first (or last) one changing the shape.

    Args:
        block (type): Block class, e.g. ``BasicBlock`` or ``Bottleneck``.
        inplanes (int): Input channels of the stage.
        planes (int): Base channels of the blocks; the stage outputs ``planes * expansion``.
        num_blocks (int): Number of blocks.
        stride (int): Stride of the shape-changing block. Defaults to 1.
        avg_down (bool): Downsample the shortcut with AvgPool2d(stride) and a stride-1 1x1 conv
            instead of a strided 1x1 conv (ResNet-D). Defaults to False.
        conv_cfg (dict, optional): Conv layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        downsample_first (bool): Put the shape change in the first block (ResNet) or the last
            (Hourglass). Defaults to True.
        **kwargs: Passed to every block (dilation, style, with_cp, dcn, plugins, init_cfg...).
    """

    def __init__(self,
                 block: type,
                 inplanes: int,
                 planes: int,
                 num_blocks: int,
                 stride: int = 1,
                 avg_down: bool = False,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 downsample_first: bool = True,
                 **kwargs) -> None:
        self.block = block
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out_channels:
            shortcut = []
            conv_stride = stride
            if avg_down:
                # Pool first so the 1x1 conv sees every input pixel, not one in stride**2.
                conv_stride = 1
                shortcut.append(nn.AvgPool2d(kernel_size=stride, stride=stride, ceil_mode=True,
                                             count_include_pad=False))
            shortcut.append(build_conv(conv_cfg, inplanes, out_channels, kernel_size=1,
                                       stride=conv_stride, bias=False))
            shortcut.append(build_norm(norm_cfg, out_channels)[1])
            downsample = nn.Sequential(*shortcut)

        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, **kwargs)
        if downsample_first:
            layers = [block(inplanes=inplanes, planes=planes, stride=stride,
                            downsample=downsample, **common)]
            layers += [block(inplanes=out_channels, planes=planes, stride=1, **common)
                       for _ in range(1, num_blocks)]
        else:
            layers = [block(inplanes=inplanes, planes=inplanes, stride=1, **common)
                      for _ in range(num_blocks - 1)]
            layers.append(block(inplanes=inplanes, planes=planes, stride=stride,
                                downsample=downsample, **common))
        super().__init__(*layers)
