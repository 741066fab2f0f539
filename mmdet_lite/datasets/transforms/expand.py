"""Random zoom-out: place the image on a larger canvas filled with the dataset mean."""
from typing import Sequence, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type
from .transform_arg_errors import require_key

Number = Union[int, float]


@TRANSFORMS.register_module()
class Expand(BaseTransform):
    """With probability ``prob``, paste the image at a random spot of a bigger canvas.

    For an H x W image a ratio r is drawn from ``ratio_range``; the canvas is
    int(H * r) x int(W * r), filled with ``mean``, and the image's top-left corner goes to
    (left, top) = (int(u * (W * r - W)), int(v * (H * r - H))) with u, v uniform in [0, 1).
    Boxes move by (left, top), masks are expanded the same way (zeros around), and the
    semantic map is padded with ``seg_ignore_label``. No homography is recorded (as in
    mmdetection).

    Required keys: ``img``; optional ``gt_bboxes``, ``gt_masks``, ``gt_seg_map``.
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_masks``, ``gt_seg_map``.

    Args:
        mean (Sequence[Number]): Canvas fill per channel, given in RGB order when
            ``to_rgb`` (it is reversed to match the BGR image). Defaults to (0, 0, 0).
        to_rgb (bool): Reverse ``mean``. Defaults to True.
        ratio_range (Sequence[Number]): (min_ratio, max_ratio) of the canvas size.
            Defaults to (1, 4).
        seg_ignore_label (int, optional): Fill of the semantic map's new area; needed when
            results hold a ``gt_seg_map``. Defaults to None.
        prob (float): Probability of expanding. Defaults to 0.5.
    """

    def __init__(self,
                 mean: Sequence[Number] = (0, 0, 0),
                 to_rgb: bool = True,
                 ratio_range: Sequence[Number] = (1, 4),
                 seg_ignore_label: int = None,
                 prob: float = 0.5) -> None:
        self.to_rgb = to_rgb
        self.ratio_range = ratio_range
        self.mean = mean[::-1] if to_rgb else mean
        self.min_ratio, self.max_ratio = ratio_range
        self.seg_ignore_label = seg_ignore_label
        self.prob = prob

    @cache_randomness
    def _random_prob(self) -> float:
        """Uniform draw in [0, 1); the canvas is used when it is at most ``prob``."""
        return np.random.uniform(0, 1)

    @cache_randomness
    def _random_ratio(self) -> float:
        """Canvas size ratio drawn from [min_ratio, max_ratio)."""
        return np.random.uniform(self.min_ratio, self.max_ratio)

    @cache_randomness
    def _random_left_top(self, ratio: float, h: int, w: int) -> Tuple[int, int]:
        """Position (left, top) of the image on an int(h * ratio) x int(w * ratio) canvas."""
        left = int(np.random.uniform(0, w * ratio - w))
        top = int(np.random.uniform(0, h * ratio - h))
        return left, top

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Expand ``results`` in place (or leave it, with probability 1 - prob).

        Args:
            results (dict): Pipeline results with ``img``.

        Returns:
            dict: The same dict.
        """
        if self._random_prob() > self.prob:
            return results
        require_key(results, 'img', 'Expand')
        img = results['img']
        h, w, c = img.shape
        ratio = self._random_ratio()
        canvas_h, canvas_w = int(h * ratio), int(w * ratio)
        left, top = self._random_left_top(ratio, h, w)

        canvas = np.empty((canvas_h, canvas_w, c), img.dtype)
        canvas[...] = np.asarray(self.mean)  # one value per channel, broadcast
        canvas[top:top + h, left:left + w] = img
        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]

        if results.get('gt_bboxes') is not None:
            results['gt_bboxes'].translate_([left, top])
        if results.get('gt_masks') is not None:
            results['gt_masks'] = results['gt_masks'].expand(canvas_h, canvas_w, top, left)
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = self._expand_seg(results['gt_seg_map'],
                                                     (canvas_h, canvas_w), top, left)
        return results

    def _expand_seg(self, seg: np.ndarray, canvas_shape: Tuple[int, int], top: int,
                    left: int) -> np.ndarray:
        """Put ``seg`` at (top, left) of a canvas filled with ``seg_ignore_label``."""
        if self.seg_ignore_label is None:
            raise TypeError('Expand: results have a gt_seg_map, so seg_ignore_label must be '
                            'set (the label filling the new area, e.g. 255), got None.')
        canvas = np.full(canvas_shape, self.seg_ignore_label, dtype=seg.dtype)
        canvas[top:top + seg.shape[0], left:left + seg.shape[1]] = seg
        return canvas

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(mean={self.mean}, to_rgb={self.to_rgb}, '
                f'ratio_range={self.ratio_range}, '
                f'seg_ignore_label={self.seg_ignore_label}, prob={self.prob})')
