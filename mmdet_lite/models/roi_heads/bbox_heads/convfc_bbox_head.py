"""Box heads built from shared convs/fcs followed by class and box branches."""
from typing import Optional, Tuple

from mmcv.cnn import ConvModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import OptConfigType, OptMultiConfig
from .bbox_head import BBoxHead, BBoxHeadArgumentError


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
        conv_out_channels (int): Channels of the 3x3 convs.
        fc_out_channels (int): Width of the fully connected layers.
        conv_cfg, norm_cfg (dict, optional): Conv/norm layer configs for the convs.
        init_cfg (dict, optional): None adds Xavier for the fcs to BBoxHead's defaults.
        **kwargs: :class:`BBoxHead` arguments (``in_channels``, ``roi_feat_size``,
            ``num_classes``, ``with_avg_pool``, predictor configs, losses ...).
    """

    def __init__(self,
                 num_shared_convs: int = 0,
                 num_shared_fcs: int = 0,
                 num_cls_convs: int = 0,
                 num_cls_fcs: int = 0,
                 num_reg_convs: int = 0,
                 num_reg_fcs: int = 0,
                 conv_out_channels: int = 256,
                 fc_out_channels: int = 1024,
                 conv_cfg: OptConfigType = None,
                 norm_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 *args,
                 **kwargs) -> None:
        super().__init__(*args, init_cfg=init_cfg, **kwargs)
        if num_shared_convs + num_shared_fcs + num_cls_convs + num_cls_fcs + \
                num_reg_convs + num_reg_fcs <= 0:
            raise BBoxHeadArgumentError('ConvFCBBoxHead needs at least one conv or fc layer')
        if (num_cls_convs > 0 or num_reg_convs > 0) and num_shared_fcs > 0:
            raise BBoxHeadArgumentError('branch convs cannot follow shared fcs '
                                        f'(num_shared_fcs={num_shared_fcs})')
        if not self.with_cls and (num_cls_convs > 0 or num_cls_fcs > 0):
            raise BBoxHeadArgumentError('with_cls=False leaves no place for cls convs/fcs')
        if not self.with_reg and (num_reg_convs > 0 or num_reg_fcs > 0):
            raise BBoxHeadArgumentError('with_reg=False leaves no place for reg convs/fcs')
        self.num_shared_convs, self.num_shared_fcs = num_shared_convs, num_shared_fcs
        self.num_cls_convs, self.num_cls_fcs = num_cls_convs, num_cls_fcs
        self.num_reg_convs, self.num_reg_fcs = num_reg_convs, num_reg_fcs
        self.conv_out_channels = conv_out_channels
        self.fc_out_channels = fc_out_channels
        self.conv_cfg, self.norm_cfg = conv_cfg, norm_cfg

        self.shared_convs, self.shared_fcs, self.shared_out_channels = self._branch(
            num_shared_convs, num_shared_fcs, self.in_channels, is_shared=True)
        self.cls_convs, self.cls_fcs, self.cls_last_dim = self._branch(
            num_cls_convs, num_cls_fcs, self.shared_out_channels)
        self.reg_convs, self.reg_fcs, self.reg_last_dim = self._branch(
            num_reg_convs, num_reg_fcs, self.shared_out_channels)
        if num_shared_fcs == 0 and not self.with_avg_pool:
            # A branch without fcs feeds its flattened map to the predictor.
            if num_cls_fcs == 0:
                self.cls_last_dim *= self.roi_feat_area
            if num_reg_fcs == 0:
                self.reg_last_dim *= self.roi_feat_area
        self.relu = nn.ReLU(inplace=True)
        # BBoxHead sized the predictors for the raw RoI features; the branches change that.
        if self.with_cls:
            self.fc_cls = self._build_cls_predictor(self.cls_last_dim)
        if self.with_reg:
            self.fc_reg = self._build_reg_predictor(self.reg_last_dim)
        if init_cfg is None:
            self.init_cfg += [
                dict(type='Xavier', distribution='uniform',
                     override=[dict(name='shared_fcs'), dict(name='cls_fcs'),
                               dict(name='reg_fcs')]),
            ]

    def _branch(self, num_convs: int, num_fcs: int, in_channels: int,
                is_shared: bool = False) -> Tuple[nn.ModuleList, nn.ModuleList, int]:
        """Build a stack of 3x3 convs then fcs; return it with its output width.

        The input is a [K, C, S, S] map unless the shared part already ended in fcs; a map
        is average-pooled (``with_avg_pool``) or flattened before its first fc.
        """
        convs = nn.ModuleList([
            ConvModule(in_channels if i == 0 else self.conv_out_channels,
                       self.conv_out_channels, 3, padding=1,
                       conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg)
            for i in range(num_convs)
        ])
        channels = self.conv_out_channels if num_convs > 0 else in_channels
        fcs = nn.ModuleList()
        if num_fcs > 0:
            spatial_input = is_shared or self.num_shared_fcs == 0
            if spatial_input and not self.with_avg_pool:
                channels *= self.roi_feat_area  # flattened
            fcs.extend(
                nn.Linear(channels if i == 0 else self.fc_out_channels, self.fc_out_channels)
                for i in range(num_fcs))
            channels = self.fc_out_channels
        return convs, fcs, channels

    def forward(self, x: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Classify and regress RoI features.

        Args:
            x (Tensor): RoI features, [K, C, roi_feat_size, roi_feat_size].

        Returns:
            tuple: ``cls_score`` [K, num_classes + 1] and ``bbox_pred``
            [K, num_classes * 4] (or [K, 4] when class agnostic); None for a missing branch.
        """
        for conv in self.shared_convs:
            x = conv(x)
        if self.num_shared_fcs > 0:
            x = self._to_vector(x)  # [K, C*7*7] (or [K, C] pooled)
            for fc in self.shared_fcs:
                x = self.relu(fc(x))  # [K, fc_out_channels]
        cls_score = self._run_branch(x, self.cls_convs, self.cls_fcs, self.fc_cls) \
            if self.with_cls else None
        bbox_pred = self._run_branch(x, self.reg_convs, self.reg_fcs, self.fc_reg) \
            if self.with_reg else None
        return cls_score, bbox_pred

    def _to_vector(self, x: Tensor) -> Tensor:
        if self.with_avg_pool:
            x = self.avg_pool(x)
        return x.flatten(1)

    def _run_branch(self, x: Tensor, convs: nn.ModuleList, fcs: nn.ModuleList,
                    predictor: nn.Module) -> Tensor:
        for conv in convs:
            x = conv(x)
        if x.dim() > 2:
            x = self._to_vector(x)
        for fc in fcs:
            x = self.relu(fc(x))
        return predictor(x)


@MODELS.register_module()
class Shared2FCBBoxHead(ConvFCBBoxHead):
    """Faster R-CNN's box head: two shared 1024-d fcs, then ``fc_cls`` and ``fc_reg``."""

    def __init__(self, fc_out_channels: int = 1024, *args, **kwargs) -> None:
        super().__init__(num_shared_convs=0, num_shared_fcs=2, num_cls_convs=0,
                         num_cls_fcs=0, num_reg_convs=0, num_reg_fcs=0,
                         fc_out_channels=fc_out_channels, *args, **kwargs)


@MODELS.register_module()
class Shared4Conv1FCBBoxHead(ConvFCBBoxHead):
    """Four shared 3x3 convs and one shared fc (the GN heads of mmdetection's configs)."""

    def __init__(self, fc_out_channels: int = 1024, *args, **kwargs) -> None:
        super().__init__(num_shared_convs=4, num_shared_fcs=1, num_cls_convs=0,
                         num_cls_fcs=0, num_reg_convs=0, num_reg_fcs=0,
                         fc_out_channels=fc_out_channels, *args, **kwargs)
