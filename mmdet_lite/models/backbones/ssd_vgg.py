"""SSDVGG: the VGG-16 trunk of SSD (Liu et al., https://arxiv.org/abs/1512.02325).

mmcv's VGG (conv3x3 + ReLU blocks, a max-pool per stage, all in one ``features``
Sequential) with the last pool dropped and SSD's replacement of VGG's fully connected
layers appended: pool5 (3x3, stride 1), ``fc6`` as a 3x3 conv with dilation 6 and ``fc7`` as
a 1x1 conv. The L2 normalisation of conv4_3 and the extra levels live in :class:`SSDNeck`.

``features`` indices of VGG-16 (what ``out_feature_indices`` refers to; convs hold weights)::

    0 conv1_1  2 conv1_2  4 pool      5 conv2_1  7 conv2_2  9 pool
    10 conv3_1 12 conv3_2 14 conv3_3 16 pool (ceil)
    17 conv4_1 19 conv4_2 21 conv4_3 22 relu4_3 23 pool
    24 conv5_1 26 conv5_2 28 conv5_3 30 pool5 (3x3/1) 31 fc6 (1024, dilation 6)
    33 fc7 (1x1) 34 relu7
"""
import warnings
from typing import Optional, Sequence, Tuple, Union

from mmcv.cnn import VGG
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptMultiConfig
from ..necks import ssd_neck


class SSDVGGArgumentError(ValueError, AssertionError):
    """An SSDVGG argument that mmdetection rejects with an assert."""


@MODELS.register_module()
class SSDVGG(VGG, BaseModule):
    """VGG backbone of SSD, returning conv4_3 and fc7 by default.

    At a 300x300 input (VGG-16, ``ceil_mode=True``) the default outputs are
    [B, 512, 38, 38] (relu4_3, index 22) and [B, 1024, 19, 19] (relu7, index 34).

    Args:
        depth (int): VGG depth, one of 11, 13, 16, 19.
        with_last_pool (bool): Keep VGG's pool after the last stage. Defaults to False.
        ceil_mode (bool): Round the stage pools' output size up. Defaults to True.
        out_indices (Sequence[int]): Passed to mmcv's VGG (which checks it against the
            stages); the forward ignores it and uses ``out_feature_indices``, as
            mmdetection's. Defaults to (3, 4).
        out_feature_indices (Sequence[int]): Indices into ``features`` whose outputs are
            returned. Defaults to (22, 34).
        pretrained (str, optional): Deprecated alias of
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``. Defaults to None.
        init_cfg (dict or list[dict], optional): Initialization config. Defaults to None:
            Kaiming on Conv2d, constant 1 on BatchNorm2d, Normal(std=0.01) on Linear.
        input_size (int, optional): Deprecated and unused. Defaults to None.
        l2_norm_scale (float, optional): Deprecated and unused (set it on SSDNeck).
            Defaults to None.
    """
    # Extra-layer layouts of SSD300 / SSD512 ('S': stride-2 conv). Unused here, kept as a
    # class attribute as in mmdetection; SSDNeck builds the extra layers.
    extra_setting = {
        300: (256, 'S', 512, 128, 'S', 256, 128, 256, 128, 256),
        512: (256, 'S', 512, 128, 'S', 256, 128, 'S', 256, 128, 'S', 256, 128),
    }

    def __init__(self,
                 depth: int,
                 with_last_pool: bool = False,
                 ceil_mode: bool = True,
                 out_indices: Sequence[int] = (3, 4),
                 out_feature_indices: Sequence[int] = (22, 34),
                 pretrained: Optional[str] = None,
                 init_cfg: OptMultiConfig = None,
                 input_size: Optional[int] = None,
                 l2_norm_scale: Optional[float] = None) -> None:
        # mmcv's VGG.__init__ reaches BaseModule.__init__ through the MRO (init_cfg None).
        super().__init__(depth, with_last_pool=with_last_pool, ceil_mode=ceil_mode,
                         out_indices=out_indices)
        # fc6 / fc7 as convolutions, appended so their indices continue VGG's.
        for layer in (nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                      nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),
                      nn.ReLU(inplace=True),
                      nn.Conv2d(1024, 1024, kernel_size=1),
                      nn.ReLU(inplace=True)):
            self.features.add_module(str(len(self.features)), layer)
        self.out_feature_indices = out_feature_indices

        if init_cfg and pretrained:
            raise SSDVGGArgumentError(
                'SSDVGG: init_cfg and pretrained cannot be set at the same time; use '
                "init_cfg=dict(type='Pretrained', checkpoint=...) only.")
        if init_cfg is not None:
            self.init_cfg = init_cfg
        elif isinstance(pretrained, str):
            warnings.warn('DeprecationWarning: pretrained is deprecated, please use '
                          "init_cfg=dict(type='Pretrained', checkpoint=...) instead.")
            self.init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        elif pretrained is None:
            self.init_cfg = [dict(type='Kaiming', layer='Conv2d'),
                             dict(type='Constant', val=1, layer='BatchNorm2d'),
                             dict(type='Normal', std=0.01, layer='Linear')]
        else:
            raise TypeError(f'pretrained must be a str or None, got {type(pretrained).__name__}')

        if input_size is not None:
            warnings.warn('DeprecationWarning: input_size is deprecated')
        if l2_norm_scale is not None:
            warnings.warn('DeprecationWarning: l2_norm_scale in VGG is deprecated, it has '
                          'been moved to SSDNeck.')

    def init_weights(self, pretrained: Optional[str] = None) -> None:
        """Initialise from ``init_cfg`` (mmengine's), not mmcv VGG's own scheme.

        ``pretrained`` is accepted for the old signature and ignored, as in mmdetection.
        """
        BaseModule.init_weights(self)

    def train(self, mode: bool = True) -> 'SSDVGG':
        """mmcv VGG's train (BN eval / frozen stages, both unused by SSD's defaults).

        mmcv's VGG.train returns None, which makes ``SSDVGG(...).eval()`` None too; here it
        returns the module, as ``nn.Module.train`` does (and as the other backbones do).
        """
        super().train(mode)
        return self

    def forward(self, x: Tensor) -> Union[Tensor, Tuple[Tensor, ...]]:
        """Run ``features`` and collect the maps at ``out_feature_indices``.

        Args:
            x (Tensor): Images [B, 3, H, W].

        Returns:
            Tensor | tuple[Tensor]: The collected maps in index order; a bare tensor when
            there is only one. VGG-16 defaults at 300x300: [B, 512, 38, 38] and
            [B, 1024, 19, 19].
        """
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.out_feature_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)


class L2Norm(ssd_neck.L2Norm):
    """Deprecated location of :class:`~mmdet_lite.models.necks.ssd_neck.L2Norm`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        warnings.warn('DeprecationWarning: L2Norm in ssd_vgg.py is deprecated, please use '
                      'L2Norm in mmdet_lite/models/necks/ssd_neck.py instead')
