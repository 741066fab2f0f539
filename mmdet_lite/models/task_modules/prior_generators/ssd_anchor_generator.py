"""Anchor generators of SSD: per-level min/max sizes and extra aspect ratios."""
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.utils import is_tuple_of
from torch import Tensor
from torch.nn.modules.utils import _pair

from mmdet_lite.registry import TASK_UTILS
from .anchor_generator import AnchorGenerator, PriorConfigError
from .legacy_anchor_generator import LegacyAnchorGenerator

# First-level (min, max) size in percent of the input, which the ratio range does not cover:
# {input_size: {basesize_ratio_range[0]: (min %, max %)}}.
_FIRST_LEVEL_PERCENT = {300: {0.15: (7, 15), 0.2: (10, 20)}, 512: {0.1: (4, 10), 0.15: (7, 15)}}


def ssd_sizes_from_ratio_range(input_size: int, basesize_ratio_range: Tuple[float, float],
                               num_levels: int) -> Tuple[List[int], List[int]]:
    """Per-level (min_sizes, max_sizes) of SSD from the base-size ratio range.

    Levels 2..L take ``input_size * r`` for ratios r stepping evenly (in whole percent) from
    ``basesize_ratio_range[0]`` to ``[1]``; the max size of a level is the min size of the next
    step. Level 1 gets fixed smaller sizes that depend on the input size and dataset.

    Args:
        input_size (int): 300 or 512.
        basesize_ratio_range (tuple[float, float]): (min, max) ratio of the input size.
        num_levels (int): Number of levels.

    Returns:
        tuple[list[int], list[int]]: min_sizes and max_sizes, one per level.
    """
    if input_size not in _FIRST_LEVEL_PERCENT:
        raise ValueError('Only support 300 or 512 in SSDAnchorGenerator when not setting '
                         f'min_sizes and max_sizes, got {input_size}.')
    min_ratio, max_ratio = (int(r * 100) for r in basesize_ratio_range)
    step = int(np.floor(max_ratio - min_ratio) / (num_levels - 2))
    min_sizes = [int(input_size * r / 100) for r in range(min_ratio, max_ratio + 1, step)]
    max_sizes = [int(input_size * (r + step) / 100)
                 for r in range(min_ratio, max_ratio + 1, step)]
    first = _FIRST_LEVEL_PERCENT[input_size].get(basesize_ratio_range[0])
    if first is None:
        raise ValueError(f'basesize_ratio_range[0] should be one of '
                         f'{sorted(_FIRST_LEVEL_PERCENT[input_size])} when input_size is '
                         f'{input_size}, got {basesize_ratio_range[0]}.')
    min_sizes.insert(0, int(input_size * first[0] / 100))
    max_sizes.insert(0, int(input_size * first[1] / 100))
    return min_sizes, max_sizes


@TASK_UTILS.register_module()
class SSDAnchorGenerator(AnchorGenerator):
    """Anchor generator of SSD.

    Each level has anchors of scales ``1`` and ``sqrt(max_size / min_size)`` at ratio 1, and
    of scale 1 at ratios ``1 / r`` and ``r`` for each ``r`` of the level; all are centred at
    half the stride. With ``scale_major=False`` (as SSD configs set) the base-anchor order
    is (ratio 1, scale 1), (ratio 1, larger scale), then the other ratios at scale 1.

    Args:
        strides (list[int | tuple[int, int]]): Stride per level.
        ratios (list[list[float]]): Extra aspect ratios per level (e.g. ``[2]`` or
            ``[2, 3]``).
        min_sizes (list[float], optional): Min anchor size per level; give with
            ``max_sizes``, or neither to derive both from ``basesize_ratio_range``.
        max_sizes (list[float], optional): Max anchor size per level.
        basesize_ratio_range (tuple[float, float]): Ratio range of the input size for the
            anchor sizes. Defaults to (0.15, 0.9).
        input_size (int): 300 (SSD300) or 512 (SSD512). Defaults to 300.
        scale_major (bool): Base-anchor layout, see :class:`AnchorGenerator`. Defaults to
            True.
        use_box_type (bool): Return grid priors as ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self,
                 strides: Sequence[Union[int, Tuple[int, int]]],
                 ratios: Sequence[Sequence[float]],
                 min_sizes: Optional[Sequence[float]] = None,
                 max_sizes: Optional[Sequence[float]] = None,
                 basesize_ratio_range: Tuple[float, float] = (0.15, 0.9),
                 input_size: int = 300,
                 scale_major: bool = True,
                 use_box_type: bool = False) -> None:
        if len(strides) != len(ratios):
            raise PriorConfigError(f'strides and ratios need one entry per level, got '
                                   f'{len(strides)} and {len(ratios)}')
        if (min_sizes is None) != (max_sizes is None):
            raise PriorConfigError('give both min_sizes and max_sizes, or neither')
        self.strides = [_pair(stride) for stride in strides]
        self.centers = [(stride[0] / 2., stride[1] / 2.) for stride in self.strides]
        # mmdetection sets these two only when deriving sizes; kept always so repr works.
        self.input_size = input_size
        self.basesize_ratio_range = basesize_ratio_range
        if min_sizes is None:
            if not is_tuple_of(basesize_ratio_range, float):
                raise PriorConfigError('basesize_ratio_range must be a tuple of floats, got '
                                       f'{basesize_ratio_range}')
            min_sizes, max_sizes = ssd_sizes_from_ratio_range(input_size, basesize_ratio_range,
                                                              self.num_levels)
        if not len(min_sizes) == len(max_sizes) == len(strides):
            raise PriorConfigError(f'min_sizes and max_sizes need one entry per stride '
                                   f'({len(strides)}), got {len(min_sizes)} and '
                                   f'{len(max_sizes)}')
        self.base_sizes = min_sizes
        self.scales = [torch.Tensor([1., np.sqrt(max_sizes[k] / min_sizes[k])])
                       for k in range(len(self.strides))]
        self.ratios = [torch.Tensor([1.] + [x for r in level for x in (1 / r, r)])
                       for level in ratios]
        self.scale_major = scale_major
        self.center_offset = 0
        self.base_anchors = self.gen_base_anchors()
        self.use_box_type = use_box_type

    def gen_base_anchors(self) -> List[Tensor]:
        """Base anchors of every level, in SSD's order (see the class docstring).

        Returns:
            list[Tensor]: One [2 + 2 * len(ratios[level]), 4] tensor per level.
        """
        multi_level = []
        for i, base_size in enumerate(self.base_sizes):
            anchors = self.gen_single_level_base_anchors(
                base_size, scales=self.scales[i], ratios=self.ratios[i], center=self.centers[i])
            # SSD configs use scale_major=False: rows are scale-major, ratios fastest, so
            # rows 0..R-1 are every ratio at scale 1 and row R is ratio 1 at the larger
            # scale, which goes second. (The same indices are applied with scale_major=True.)
            num_ratios = len(self.ratios[i])
            order = list(range(num_ratios))
            order.insert(1, num_ratios)
            multi_level.append(anchors[torch.tensor(order)])
        return multi_level

    def __repr__(self) -> str:
        """Multi-line summary in mmdetection's layout."""
        indent = '    '
        return (f'{self.__class__.__name__}(\n'
                f'{indent}strides={self.strides},\n'
                f'{indent}scales={self.scales},\n'
                f'{indent}scale_major={self.scale_major},\n'
                f'{indent}input_size={self.input_size},\n'
                f'{indent}scales={self.scales},\n'
                f'{indent}ratios={self.ratios},\n'
                f'{indent}num_levels={self.num_levels},\n'
                f'{indent}base_sizes={self.base_sizes},\n'
                f'{indent}basesize_ratio_range={self.basesize_ratio_range})')


@TASK_UTILS.register_module()
class LegacySSDAnchorGenerator(SSDAnchorGenerator, LegacyAnchorGenerator):
    """:class:`SSDAnchorGenerator` with the V1.x box convention of
    :class:`LegacyAnchorGenerator`, centred at ``(stride - 1) / 2``.

    Args:
        strides (list[int]): Stride per level.
        ratios (list[list[float]]): Extra aspect ratios per level.
        basesize_ratio_range (tuple[float, float]): Ratio range of the anchor sizes.
        input_size (int): 300 or 512. Defaults to 300.
        scale_major (bool): Defaults to True.
        use_box_type (bool): Defaults to False.
    """

    def __init__(self,
                 strides: Sequence[int],
                 ratios: Sequence[Sequence[float]],
                 basesize_ratio_range: Tuple[float, float],
                 input_size: int = 300,
                 scale_major: bool = True,
                 use_box_type: bool = False) -> None:
        super().__init__(strides=strides, ratios=ratios,
                         basesize_ratio_range=basesize_ratio_range, input_size=input_size,
                         scale_major=scale_major, use_box_type=use_box_type)
        self.centers = [((stride - 1) / 2., (stride - 1) / 2.) for stride in strides]
        self.base_anchors = self.gen_base_anchors()
