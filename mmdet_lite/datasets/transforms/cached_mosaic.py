"""CachedMosaic: Mosaic drawing its three other images from a cache of recent samples."""
from typing import List

import numpy as np
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .mosaic import Mosaic
from .results_cache import push_to_cache
from .transform_arg_errors import check_arg


@TRANSFORMS.register_module()
class CachedMosaic(Mosaic):
    """Mosaic without a dataset wrapper: the other images come from recent samples.

    Each call first appends a copy of ``results`` to the transform's cache (evicting one
    entry past ``max_cached_images``, see :func:`push_to_cache`). While the cache holds at
    most 4 entries the sample passes unchanged; after that, with probability ``prob``, three
    cached entries (drawn with replacement among all but the newest, which is the sample
    itself) fill the other quadrants exactly as in :class:`Mosaic`, masks included.

    The cache lives in the transform, so each dataloader worker has its own.

    Args:
        *args: :class:`Mosaic`'s arguments (img_scale, center_ratio_range,
            bbox_clip_border, pad_val, prob).
        max_cached_images (int): Cache size, at least 4. Defaults to 40.
        random_pop (bool): Evict a random entry when full instead of the oldest.
            Defaults to True.
        **kwargs: :class:`Mosaic`'s keyword arguments.
    """

    def __init__(self,
                 *args,
                 max_cached_images: int = 40,
                 random_pop: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.results_cache: List[dict] = []
        self.random_pop = random_pop
        check_arg(max_cached_images >= 4, 'CachedMosaic: max_cached_images must be >= 4, '
                  f'got {max_cached_images}.')
        self.max_cached_images = max_cached_images

    @cache_randomness
    def get_indexes(self, cache: list) -> List[int]:
        """Three cache indices in [0, len(cache) - 1): never the newest entry.

        Args:
            cache (list): The results cache.

        Returns:
            list[int]: Indices into ``cache``.
        """
        return [np.random.randint(0, len(cache) - 1) for _ in range(3)]

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Cache ``results``, then mosaic it with three cached samples.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: The same dict, updated (or unchanged while the cache fills up).
        """
        push_to_cache(self.results_cache, results, self.max_cached_images, self.random_pop)
        if len(self.results_cache) <= 4:
            return results
        if np.random.uniform(0, 1) > self.prob:
            return results
        indices = self.get_indexes(self.results_cache)
        # _mosaic copies what it changes, so the cached entries stay intact.
        return self._mosaic(results, [self.results_cache[i] for i in indices])

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(img_scale={self.img_scale}, '
                f'center_ratio_range={self.center_ratio_range}, pad_val={self.pad_val}, '
                f'prob={self.prob}, max_cached_images={self.max_cached_images}, '
                f'random_pop={self.random_pop})')
