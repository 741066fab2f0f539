"""Round a channel count to a multiple of a divisor (MobileNet width scaling)."""
from typing import Optional


def make_divisible(value: float, divisor: int, min_value: Optional[int] = None,
                   min_ratio: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never losing too much width.

    Width multipliers give fractional channel counts (``32 * 0.75 = 24``, ``24 * 0.35 = 8.4``);
    hardware prefers multiples of 8. The value is rounded half-up to a multiple of
    ``divisor`` (at least ``min_value``); if that drops below ``min_ratio * value`` one more
    ``divisor`` is added, so a layer keeps at least ~90% of the channels asked for.

    Args:
        value (float): Channel count before rounding.
        divisor (int): The result is a multiple of this.
        min_value (int, optional): Lower bound of the result. Defaults to None (``divisor``).
        min_ratio (float): Smallest allowed ``result / value``. Defaults to 0.9.

    Returns:
        int: The rounded channel count.

    Example:
        >>> make_divisible(32 * 0.75, 8), make_divisible(1280 * 0.35, 8), make_divisible(20, 8)
        (24, 448, 24)
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < min_ratio * value:
        rounded += divisor
    return rounded
