"""Box heads built from shared convs/fcs followed by class and box branches."""
from typing import Tuple

from mmcv.cnn import ConvModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig
from .bbox_head import BBoxHead


@MODELS.register_module()
class ConvFCBBoxHead(BBoxHead):
    """RoI box head: shared convs -> shared fcs -> (cls convs/fcs, reg convs/fcs).

    ::

        roi feats [K, C, 7, 7] -> shared convs -> flatten -> shared fcs [K, 1024]
                                                   |-> cls fcs -> fc_cls [K, num_classes + 1]
                                                   |-> reg fcs -> fc_reg [K, num_classes * 4]

    Parameter names match mmdetection (``shared_fcs.0``, ``fc_cls``, ``fc_reg`` ...).

    Args:
        num_shared_convs, num_shared_fcs, num_cls_convs, num_cls_fcs, num_reg_convs,
        num_reg_fcs (int): Depth of each part.
        in_channels (int): Channels of the RoI features.
        roi_feat_size (int): Spatial size of the RoI features.
        conv_out_channels (int): Channels of the 3x3 convs.
        fc_out_channels (int): Width of the fully connected layers.
        conv_cfg, norm_cfg (dict, optional): Conv/norm layer configs for the convs.
        **kwargs: :class:`BBoxHead` arguments (num_classes, bbox_coder, losses ...).
    """

    def __init__(self,
                 num_shared_convs: int = 0,
                 num_shared_fcs: int = 0,
                 num_cls_convs: int = 0,
                 num_cls_fcs: int = 0,
                 num_reg_convs: int = 0,
                 num_reg_fcs: int = 0,
                 in_channels: int = 256,
                 roi_feat_size: int = 7,
                 conv_out_channels: int = 256,
                 fc_out_channels: int = 1024,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Normal', std=0.01, override=dict(name='fc_cls')),
                dict(type='Normal', std=0.001, override=dict(name='fc_reg')),
                dict(type='Xavier', distribution='uniform',
                     override=[dict(name='shared_fcs'), dict(name='cls_fcs'),
                               dict(name='reg_fcs')]),
            ]
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_shared_convs + num_shared_fcs + num_cls_convs + num_cls_fcs + \
                num_reg_convs + num_reg_fcs <= 0:
            raise ValueError('ConvFCBBoxHead needs at least one conv or fc layer')
        if (num_cls_convs > 0 or num_reg_convs > 0) and num_shared_fcs > 0:
            raise ValueError('branch convs cannot follow shared fcs '
                             f'(num_shared_fcs={num_shared_fcs})')
        self.in_channels = in_channels
        self.roi_feat_size = roi_feat_size
        self.conv_out_channels = conv_out_channels
        self.fc_out_channels = fc_out_channels
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg
        self.num_shared_fcs = num_shared_fcs
        self.relu = nn.ReLU(inplace=True)

        self.shared_convs, self.shared_fcs, shared_out = self._branch(
            num_shared_convs, num_shared_fcs, in_channels, is_shared=True)
        self.cls_convs, self.cls_fcs, cls_in = self._branch(num_cls_convs, num_cls_fcs,
                                                            shared_out)
        self.reg_convs, self.reg_fcs, reg_in = self._branch(num_reg_convs, num_reg_fcs,
                                                            shared_out)
        self.fc_cls = nn.Linear(cls_in, self.num_classes + 1)
        box_dim = 4 if self.reg_class_agnostic else 4 * self.num_classes
        self.fc_reg = nn.Linear(reg_in, box_dim)

    def _branch(self, num_convs: int, num_fcs: int, in_channels: int,
                is_shared: bool = False) -> Tuple[nn.ModuleList, nn.ModuleList, int]:
        """Build a stack of 3x3 convs then fcs; return it with its output width.

        The input is a [K, C, S, S] map unless the shared part already ended in fcs; a map
        is flattened before its first fc (or before the predictor when there is no fc).
        """
        spatial_input = is_shared or self.num_shared_fcs == 0
        convs = nn.ModuleList([
            ConvModule(in_channels if i == 0 else self.conv_out_channels,
                       self.conv_out_channels, 3, padding=1,
                       conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
            for i in range(num_convs)
        ])
        channels = self.conv_out_channels if num_convs > 0 else in_channels
        if spatial_input and (num_fcs > 0 or not is_shared):
            channels *= self.roi_feat_size**2  # flattened
        fcs = nn.ModuleList([
            nn.Linear(channels if i == 0 else self.fc_out_channels, self.fc_out_channels)
            for i in range(num_fcs)
        ])
        if num_fcs > 0:
            channels = self.fc_out_channels
        return convs, fcs, channels

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Classify and regress RoI features.

        Args:
            x (Tensor): RoI features, [K, C, roi_feat_size, roi_feat_size].

        Returns:
            tuple: ``cls_score`` [K, num_classes + 1] and ``bbox_pred``
            [K, num_classes * 4] (or [K, 4] when class agnostic).
        """
        for conv in self.shared_convs:
            x = conv(x)
        if len(self.shared_fcs) > 0:
            x = x.flatten(1)  # [K, C*7*7]
            for fc in self.shared_fcs:
                x = self.relu(fc(x))  # [K, fc_out_channels]
        return self._run_branch(x, self.cls_convs, self.cls_fcs, self.fc_cls), \
            self._run_branch(x, self.reg_convs, self.reg_fcs, self.fc_reg)

    def _run_branch(self, x: Tensor, convs: nn.ModuleList, fcs: nn.ModuleList,
                    predictor: nn.Linear) -> Tensor:
        for conv in convs:
            x = conv(x)
        if x.dim() > 2:
            x = x.flatten(1)
        for fc in fcs:
            x = self.relu(fc(x))
        return predictor(x)


@MODELS.register_module()
class Shared2FCBBoxHead(ConvFCBBoxHead):
    """Faster R-CNN's box head: two shared 1024-d fcs, then ``fc_cls`` and ``fc_reg``."""

    def __init__(self, fc_out_channels: int = 1024, **kwargs) -> None:
        super().__init__(num_shared_fcs=2, fc_out_channels=fc_out_channels, **kwargs)


@MODELS.register_module()
class Shared4Conv1FCBBoxHead(ConvFCBBoxHead):
    """Four shared 3x3 convs and one shared fc (the GN heads of mmdetection's configs)."""

    def __init__(self, fc_out_channels: int = 1024, **kwargs) -> None:
        super().__init__(num_shared_convs=4, num_shared_fcs=1,
                         fc_out_channels=fc_out_channels, **kwargs)
