"""RoIAlign with mmcv's constructor arguments, computed by ``torchvision.ops.roi_align``
(on a CPU the faster weighted-gather kernel of :mod:`..utils.cpu_ops`)."""
from typing import Tuple, Union

from torch import Tensor, nn

from mmdet_lite.registry import MODELS

from ..utils.cpu_ops import roi_align


@MODELS.register_module()
class RoIAlign(nn.Module):
    """Bilinear RoI pooling into a fixed grid (Mask R-CNN's RoIAlign).

    Same arguments as ``mmcv.ops.RoIAlign`` so mmdetection configs
    (``roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)``) work unchanged.
    Holds no weights.

    Args:
        output_size (int | tuple[int, int]): Output grid (h, w).
        spatial_scale (float): Feature-map scale relative to the input image (1 / stride).
        sampling_ratio (int): Sampling points per bin side; 0 picks ceil(roi_size / bin).
        pool_mode (str): Only 'avg' (what mmdetection uses) is supported.
        aligned (bool): Shift boxes by -0.5 px so pixel centres line up (Detectron2's fix).
        use_torchvision (bool): Accepted for config compatibility; always torchvision here.
    """

    def __init__(self,
                 output_size: Union[int, Tuple[int, int]],
                 spatial_scale: float = 1.0,
                 sampling_ratio: int = 0,
                 pool_mode: str = 'avg',
                 aligned: bool = True,
                 use_torchvision: bool = True) -> None:
        super().__init__()
        if pool_mode != 'avg':
            raise ValueError(f"RoIAlign: pool_mode must be 'avg', got {pool_mode!r} "
                             "(torchvision's roi_align averages samples)")
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.output_size = tuple(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = aligned

    def forward(self, feats: Tensor, rois: Tensor) -> Tensor:
        """Pool every RoI from its image's feature map.

        Args:
            feats (Tensor): Feature maps, [B, C, H, W].
            rois (Tensor): [K, 5] rows of (batch_idx, x1, y1, x2, y2) in input-image pixels.

        Returns:
            Tensor: Pooled features, [K, C, out_h, out_w].
        """
        return roi_align(feats, rois.to(feats.dtype), self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}')
