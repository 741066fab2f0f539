"""CachedMixUp: MixUp drawing the other image from a cache of recent samples."""
from typing import List, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .mixup import PadVal, mixup_with
from .results_cache import push_to_cache
from .transform_arg_errors import check_arg


@TRANSFORMS.register_module()
class CachedMixUp(BaseTransform):
    """MixUp without a dataset wrapper: the other image comes from recent samples.

    Each call first appends a copy of ``results`` to the transform's cache (evicting one
    entry past ``max_cached_images``, see :func:`push_to_cache`). With only the sample
    cached it passes unchanged; otherwise, with probability ``prob``, a cached entry (not
    the newest, which is the sample itself; redrawn up to ``max_iters`` times until it has
    boxes) is blended in as in :class:`MixUp` (:func:`mixup_with`), masks included.

    The cache lives in the transform, so each dataloader worker has its own.

    Args:
        img_scale (tuple[int, int]): (w, h) the other image is fitted into before the
            jitter. Defaults to (640, 640).
        ratio_range (tuple[float, float]): Range of the scale jitter. Defaults to (0.5, 1.5).
        flip_ratio (float): The other image is flipped when U(0, 1) > flip_ratio.
            Defaults to 0.5.
        pad_val (float | tuple): Fill of the padding. Defaults to 114.0.
        max_iters (int): Draws to find a cached image with boxes. Defaults to 15.
        bbox_clip_border (bool): Clip boxes to the image. Defaults to True.
        max_cached_images (int): Cache size, at least 2. Defaults to 20.
        random_pop (bool): Evict a random entry when full instead of the oldest.
            Defaults to True.
        prob (float): Probability of mixing, in [0, 1]. Defaults to 1.0.
    """

    def __init__(self,
                 img_scale: Tuple[int, int] = (640, 640),
                 ratio_range: Tuple[float, float] = (0.5, 1.5),
                 flip_ratio: float = 0.5,
                 pad_val: PadVal = 114.0,
                 max_iters: int = 15,
                 bbox_clip_border: bool = True,
                 max_cached_images: int = 20,
                 random_pop: bool = True,
                 prob: float = 1.0) -> None:
        check_arg(isinstance(img_scale, tuple),
                  f'CachedMixUp: img_scale must be a tuple (w, h), got {img_scale!r}.')
        check_arg(max_cached_images >= 2, 'CachedMixUp: max_cached_images must be >= 2, '
                  f'got {max_cached_images}.')
        check_arg(0 <= prob <= 1.0, f'CachedMixUp: prob must be in [0, 1], got {prob}.')
        self.dynamic_scale = img_scale
        self.ratio_range = ratio_range
        self.flip_ratio = flip_ratio
        self.pad_val = pad_val
        self.max_iters = max_iters
        self.bbox_clip_border = bbox_clip_border
        self.results_cache: List[dict] = []
        self.max_cached_images = max_cached_images
        self.random_pop = random_pop
        self.prob = prob

    @cache_randomness
    def get_indexes(self, cache: list) -> int:
        """A cache index in [0, len(cache) - 1), redrawn up to ``max_iters`` times until
        that entry has boxes.

        Args:
            cache (list): The results cache.

        Returns:
            int: An index into ``cache``.
        """
        for _ in range(self.max_iters):
            index = np.random.randint(0, len(cache) - 1)
            if len(cache[index]['gt_bboxes']) != 0:
                break
        return index

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Cache ``results``, then mix it with a cached sample.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: The same dict, updated (or unchanged).
        """
        push_to_cache(self.results_cache, results, self.max_cached_images, self.random_pop)
        if len(self.results_cache) <= 1:
            return results
        if np.random.uniform(0, 1) > self.prob:
            return results
        index = self.get_indexes(self.results_cache)
        # mixup_with copies what it changes, so the cached entry stays intact.
        return mixup_with(results, self.results_cache[index], self.dynamic_scale,
                          self.ratio_range, self.flip_ratio, self.pad_val,
                          self.bbox_clip_border)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(dynamic_scale={self.dynamic_scale}, '
                f'ratio_range={self.ratio_range}, flip_ratio={self.flip_ratio}, '
                f'pad_val={self.pad_val}, max_iters={self.max_iters}, '
                f'bbox_clip_border={self.bbox_clip_border}, '
                f'max_cached_images={self.max_cached_images}, '
                f'random_pop={self.random_pop}, prob={self.prob})')
