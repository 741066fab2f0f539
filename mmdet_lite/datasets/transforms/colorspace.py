"""AutoAugment / RandAugment colour ops: they change pixel values only, never geometry.

Each op is applied with probability ``prob``; its strength comes from ``level`` (an integer
in [0, 10] mapped linearly onto [min_mag, max_mag], see :mod:`.augment_levels`) or, when
``level`` is None, is drawn uniformly from [min_mag, max_mag] at every call. Boxes, masks and
semantic maps pass through untouched. Images are BGR, usually uint8; the output keeps the
input's dtype.
"""
import math
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from .augment_levels import _MAX_LEVEL, level_to_mag
from .transform_arg_errors import check_arg


def _check_mag_bounds(name: str, min_mag: float, max_mag: float, upper: float) -> None:
    """The op-specific range [0, upper] of min_mag and max_mag."""
    for arg, value in (('min_mag', min_mag), ('max_mag', max_mag)):
        check_arg(0. <= value <= upper,
                  f'{name}: {arg} must be in [0, {upper:g}], got {value}.')


@TRANSFORMS.register_module()
class ColorTransform(BaseTransform):
    """Base of the colour ops; on its own it leaves the image unchanged.

    Required keys: ``img``. Modified keys: ``img``.

    Args:
        prob (float): Probability of applying the op, in [0, 1]. Defaults to 1.0.
        level (int, optional): Strength in [0, 10]; None draws the magnitude uniformly
            between ``min_mag`` and ``max_mag`` at each call. Defaults to None.
        min_mag (float): Magnitude at level 0. Defaults to 0.1.
        max_mag (float): Magnitude at level 10. Defaults to 1.9.
    """

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.1,
                 max_mag: float = 1.9) -> None:
        name = self.__class__.__name__
        check_arg(0 <= prob <= 1.0, f'{name}: prob must be in [0, 1], got {prob}.')
        check_arg(level is None or isinstance(level, int),
                  f'{name}: level must be None or an int, got {type(level).__name__}.')
        check_arg(level is None or 0 <= level <= _MAX_LEVEL,
                  f'{name}: level must be in [0, {_MAX_LEVEL}], got {level}.')
        check_arg(isinstance(min_mag, float),
                  f'{name}: min_mag must be a float, got {type(min_mag).__name__}.')
        check_arg(isinstance(max_mag, float),
                  f'{name}: max_mag must be a float, got {type(max_mag).__name__}.')
        check_arg(min_mag <= max_mag, f'{name}: min_mag must not exceed max_mag, got '
                  f'min_mag={min_mag} and max_mag={max_mag}.')
        self.prob = prob
        self.level = level
        self.min_mag = min_mag
        self.max_mag = max_mag

    def _transform_img(self, results: dict, mag: float) -> None:
        """Change ``results['img']`` with magnitude ``mag``; nothing here."""

    @cache_randomness
    def _random_disable(self) -> bool:
        """True (skip the op) with probability ``1 - prob``."""
        return np.random.rand() > self.prob

    @cache_randomness
    def _get_mag(self) -> float:
        """The magnitude of this call."""
        return level_to_mag(self.level, self.min_mag, self.max_mag)

    def transform(self, results: dict) -> dict:
        """Apply the op to ``results['img']`` (or nothing, with probability 1 - prob).

        Args:
            results (dict): Pipeline results with ``img`` ([H, W, C]).

        Returns:
            dict: The same dict.
        """
        if self._random_disable():
            return results
        self._transform_img(results, self._get_mag())
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, level={self.level}, '
                f'min_mag={self.min_mag}, max_mag={self.max_mag})')


class _EnhanceTransform(ColorTransform):
    """An op whose magnitude is a PIL-style enhancement factor in [0, 2] (1 = unchanged)."""

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.1,
                 max_mag: float = 1.9) -> None:
        _check_mag_bounds(self.__class__.__name__, min_mag, max_mag, 2.0)
        super().__init__(prob=prob, level=level, min_mag=min_mag, max_mag=max_mag)


@TRANSFORMS.register_module()
class Color(_EnhanceTransform):
    """Blend the image with its grey version: factor 0 is grey, 1 the original.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], or None for random. Defaults to None.
        min_mag (float): Factor at level 0, in [0, 2]. Defaults to 0.1.
        max_mag (float): Factor at level 10, in [0, 2]. Defaults to 1.9.
    """

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.adjust_color(img, mag).astype(img.dtype)


@TRANSFORMS.register_module()
class Brightness(_EnhanceTransform):
    """Scale the pixel values: factor 0 is black, 1 the original.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], or None for random. Defaults to None.
        min_mag (float): Factor at level 0, in [0, 2]. Defaults to 0.1.
        max_mag (float): Factor at level 10, in [0, 2]. Defaults to 1.9.
    """

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.adjust_brightness(img, mag).astype(img.dtype)


@TRANSFORMS.register_module()
class Contrast(_EnhanceTransform):
    """Blend the image with its mean grey level: factor 0 is flat grey, 1 the original.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], or None for random. Defaults to None.
        min_mag (float): Factor at level 0, in [0, 2]. Defaults to 0.1.
        max_mag (float): Factor at level 10, in [0, 2]. Defaults to 1.9.
    """

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.adjust_contrast(img, mag).astype(img.dtype)


@TRANSFORMS.register_module()
class Sharpness(_EnhanceTransform):
    """Blend the image with a smoothed copy: below 1 blurs, above 1 sharpens.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], or None for random. Defaults to None.
        min_mag (float): Factor at level 0, in [0, 2]. Defaults to 0.1.
        max_mag (float): Factor at level 10, in [0, 2]. Defaults to 1.9.
    """

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.adjust_sharpness(img, mag).astype(img.dtype)


@TRANSFORMS.register_module()
class Solarize(ColorTransform):
    """Invert (255 - x) every pixel value at or above the threshold ``mag``.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], or None for random. Defaults to None.
        min_mag (float): Threshold at level 0, in [0, 256]. Defaults to 0.0.
        max_mag (float): Threshold at level 10, in [0, 256]. Defaults to 256.0.
    """

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.0,
                 max_mag: float = 256.0) -> None:
        _check_mag_bounds(self.__class__.__name__, min_mag, max_mag, 256.0)
        super().__init__(prob=prob, level=level, min_mag=min_mag, max_mag=max_mag)

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.solarize(img, mag).astype(img.dtype)


@TRANSFORMS.register_module()
class SolarizeAdd(ColorTransform):
    """Add ``mag`` to every pixel value below 128, saturating at 255.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], or None for random. Defaults to None.
        min_mag (float): Added amount at level 0, in [0, 110]. Defaults to 0.0.
        max_mag (float): Added amount at level 10, in [0, 110]. Defaults to 110.0.
    """

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.0,
                 max_mag: float = 110.0) -> None:
        _check_mag_bounds(self.__class__.__name__, min_mag, max_mag, 110.0)
        super().__init__(prob=prob, level=level, min_mag=min_mag, max_mag=max_mag)

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        added = np.where(img < 128, np.minimum(img + mag, 255), img)
        results['img'] = added.astype(img.dtype)


@TRANSFORMS.register_module()
class Posterize(ColorTransform):
    """Keep only the ``ceil(mag)`` most significant bits of each channel value.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], or None for random. Defaults to None.
        min_mag (float): Bits at level 0, in [0, 8]. Defaults to 0.0.
        max_mag (float): Bits at level 10, in [0, 8]. Defaults to 4.0.
    """

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.0,
                 max_mag: float = 4.0) -> None:
        _check_mag_bounds(self.__class__.__name__, min_mag, max_mag, 8.0)
        super().__init__(prob=prob, level=level, min_mag=min_mag, max_mag=max_mag)

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.posterize(img, math.ceil(mag)).astype(img.dtype)


@TRANSFORMS.register_module()
class Equalize(ColorTransform):
    """Equalize the histogram of each channel. ``level``/``min_mag``/``max_mag`` are unused.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Unused. Defaults to None.
        min_mag (float): Unused. Defaults to 0.1.
        max_mag (float): Unused. Defaults to 1.9.
    """

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.imequalize(img).astype(img.dtype)


@TRANSFORMS.register_module()
class AutoContrast(ColorTransform):
    """Stretch each channel so its darkest value becomes 0 and its brightest 255.

    ``level``/``min_mag``/``max_mag`` are unused.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Unused. Defaults to None.
        min_mag (float): Unused. Defaults to 0.1.
        max_mag (float): Unused. Defaults to 1.9.
    """

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.auto_contrast(img).astype(img.dtype)


@TRANSFORMS.register_module()
class Invert(ColorTransform):
    """Replace every value x by 255 - x. ``level``/``min_mag``/``max_mag`` are unused.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Unused. Defaults to None.
        min_mag (float): Unused. Defaults to 0.1.
        max_mag (float): Unused. Defaults to 1.9.
    """

    def _transform_img(self, results: dict, mag: float) -> None:
        img = results['img']
        results['img'] = mmcv.iminvert(img).astype(img.dtype)
