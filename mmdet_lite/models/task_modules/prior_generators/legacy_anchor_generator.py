"""Anchor generator of MMDetection V1.x (integer-pixel boxes, quantized corners)."""
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from mmdet_lite.registry import TASK_UTILS
from .anchor_generator import AnchorGenerator


@TASK_UTILS.register_module()
class LegacyAnchorGenerator(AnchorGenerator):
    """:class:`AnchorGenerator` with the V1.x box convention, for testing V1.x models.

    Differences: a box of size ``s`` spans ``s - 1`` (corners at ``centre ± (s - 1) / 2``),
    the default centre is ``center_offset * (base_size - 1)`` (V1.x models use
    ``center_offset=0.5``), and base anchor corners are rounded. Arguments are those of
    :class:`AnchorGenerator`.

    Example:
        >>> gen = LegacyAnchorGenerator([16], [1.], [1.], [9], center_offset=0.5)
        >>> gen.grid_priors([(2, 2)])[0]
        tensor([[ 0.,  0.,  8.,  8.],
                [16.,  0., 24.,  8.],
                [ 0., 16.,  8., 24.],
                [16., 16., 24., 24.]])
    """

    def gen_single_level_base_anchors(self,
                                      base_size: Union[int, float],
                                      scales: Tensor,
                                      ratios: Tensor,
                                      center: Optional[Tuple[float, float]] = None) -> Tensor:
        """Base anchors of one level in the V1.x convention.

        Args:
            base_size (int | float): Base size of the level.
            scales (Tensor): Scales [S].
            ratios (Tensor): Height / width ratios [R].
            center (tuple[float, float], optional): (x, y) centre; defaults to
                ``center_offset * (base_size - 1)``.

        Returns:
            Tensor: Rounded base anchors [R * S, 4].
        """
        w = h = base_size
        if center is None:
            x_center, y_center = self.center_offset * (w - 1), self.center_offset * (h - 1)
        else:
            x_center, y_center = center
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        if self.scale_major:
            ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)
            hs = (h * h_ratios[:, None] * scales[None, :]).view(-1)
        else:
            ws = (w * scales[:, None] * w_ratios[None, :]).view(-1)
            hs = (h * scales[:, None] * h_ratios[None, :]).view(-1)
        half_w, half_h = 0.5 * (ws - 1), 0.5 * (hs - 1)
        return torch.stack(
            [x_center - half_w, y_center - half_h, x_center + half_w, y_center + half_h],
            dim=-1).round()
