"""Pool each RoI from the one FPN level that matches its size."""
from typing import Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.utils import ConfigType, OptMultiConfig


@MODELS.register_module()
class SingleRoIExtractor(BaseModule):
    """RoI feature extractor that maps every RoI to a single pyramid level (FPN paper, eq. 1).

    A RoI of scale ``s = sqrt(w * h)`` goes to level
    ``floor(log2(s / finest_scale + 1e-6))``, clamped to the available levels: with
    ``finest_scale=56``, RoIs smaller than 112 px use P2, up to 224 px P3, and so on.

    Args:
        roi_layer (dict): Pooling layer config, e.g.
            ``dict(type='RoIAlign', output_size=7, sampling_ratio=0)``.
        out_channels (int): Channels of the pooled features (the FPN width).
        featmap_strides (list[int]): Stride of each input level, e.g. [4, 8, 16, 32].
        finest_scale (int): RoI scale mapped to the boundary of level 0 and 1.
        init_cfg (dict, optional): Unused; the extractor holds no weights.
    """

    def __init__(self,
                 roi_layer: ConfigType,
                 out_channels: int,
                 featmap_strides: Sequence[int],
                 finest_scale: int = 56,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.out_channels = out_channels
        self.featmap_strides = list(featmap_strides)
        self.finest_scale = finest_scale
        self.roi_layers = nn.ModuleList([
            MODELS.build(dict(roi_layer, spatial_scale=1.0 / stride))
            for stride in self.featmap_strides
        ])

    @property
    def num_inputs(self) -> int:
        """Number of feature levels the extractor pools from."""
        return len(self.featmap_strides)

    def map_roi_levels(self, rois: Tensor, num_levels: int) -> Tensor:
        """Assign each RoI to a pyramid level by its scale.

        Args:
            rois (Tensor): [K, 5] (batch_idx, x1, y1, x2, y2).
            num_levels (int): Number of levels.

        Returns:
            Tensor: [K] level index (int64) of each RoI.
        """
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        levels = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return levels.clamp(min=0, max=num_levels - 1).long()

    def forward(self, feats: Tuple[Tensor, ...], rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        """Pool the RoIs.

        Args:
            feats (tuple[Tensor]): Pyramid levels, [B, C, H/s, W/s] for each stride s.
            rois (Tensor): [K, 5] (batch_idx, x1, y1, x2, y2) in input-image pixels.
            roi_scale_factor (float, optional): Enlarge RoIs around their centre before
                pooling (after choosing their level; ignored with a single level).

        Returns:
            Tensor: [K, C, out_h, out_w] pooled features, in the order of ``rois``.
        """
        out_h, out_w = self.roi_layers[0].output_size
        num_levels = len(feats)
        roi_feats = feats[0].new_zeros(rois.size(0), self.out_channels, out_h, out_w)
        if rois.size(0) == 0:
            return roi_feats
        if num_levels == 1:
            return self.roi_layers[0](feats[0], rois)
        # Levels come from the RoIs as given; only the pooled window is enlarged (mmdet).
        target_levels = self.map_roi_levels(rois, num_levels)
        if roi_scale_factor is not None:
            rois = self._rescale_rois(rois, roi_scale_factor)
        for level in range(num_levels):
            inds = (target_levels == level).nonzero(as_tuple=True)[0]
            if inds.numel() > 0:
                roi_feats[inds] = self.roi_layers[level](feats[level], rois[inds])
        return roi_feats

    @staticmethod
    def _rescale_rois(rois: Tensor, scale_factor: float) -> Tensor:
        cx = (rois[:, 1] + rois[:, 3]) * 0.5
        cy = (rois[:, 2] + rois[:, 4]) * 0.5
        half_w = (rois[:, 3] - rois[:, 1]) * scale_factor * 0.5
        half_h = (rois[:, 4] - rois[:, 2]) * scale_factor * 0.5
        return torch.stack([rois[:, 0], cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1)
