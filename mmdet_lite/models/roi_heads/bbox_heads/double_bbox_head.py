"""Double-Head R-CNN's box head: convs regress boxes, fcs classify them (Wu et al., 2020)."""
from typing import Tuple

from mmcv.cnn import ConvModule
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

from mmdet_lite.models.layers.res_layer import Bottleneck
from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, MultiConfig, OptConfigType, OptMultiConfig
from .bbox_head import BBoxHead, BBoxHeadArgumentError


class BasicResBlock(BaseModule):
    """A residual block that widens the RoI features for the conv branch.

    Unlike ResNet's BasicBlock, the second conv is 1x1 and the shortcut always has a 1x1
    projection::

        x -> conv1 (3x3, C -> C) -> conv2 (1x1, C -> C_out) --+--> ReLU
        x -> conv_identity (1x1, C -> C_out) -----------------+

    Every conv is a ``ConvModule`` with a norm layer; only ``conv1`` has a ReLU.

    Args:
        in_channels (int): Channels of the input RoI features.
        out_channels (int): Channels of the output.
        conv_cfg (dict, optional): Conv layer config.
        norm_cfg (dict): Norm layer config. Defaults to dict(type='BN').
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.conv1 = ConvModule(in_channels, in_channels, kernel_size=3, padding=1, bias=False,
                                conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.conv2 = ConvModule(in_channels, out_channels, kernel_size=1, bias=False,
                                conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
        self.conv_identity = ConvModule(in_channels, out_channels, kernel_size=1,
                                        conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """[K, C, S, S] -> [K, C_out, S, S]."""
        out = self.conv2(self.conv1(x))
        return self.relu(out + self.conv_identity(x))


@MODELS.register_module()
class DoubleConvFCBBoxHead(BBoxHead):
    """Box head with a conv branch for regression and an fc branch for classification.

    ::

        reg feats [K, C, 7, 7] -> res_block [K, 1024, 7, 7] -> conv_branch (Bottlenecks)
            -> avg pool [K, 1024] -> fc_reg [K, num_classes * 4]
        cls feats [K, C, 7, 7] -> flatten [K, C*49] -> fc_branch (fcs + ReLU) [K, 1024]
            -> fc_cls [K, num_classes + 1]

    ``DoubleHeadRoIHead`` pools the regression features from enlarged RoIs.

    Args:
        num_convs (int): Bottleneck blocks in the conv branch; must be > 0.
        num_fcs (int): Linear layers in the fc branch; must be > 0.
        conv_out_channels (int): Width of the conv branch (the Bottlenecks reduce to a
            quarter inside). Defaults to 1024.
        fc_out_channels (int): Width of the fc branch. Defaults to 1024.
        conv_cfg (dict, optional): Conv layer config of the Bottlenecks.
        norm_cfg (dict): Norm layer config of the Bottlenecks. Defaults to dict(type='BN').
        init_cfg (dict | list[dict]): Normal(0.01) for ``fc_cls``, Normal(0.001) for
            ``fc_reg``, uniform Xavier for ``fc_branch``.
        **kwargs: :class:`BBoxHead` arguments; ``with_avg_pool`` defaults to True here and
            must stay True.
    """

    def __init__(self,
                 num_convs: int = 0,
                 num_fcs: int = 0,
                 conv_out_channels: int = 1024,
                 fc_out_channels: int = 1024,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: ConfigType = dict(type='BN'),
                 init_cfg: MultiConfig = dict(
                     type='Normal',
                     override=[
                         dict(type='Normal', name='fc_cls', std=0.01),
                         dict(type='Normal', name='fc_reg', std=0.001),
                         dict(type='Xavier', name='fc_branch', distribution='uniform')
                     ]),
                 **kwargs) -> None:
        kwargs.setdefault('with_avg_pool', True)
        super().__init__(init_cfg=init_cfg, **kwargs)
        if not self.with_avg_pool:
            raise BBoxHeadArgumentError('DoubleConvFCBBoxHead needs with_avg_pool=True (the '
                                        'conv branch is average-pooled)')
        if num_convs <= 0:
            raise BBoxHeadArgumentError(f'DoubleConvFCBBoxHead needs num_convs > 0, got '
                                        f'{num_convs}')
        if num_fcs <= 0:
            raise BBoxHeadArgumentError(f'DoubleConvFCBBoxHead needs num_fcs > 0, got '
                                        f'{num_fcs}')
        self.num_convs = num_convs
        self.num_fcs = num_fcs
        self.conv_out_channels = conv_out_channels
        self.fc_out_channels = fc_out_channels
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg

        # mmdetection builds this block with its default BN and no conv_cfg, whatever
        # conv_cfg / norm_cfg say (they reach only the Bottlenecks); kept for checkpoints.
        self.res_block = BasicResBlock(self.in_channels, self.conv_out_channels)
        self.conv_branch = ModuleList(
            Bottleneck(inplanes=conv_out_channels, planes=conv_out_channels // 4,
                       conv_cfg=conv_cfg, norm_cfg=norm_cfg) for _ in range(num_convs))
        self.fc_branch = ModuleList(
            nn.Linear(self.in_channels * self.roi_feat_area if i == 0 else fc_out_channels,
                      fc_out_channels) for i in range(num_fcs))
        # BBoxHead sized its predictors for the pooled RoI features; these replace them
        # (plain Linear layers, as mmdetection's, whatever the predictor configs say).
        out_dim_reg = 4 if self.reg_class_agnostic else 4 * self.num_classes
        self.fc_reg = nn.Linear(conv_out_channels, out_dim_reg)
        self.fc_cls = nn.Linear(fc_out_channels, self.num_classes + 1)
        self.relu = nn.ReLU()

    def forward(self, x_cls: Tensor, x_reg: Tensor) -> Tuple[Tensor, Tensor]:
        """Classify the RoIs from ``x_cls`` and regress them from ``x_reg``.

        Args:
            x_cls (Tensor): RoI features for classification [K, C, S, S].
            x_reg (Tensor): RoI features of the enlarged RoIs [K, C, S, S].

        Returns:
            tuple: ``cls_score`` [K, num_classes + 1] and ``bbox_pred`` [K, num_classes * 4]
            ([K, 4] when class agnostic).
        """
        x_conv = self.res_block(x_reg)  # [K, conv_out_channels, S, S]
        for block in self.conv_branch:
            x_conv = block(x_conv)
        x_conv = self.avg_pool(x_conv).flatten(1)  # [K, conv_out_channels]
        bbox_pred = self.fc_reg(x_conv)

        x_fc = x_cls.flatten(1)  # [K, C * S * S]
        for fc in self.fc_branch:
            x_fc = self.relu(fc(x_fc))  # [K, fc_out_channels]
        cls_score = self.fc_cls(x_fc)
        return cls_score, bbox_pred
