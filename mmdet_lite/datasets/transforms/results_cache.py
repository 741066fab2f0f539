"""The bounded results cache shared by CachedMosaic and CachedMixUp."""
import copy
from typing import List

import numpy as np


def push_to_cache(cache: List[dict], results: dict, max_cached_images: int,
                  random_pop: bool) -> None:
    """Append a deep copy of ``results`` to ``cache``, then evict one entry if it is full.

    When the cache holds more than ``max_cached_images`` entries, one is removed: the
    oldest (FIFO) when ``random_pop`` is False, else one drawn uniformly among all but the
    newest (``np.random.randint(0, len(cache) - 1)``, as mmdetection draws it), so the
    sample just added always stays.

    Args:
        cache (list[dict]): The cache, edited in place.
        results (dict): Pipeline results to remember.
        max_cached_images (int): Largest number of entries kept.
        random_pop (bool): Evict a random entry instead of the oldest.
    """
    cache.append(copy.deepcopy(results))
    if len(cache) > max_cached_images:
        index = np.random.randint(0, len(cache) - 1) if random_pop else 0
        cache.pop(index)
