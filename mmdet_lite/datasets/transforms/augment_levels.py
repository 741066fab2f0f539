"""AutoAugment / RandAugment strength levels and their mapping to magnitudes.

A policy names an op with an integer ``level`` in [0, MAX_LEVEL]; each op maps it linearly
onto its own [min_mag, max_mag] (degrees, shear angle, translation ratio ...).
"""
from typing import Optional

import numpy as np

_MAX_LEVEL = 10
MAX_LEVEL = _MAX_LEVEL


def level_to_mag(level: Optional[int], min_mag: float, max_mag: float) -> float:
    """Map a level onto [min_mag, max_mag], rounded to one decimal.

    Args:
        level (int, optional): Level in [0, MAX_LEVEL]; None draws the magnitude uniformly
            from [min_mag, max_mag) with ``np.random``.
        min_mag (float): Magnitude at level 0.
        max_mag (float): Magnitude at level MAX_LEVEL.

    Returns:
        float: The magnitude.
    """
    if level is None:
        fraction = np.random.rand()
    else:
        fraction = level / _MAX_LEVEL
    return round(fraction * (max_mag - min_mag) + min_mag, 1)
