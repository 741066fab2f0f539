"""Random shift of an image and its boxes by a few pixels (masks and maps are not moved)."""
from typing import Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type
from .transform_arg_errors import check_arg


@TRANSFORMS.register_module()
class RandomShift(BaseTransform):
    """With probability ``prob``, shift the image and boxes by (dx, dy) whole pixels.

    dx and dy are drawn independently from [-max_shift_px, max_shift_px). The boxes are
    shifted and clipped to the image; those no wider or taller than ``filter_thr_px``
    afterwards are dropped with their labels and ignore flags. The uncovered image area is
    filled with zeros. If no box would survive, nothing changes. Like mmdetection, instance
    masks and semantic maps are left as they are, and no homography is recorded.

    Required keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``; optional ``gt_ignore_flags``.
    Modified keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``.

    Args:
        prob (float): Probability of shifting, in [0, 1]. Defaults to 0.5.
        max_shift_px (int): Largest shift in pixels, >= 0. Defaults to 32.
        filter_thr_px (int): Boxes whose width or height is not above this (pixels) after
            the shift are dropped. Defaults to 1.
    """

    def __init__(self, prob: float = 0.5, max_shift_px: int = 32, filter_thr_px: int = 1) -> None:
        check_arg(0 <= prob <= 1, f'RandomShift: prob must be in [0, 1], got {prob}.')
        check_arg(max_shift_px >= 0,
                  f'RandomShift: max_shift_px must be >= 0, got {max_shift_px}.')
        self.prob = prob
        self.max_shift_px = max_shift_px
        self.filter_thr_px = int(filter_thr_px)

    @cache_randomness
    def _random_prob(self) -> float:
        """Uniform draw in [0, 1); the shift happens when it is below ``prob``."""
        return np.random.uniform(0, 1)

    def _random_shift(self) -> Tuple[int, int]:
        """(dx, dy) in pixels, each from [-max_shift_px, max_shift_px)."""
        # randint(-m, m) needs m > 0: with max_shift_px = 0 the shift is simply zero.
        if self.max_shift_px == 0:
            return 0, 0
        dx = np.random.randint(-self.max_shift_px, self.max_shift_px)
        dy = np.random.randint(-self.max_shift_px, self.max_shift_px)
        return int(dx), int(dy)

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Shift ``results`` in place (or leave it, see the class docstring).

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: The same dict.
        """
        if self._random_prob() >= self.prob:
            return results
        dx, dy = self._random_shift()
        img = results['img']
        bboxes = results['gt_bboxes'].clone()
        bboxes.translate_([dx, dy])
        bboxes.clip_(img.shape[:2])
        keep = ((bboxes.widths > self.filter_thr_px) &
                (bboxes.heights > self.filter_thr_px)).numpy()
        if not keep.any():
            return results
        results['gt_bboxes'] = bboxes[keep]
        results['gt_bboxes_labels'] = results['gt_bboxes_labels'][keep]
        if results.get('gt_ignore_flags') is not None:
            results['gt_ignore_flags'] = results['gt_ignore_flags'][keep]
        results['img'] = _shift_image(img, dx, dy)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, '
                f'max_shift_px={self.max_shift_px}, filter_thr_px={self.filter_thr_px})')


def _shift_image(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move ``img`` (H, W, ...) by (dx, dy) pixels onto a zero canvas of the same shape."""
    shifted = np.zeros_like(img)
    h, w = img.shape[:2]
    keep_h, keep_w = h - abs(dy), w - abs(dx)
    if keep_h <= 0 or keep_w <= 0:
        return shifted  # moved entirely out of view
    src_y, src_x = max(0, -dy), max(0, -dx)
    dst_y, dst_x = max(0, dy), max(0, dx)
    shifted[dst_y:dst_y + keep_h, dst_x:dst_x + keep_w] = \
        img[src_y:src_y + keep_h, src_x:src_x + keep_w]
    return shifted
