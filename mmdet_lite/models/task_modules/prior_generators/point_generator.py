"""Point (anchor-free) prior generators: one point per feature-map location."""
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from mmdet_lite.registry import TASK_UTILS
from .anchor_generator import PriorConfigError, _meshgrid

DeviceType = Union[str, torch.device]


def _valid_grid(featmap_size: Tuple[int, int], valid_size: Tuple[int, int],
                device: DeviceType) -> Tensor:
    """Bool [H * W] flags, True in the top-left ``valid_size`` block of the feature map."""
    feat_h, feat_w = featmap_size
    valid_h, valid_w = valid_size
    if valid_h > feat_h or valid_w > feat_w:
        raise PriorConfigError(f'valid_size {tuple(valid_size)} exceeds featmap_size '
                               f'{tuple(featmap_size)}')
    valid_x = torch.zeros(feat_w, dtype=torch.bool, device=device)
    valid_y = torch.zeros(feat_h, dtype=torch.bool, device=device)
    valid_x[:valid_w] = True
    valid_y[:valid_h] = True
    valid_xx, valid_yy = _meshgrid(valid_x, valid_y)
    return valid_xx & valid_yy


@TASK_UTILS.register_module()
class PointGenerator:
    """Single-level point generator (RepPoints): points at ``(x * stride, y * stride)``."""

    _meshgrid = staticmethod(_meshgrid)

    def grid_points(self,
                    featmap_size: Tuple[int, int],
                    stride: int = 16,
                    device: DeviceType = 'cpu') -> Tensor:
        """Points of one feature map, x fastest.

        Args:
            featmap_size (tuple[int, int]): (H, W).
            stride (int): Stride of the feature map. Defaults to 16.
            device (str | torch.device): Device of the points.

        Returns:
            Tensor: [H * W, 3] rows (x, y, stride).
        """
        feat_h, feat_w = featmap_size
        shift_x = torch.arange(0., feat_w, device=device) * stride
        shift_y = torch.arange(0., feat_h, device=device) * stride
        shift_xx, shift_yy = self._meshgrid(shift_x, shift_y)
        strides = shift_x.new_full((shift_xx.shape[0], ), stride)
        return torch.stack([shift_xx, shift_yy, strides], dim=-1)

    def valid_flags(self,
                    featmap_size: Tuple[int, int],
                    valid_size: Tuple[int, int],
                    device: DeviceType = 'cpu') -> Tensor:
        """Flags of the points inside the valid (h, w) block of the feature map.

        Args:
            featmap_size (tuple[int, int]): (H, W).
            valid_size (tuple[int, int]): (h, w) of the valid top-left block.
            device (str | torch.device): Device of the flags.

        Returns:
            Tensor: Bool [H * W].
        """
        return _valid_grid(featmap_size, valid_size, device)


@TASK_UTILS.register_module()
class MlvlPointGenerator:
    """Points of multi-level feature maps (FCOS, ATSS, YOLOX, RTMDet...).

    A level with stride (s_w, s_h) has points ``((x + offset) * s_w, (y + offset) * s_h)``,
    ordered row-major (x fastest).

    Args:
        strides (list[int | tuple[int, int]]): Stride per level, as ``s`` or ``(s_w, s_h)``.
        offset (float): Point offset in units of the stride. Defaults to 0.5.
    """

    def __init__(self, strides: Sequence[Union[int, Tuple[int, int]]],
                 offset: float = 0.5) -> None:
        self.strides = [_pair(stride) for stride in strides]
        self.offset = offset

    @property
    def num_levels(self) -> int:
        """int: Number of feature levels."""
        return len(self.strides)

    @property
    def num_base_priors(self) -> List[int]:
        """list[int]: Priors per location of each level (always 1)."""
        return [1 for _ in range(len(self.strides))]

    @staticmethod
    def _meshgrid(x: Tensor, y: Tensor, row_major: bool = True) -> Tuple[Tensor, Tensor]:
        """Flattened grid, x fastest; (xx, yy), or (yy, xx) when not ``row_major``."""
        yy, xx = torch.meshgrid(y, x, indexing='ij')
        if row_major:
            return xx.reshape(-1), yy.reshape(-1)
        return yy.reshape(-1), xx.reshape(-1)

    def grid_priors(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    dtype: torch.dtype = torch.float32,
                    device: DeviceType = 'cpu',
                    with_stride: bool = False) -> List[Tensor]:
        """Points of all levels.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H, W) per level.
            dtype (torch.dtype): Point dtype. Defaults to float32.
            device (str | torch.device): Point device.
            with_stride (bool): Append (stride_w, stride_h) to every point.

        Returns:
            list[Tensor]: One [H * W, 2] (x, y) or, with stride, [H * W, 4]
            (x, y, stride_w, stride_h) tensor per level.
        """
        if len(featmap_sizes) != self.num_levels:
            raise PriorConfigError(f'featmap_sizes must have one entry per level '
                                   f'({self.num_levels}), but got {len(featmap_sizes)}')
        return [
            self.single_level_grid_priors(featmap_sizes[i], level_idx=i, dtype=dtype,
                                          device=device, with_stride=with_stride)
            for i in range(self.num_levels)
        ]

    def single_level_grid_priors(self,
                                 featmap_size: Tuple[int, int],
                                 level_idx: int,
                                 dtype: torch.dtype = torch.float32,
                                 device: DeviceType = 'cpu',
                                 with_stride: bool = False) -> Tensor:
        """Points of one level.

        Args:
            featmap_size (tuple[int, int]): (H, W).
            level_idx (int): Level index.
            dtype (torch.dtype): Point dtype.
            device (str | torch.device): Point device.
            with_stride (bool): Append (stride_w, stride_h) to every point.

        Returns:
            Tensor: [H * W, 2] or [H * W, 4]; row ``y * W + x`` is location (x, y).
        """
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level_idx]
        shift_x = ((torch.arange(0, feat_w, device=device) + self.offset) * stride_w).to(dtype)
        shift_y = ((torch.arange(0, feat_h, device=device) + self.offset) * stride_h).to(dtype)
        shift_xx, shift_yy = self._meshgrid(shift_x, shift_y)
        if not with_stride:
            return torch.stack([shift_xx, shift_yy], dim=-1)
        strides_w = shift_xx.new_full((shift_xx.shape[0], ), stride_w).to(dtype)
        strides_h = shift_xx.new_full((shift_yy.shape[0], ), stride_h).to(dtype)
        return torch.stack([shift_xx, shift_yy, strides_w, strides_h], dim=-1)

    def valid_flags(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    pad_shape: Sequence[int],
                    device: DeviceType = 'cpu') -> List[Tensor]:
        """Flags of the points whose cell lies inside the padded image, per level.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H, W) per level.
            pad_shape (tuple): Padded image shape (h, w, ...).
            device (str | torch.device): Device of the flags.

        Returns:
            list[Tensor]: One bool [H * W] tensor per level.
        """
        if len(featmap_sizes) != self.num_levels:
            raise PriorConfigError(f'featmap_sizes must have one entry per level '
                                   f'({self.num_levels}), but got {len(featmap_sizes)}')
        h, w = pad_shape[:2]
        flags = []
        for i in range(self.num_levels):
            stride_w, stride_h = self.strides[i]
            feat_h, feat_w = featmap_sizes[i]
            valid_h = min(int(np.ceil(h / stride_h)), feat_h)
            valid_w = min(int(np.ceil(w / stride_w)), feat_w)
            flags.append(self.single_level_valid_flags((feat_h, feat_w), (valid_h, valid_w),
                                                       device=device))
        return flags

    def single_level_valid_flags(self,
                                 featmap_size: Tuple[int, int],
                                 valid_size: Tuple[int, int],
                                 device: DeviceType = 'cpu') -> Tensor:
        """Flags of one level: True in the top-left ``valid_size`` (h, w) block.

        Returns:
            Tensor: Bool [H * W].
        """
        return _valid_grid(featmap_size, valid_size, device)

    def sparse_priors(self,
                      prior_idxs: Tensor,
                      featmap_size: Tuple[int, int],
                      level_idx: int,
                      dtype: torch.dtype = torch.float32,
                      device: DeviceType = 'cpu') -> Tensor:
        """Points at given indices of one level's grid.

        Args:
            prior_idxs (Tensor): Indices [K] into the level's H * W points.
            featmap_size (tuple[int, int]): (H, W).
            level_idx (int): Level index.
            dtype (torch.dtype): Point dtype.
            device (str | torch.device): Point device.

        Returns:
            Tensor: Points [K, 2] (x, y).
        """
        height, width = featmap_size
        x = (prior_idxs % width + self.offset) * self.strides[level_idx][0]
        y = ((prior_idxs // width) % height + self.offset) * self.strides[level_idx][1]
        return torch.stack([x, y], 1).to(dtype).to(device)
