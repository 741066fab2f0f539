"""Random-number helpers for demos and tests (``random`` classmethods of masks and results).

Same module path as mmdetection's ``mmdet.utils.util_random``, so code written for it
(``from mmdet.utils.util_random import ensure_rng``) finds ``ensure_rng`` here too.
"""
from typing import Union

import numpy as np
import torch
from torch import Tensor

RngLike = Union[None, int, np.random.RandomState]


def ensure_rng(rng: RngLike = None) -> np.random.RandomState:
    """Turn ``rng`` into a numpy random state.

    Args:
        rng (None | int | np.random.RandomState): None gives numpy's global random state
            (what ``np.random.rand`` draws from), an int seeds a new ``RandomState``, anything
            else is returned unchanged.

    Returns:
        np.random.RandomState: The random state to draw from.

    Example:
        >>> ensure_rng(0).rand() == ensure_rng(0).rand()
        True
    """
    if rng is None:
        # The module-level functions of np.random all draw from this shared state.
        return np.random.mtrand._rand
    if isinstance(rng, int):
        return np.random.RandomState(rng)
    return rng


def random_boxes(num: int = 1, scale: float = 1, rng: RngLike = None) -> Tensor:
    """Random valid boxes (x1 <= x2, y1 <= y2) inside ``[0, scale]``.

    Args:
        num (int): Number of boxes N.
        scale (float): Side of the square the boxes lie in.
        rng (None | int | np.random.RandomState): Seed or random state.

    Returns:
        Tensor: float32 boxes of shape [N, 4] as (x1, y1, x2, y2).
    """
    rng = ensure_rng(rng)
    corners = rng.rand(num, 4).astype(np.float32)  # two random points per box
    boxes = np.empty_like(corners)
    boxes[:, 0] = np.minimum(corners[:, 0], corners[:, 2])
    boxes[:, 1] = np.minimum(corners[:, 1], corners[:, 3])
    boxes[:, 2] = np.maximum(corners[:, 0], corners[:, 2])
    boxes[:, 3] = np.maximum(corners[:, 1], corners[:, 3])
    return torch.from_numpy(boxes * scale)
