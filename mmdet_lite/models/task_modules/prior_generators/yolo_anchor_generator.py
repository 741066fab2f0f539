"""Anchor generator of YOLOv3: explicit (w, h) anchor sizes per level."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn.modules.utils import _pair

from mmdet_lite.registry import TASK_UTILS
from .anchor_generator import AnchorGenerator, PriorConfigError


@TASK_UTILS.register_module()
class YOLOAnchorGenerator(AnchorGenerator):
    """Anchors of fixed (w, h) sizes, centred in each grid cell (at half the stride).

    Args:
        strides (list[int | tuple[int, int]]): Stride per level.
        base_sizes (list[list[tuple[int, int]]]): Per level, the (w, h) of each anchor; every
            level must have the same number of anchors.
        use_box_type (bool): Return grid priors as ``HorizontalBoxes``. Defaults to False.
    """

    def __init__(self,
                 strides: Sequence[Union[int, Tuple[int, int]]],
                 base_sizes: Sequence[Sequence[Tuple[int, int]]],
                 use_box_type: bool = False) -> None:
        self.strides = [_pair(stride) for stride in strides]
        self.centers = [(stride[0] / 2., stride[1] / 2.) for stride in self.strides]
        num_per_level = len(base_sizes[0])
        self.base_sizes = []
        for level_sizes in base_sizes:
            if len(level_sizes) != num_per_level:
                raise PriorConfigError('every level needs the same number of base sizes, got '
                                       f'{[len(sizes) for sizes in base_sizes]}')
            self.base_sizes.append([_pair(size) for size in level_sizes])
        self.base_anchors = self.gen_base_anchors()
        self.use_box_type = use_box_type

    @property
    def num_levels(self) -> int:
        """int: Number of feature levels."""
        return len(self.base_sizes)

    def gen_base_anchors(self) -> List[Tensor]:
        """Base anchors of every level.

        Returns:
            list[Tensor]: One [A, 4] tensor per level.
        """
        return [
            self.gen_single_level_base_anchors(level_sizes, self.centers[i])
            for i, level_sizes in enumerate(self.base_sizes)
        ]

    def gen_single_level_base_anchors(self,
                                      base_sizes_per_level: Sequence[Tuple[int, int]],
                                      center: Optional[Tuple[float, float]] = None) -> Tensor:
        """Base anchors of one level.

        Args:
            base_sizes_per_level (list[tuple[int, int]]): (w, h) of each anchor.
            center (tuple[float, float]): (x, y) centre of the anchors.

        Returns:
            Tensor: Base anchors [A, 4].
        """
        x_center, y_center = center
        return torch.tensor(
            [[x_center - 0.5 * w, y_center - 0.5 * h, x_center + 0.5 * w, y_center + 0.5 * h]
             for w, h in base_sizes_per_level], dtype=torch.float32)
