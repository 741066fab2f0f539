"""Anchor generator for anchor-based heads (RPN, RetinaNet): base anchors tiled over each level."""
import warnings
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from mmdet_lite.registry import TASK_UTILS
from mmdet_lite.structures.bbox import HorizontalBoxes

DeviceType = Union[str, torch.device]


class PriorConfigError(ValueError, AssertionError):
    """Inconsistent prior-generator arguments (mmdetection asserts these)."""


def _meshgrid(x: Tensor, y: Tensor, row_major: bool = True) -> Tuple[Tensor, Tensor]:
    """Grid with x varying fastest. Returns flattened (xx, yy), each [len(y) * len(x)]; (yy, xx)
    when not ``row_major``."""
    xx = x.repeat(len(y))
    yy = y.view(-1, 1).repeat(1, len(x)).view(-1)
    return (xx, yy) if row_major else (yy, xx)


@TASK_UTILS.register_module()
class AnchorGenerator:
    """Standard anchor generator for 2D anchor-based detectors.

    Each level has ``len(ratios) * len(scales)`` base anchors centred at
    ``center_offset * stride`` (or at ``centers[level]``); they are shifted to every feature-map
    location. Output order: locations row-major (x fastest), then base anchors.

    Args:
        strides (list[int | tuple[int, int]]): Stride per level, as ``s`` or ``(s_w, s_h)``.
        ratios (list[float]): Height / width ratios of the anchors.
        scales (list[float], optional): Anchor scales (multiples of the base size). Mutually
            exclusive with ``octave_base_scale``/``scales_per_octave``.
        base_sizes (list[int], optional): Base size per level; defaults to the smaller stride.
        scale_major (bool): If True, base anchors are ordered ratio-major with scales varying
            fastest (mmdet's ``scale_major`` layout); else scales-major. Defaults to True.
        octave_base_scale (int, optional): Base scale of the octave scales (RetinaNet: 4).
        scales_per_octave (int, optional): Number of scales per octave (RetinaNet: 3), giving
            scales ``octave_base_scale * 2**(i / scales_per_octave)``.
        centers (list[tuple[float, float]], optional): Base-anchor centre per level.
        center_offset (float): Centre as a fraction of the stride in [0, 1]. Defaults to 0.
        use_box_type (bool): Return grid priors as ``HorizontalBoxes``. Defaults to False.

    Example:
        >>> gen = AnchorGenerator(strides=[16], ratios=[1.], scales=[1.], base_sizes=[9])
        >>> gen.grid_priors([(2, 2)])
        [tensor([[-4.5000, -4.5000,  4.5000,  4.5000],
                [11.5000, -4.5000, 20.5000,  4.5000],
                [-4.5000, 11.5000,  4.5000, 20.5000],
                [11.5000, 11.5000, 20.5000, 20.5000]])]
    """

    def __init__(self,
                 strides: Sequence[Union[int, Tuple[int, int]]],
                 ratios: Sequence[float],
                 scales: Optional[Sequence[float]] = None,
                 base_sizes: Optional[Sequence[int]] = None,
                 scale_major: bool = True,
                 octave_base_scale: Optional[int] = None,
                 scales_per_octave: Optional[int] = None,
                 centers: Optional[Sequence[Tuple[float, float]]] = None,
                 center_offset: float = 0.,
                 use_box_type: bool = False) -> None:
        if center_offset != 0 and centers is not None:
            raise PriorConfigError('centers and a non-zero center_offset can not be used '
                                   f'together, got centers={centers}')
        if not 0 <= center_offset <= 1:
            raise ValueError(f'center_offset must be in [0, 1], but got {center_offset}')
        if centers is not None and len(centers) != len(strides):
            raise PriorConfigError(f'centers must have one entry per stride ({len(strides)}), '
                                   f'but got {len(centers)}')
        self.strides = [_pair(stride) for stride in strides]  # (w, h) per level
        self.base_sizes = ([min(stride) for stride in self.strides]
                           if base_sizes is None else list(base_sizes))
        if len(self.base_sizes) != len(self.strides):
            raise PriorConfigError(f'base_sizes must have one entry per stride '
                                   f'({len(self.strides)}), but got {len(self.base_sizes)}')

        use_octave = octave_base_scale is not None and scales_per_octave is not None
        if use_octave == (scales is not None):
            raise PriorConfigError('Give either scales, or both octave_base_scale and '
                                   'scales_per_octave, but not both')
        if use_octave:
            scales = [octave_base_scale * 2**(i / scales_per_octave)
                      for i in range(scales_per_octave)]
        self.scales = torch.tensor(scales, dtype=torch.float32)
        self.octave_base_scale = octave_base_scale
        self.scales_per_octave = scales_per_octave
        self.ratios = torch.tensor(ratios, dtype=torch.float32)
        self.scale_major = scale_major
        self.centers = centers
        self.center_offset = center_offset
        self.use_box_type = use_box_type
        self.base_anchors = self.gen_base_anchors()

    _meshgrid = staticmethod(_meshgrid)

    @property
    def num_base_priors(self) -> List[int]:
        """list[int]: Number of base anchors per location, for each level."""
        return [base_anchors.size(0) for base_anchors in self.base_anchors]

    @property
    def num_base_anchors(self) -> List[int]:
        """list[int]: Alias of ``num_base_priors`` (older mmdet name)."""
        return self.num_base_priors

    @property
    def num_levels(self) -> int:
        """int: Number of feature levels."""
        return len(self.strides)

    def gen_base_anchors(self) -> List[Tensor]:
        """Base anchors of every level.

        Returns:
            list[Tensor]: One [A, 4] tensor per level, A = len(ratios) * len(scales).
        """
        return [
            self.gen_single_level_base_anchors(
                base_size, self.scales, self.ratios,
                center=None if self.centers is None else self.centers[i])
            for i, base_size in enumerate(self.base_sizes)
        ]

    def gen_single_level_base_anchors(self,
                                      base_size: Union[int, float],
                                      scales: Tensor,
                                      ratios: Tensor,
                                      center: Optional[Tuple[float, float]] = None) -> Tensor:
        """Base anchors of one level, centred at ``center`` (or ``center_offset * base_size``).

        A ratio r = h / w keeps the area: ``w = base * scale / sqrt(r)``, ``h = base * scale *
        sqrt(r)``.

        Args:
            base_size (int | float): Base size of the level.
            scales (Tensor): Scales [S].
            ratios (Tensor): Height / width ratios [R].
            center (tuple[float, float], optional): (x, y) centre.

        Returns:
            Tensor: Base anchors [R * S, 4] (x1, y1, x2, y2).
        """
        w = h = base_size
        if center is None:
            x_center, y_center = self.center_offset * w, self.center_offset * h
        else:
            x_center, y_center = center
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        if self.scale_major:
            ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)  # [R * S]
            hs = (h * h_ratios[:, None] * scales[None, :]).view(-1)
        else:
            ws = (w * scales[:, None] * w_ratios[None, :]).view(-1)  # [S * R]
            hs = (h * scales[:, None] * h_ratios[None, :]).view(-1)
        return torch.stack(
            [x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws, y_center + 0.5 * hs],
            dim=-1)

    def grid_priors(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    dtype: torch.dtype = torch.float32,
                    device: DeviceType = 'cpu') -> List[Tensor]:
        """Anchors of all levels.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H, W) of each level's feature map.
            dtype (torch.dtype): Anchor dtype. Defaults to float32.
            device (str | torch.device): Anchor device. Defaults to 'cpu'.

        Returns:
            list[Tensor | HorizontalBoxes]: One [H * W * A, 4] tensor per level
            (``HorizontalBoxes`` with ``use_box_type``).
        """
        if len(featmap_sizes) != self.num_levels:
            raise PriorConfigError(f'featmap_sizes must have one entry per level '
                                   f'({self.num_levels}), but got {len(featmap_sizes)}')
        return [
            self.single_level_grid_priors(featmap_sizes[i], i, dtype=dtype, device=device)
            for i in range(self.num_levels)
        ]

    def single_level_grid_priors(self,
                                 featmap_size: Tuple[int, int],
                                 level_idx: int,
                                 dtype: torch.dtype = torch.float32,
                                 device: DeviceType = 'cpu') -> Tensor:
        """Anchors of one level.

        Args:
            featmap_size (tuple[int, int]): (H, W) of the feature map.
            level_idx (int): Level index.
            dtype (torch.dtype): Anchor dtype.
            device (str | torch.device): Anchor device.

        Returns:
            Tensor | HorizontalBoxes: Anchors [H * W * A, 4]; row ``(y * W + x) * A + a`` is
            base anchor ``a`` shifted to location (x, y).
        """
        base_anchors = self.base_anchors[level_idx].to(device=device, dtype=dtype)  # [A, 4]
        feat_h, feat_w = featmap_size
        stride_w, stride_h = self.strides[level_idx]
        shift_x = torch.arange(0, feat_w, device=device).to(dtype) * stride_w  # [W]
        shift_y = torch.arange(0, feat_h, device=device).to(dtype) * stride_h  # [H]
        shift_xx, shift_yy = self._meshgrid(shift_x, shift_y)  # [H * W] each
        shifts = torch.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1)  # [H * W, 4]
        all_anchors = (shifts[:, None, :] + base_anchors[None, :, :]).view(-1, 4)
        if self.use_box_type:
            return HorizontalBoxes(all_anchors)
        return all_anchors

    def sparse_priors(self,
                      prior_idxs: Tensor,
                      featmap_size: Tuple[int, int],
                      level_idx: int,
                      dtype: torch.dtype = torch.float32,
                      device: DeviceType = 'cpu') -> Tensor:
        """Anchors at given indices of one level's ``single_level_grid_priors`` output.

        Args:
            prior_idxs (Tensor): Indices [K] into the level's [H * W * A] anchors.
            featmap_size (tuple[int, int]): (H, W) of the feature map.
            level_idx (int): Level index.
            dtype (torch.dtype): Anchor dtype.
            device (str | torch.device): Anchor device.

        Returns:
            Tensor: Anchors [K, 4].
        """
        height, width = featmap_size
        num_base = self.num_base_priors[level_idx]
        base_anchor_id = prior_idxs % num_base
        location = prior_idxs // num_base
        x = (location % width) * self.strides[level_idx][0]
        y = (location // width) % height * self.strides[level_idx][1]
        shifts = torch.stack([x, y, x, y], 1).to(dtype=dtype, device=device)
        return shifts + self.base_anchors[level_idx][base_anchor_id, :].to(
            dtype=dtype, device=device)

    def grid_anchors(self,
                     featmap_sizes: Sequence[Tuple[int, int]],
                     device: DeviceType = 'cpu') -> List[Tensor]:
        """Deprecated form of :meth:`grid_priors` (always tensors, dtype of the base anchors).

        Args:
            featmap_sizes (list[tuple[int, int]]): (H, W) of each level.
            device (str | torch.device): Anchor device.

        Returns:
            list[Tensor]: One [H * W * A, 4] tensor per level.
        """
        warnings.warn('``grid_anchors`` would be deprecated soon. Please use ``grid_priors`` ')
        if len(featmap_sizes) != self.num_levels:
            raise PriorConfigError(f'featmap_sizes must have one entry per level '
                                   f'({self.num_levels}), but got {len(featmap_sizes)}')
        return [
            self.single_level_grid_anchors(self.base_anchors[i].to(device), featmap_sizes[i],
                                           self.strides[i], device=device)
            for i in range(self.num_levels)
        ]

    def single_level_grid_anchors(self,
                                  base_anchors: Tensor,
                                  featmap_size: Tuple[int, int],
                                  stride: Tuple[int, int] = (16, 16),
                                  device: DeviceType = 'cpu') -> Tensor:
        """Deprecated form of :meth:`single_level_grid_priors` taking the base anchors.

        Args:
            base_anchors (Tensor): Base anchors [A, 4].
            featmap_size (tuple[int, int]): (H, W) of the feature map.
            stride (tuple[int, int]): (stride_w, stride_h). Defaults to (16, 16).
            device (str | torch.device): Anchor device.

        Returns:
            Tensor: Anchors [H * W * A, 4] in the layout of ``single_level_grid_priors``.
        """
        warnings.warn('``single_level_grid_anchors`` would be deprecated soon. '
                      'Please use ``single_level_grid_priors`` ')
        feat_h, feat_w = featmap_size
        shift_x = torch.arange(0, feat_w, device=device) * stride[0]
        shift_y = torch.arange(0, feat_h, device=device) * stride[1]
        shift_xx, shift_yy = self._meshgrid(shift_x, shift_y)
        shifts = torch.stack([shift_xx, shift_yy, shift_xx, shift_yy], dim=-1).type_as(base_anchors)
        return (base_anchors[None, :, :] + shifts[:, None, :]).view(-1, 4)

    def valid_flags(self,
                    featmap_sizes: Sequence[Tuple[int, int]],
                    pad_shape: Sequence[int],
                    device: DeviceType = 'cpu') -> List[Tensor]:
        """Flags of the anchors whose location lies inside the padded image.

        A batch is padded to a common size, so a small image's feature map has locations
        beyond its own padded extent; their anchors are invalid.

        Args:
            featmap_sizes (list[tuple[int, int]]): (H, W) of each level.
            pad_shape (tuple): Padded image shape (h, w, ...).
            device (str | torch.device): Device of the flags.

        Returns:
            list[Tensor]: One bool [H * W * A] tensor per level.
        """
        if len(featmap_sizes) != self.num_levels:
            raise PriorConfigError(f'featmap_sizes must have one entry per level '
                                   f'({self.num_levels}), but got {len(featmap_sizes)}')
        h, w = pad_shape[:2]
        multi_level_flags = []
        for i in range(self.num_levels):
            stride_w, stride_h = self.strides[i]
            feat_h, feat_w = featmap_sizes[i]
            valid_h = min(int(np.ceil(h / stride_h)), feat_h)
            valid_w = min(int(np.ceil(w / stride_w)), feat_w)
            multi_level_flags.append(
                self.single_level_valid_flags((feat_h, feat_w), (valid_h, valid_w),
                                              self.num_base_priors[i], device=device))
        return multi_level_flags

    def single_level_valid_flags(self,
                                 featmap_size: Tuple[int, int],
                                 valid_size: Tuple[int, int],
                                 num_base_anchors: int,
                                 device: DeviceType = 'cpu') -> Tensor:
        """Valid flags of one level.

        Args:
            featmap_size (tuple[int, int]): (H, W) of the feature map.
            valid_size (tuple[int, int]): (h, w) of the valid top-left region.
            num_base_anchors (int): Base anchors per location.
            device (str | torch.device): Device of the flags.

        Returns:
            Tensor: Bool flags [H * W * num_base_anchors].
        """
        feat_h, feat_w = featmap_size
        valid_h, valid_w = valid_size
        if valid_h > feat_h or valid_w > feat_w:
            raise PriorConfigError(f'valid_size {tuple(valid_size)} exceeds featmap_size '
                                   f'{tuple(featmap_size)}')
        valid_x = torch.zeros(feat_w, dtype=torch.bool, device=device)
        valid_y = torch.zeros(feat_h, dtype=torch.bool, device=device)
        valid_x[:valid_w] = True
        valid_y[:valid_h] = True
        valid_xx, valid_yy = self._meshgrid(valid_x, valid_y)
        valid = valid_xx & valid_yy  # [H * W]
        return valid[:, None].expand(valid.size(0), num_base_anchors).reshape(-1)

    def __repr__(self) -> str:
        """Multi-line summary in mmdetection's layout (tensors printed as tensors)."""
        indent = '    '
        return (f'{self.__class__.__name__}(\n'
                f'{indent}strides={self.strides},\n'
                f'{indent}ratios={self.ratios},\n'
                f'{indent}scales={self.scales},\n'
                f'{indent}base_sizes={self.base_sizes},\n'
                f'{indent}scale_major={self.scale_major},\n'
                f'{indent}octave_base_scale={self.octave_base_scale},\n'
                f'{indent}scales_per_octave={self.scales_per_octave},\n'
                # mmdetection has no comma after num_levels; kept for identical output.
                f'{indent}num_levels={self.num_levels}\n'
                f'{indent}centers={self.centers},\n'
                f'{indent}center_offset={self.center_offset})')
