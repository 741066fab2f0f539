"""Random photometric distortions of the image: brightness, contrast, saturation, hue.

Only ``img`` changes; boxes, masks and semantic maps are untouched. Randomness comes from
``np.random`` so a seeded pipeline is reproducible.
"""
from numbers import Number
from typing import Sequence, Tuple

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from .transform_arg_errors import require_key


@TRANSFORMS.register_module()
class PhotoMetricDistortion(BaseTransform):
    """Distort brightness, contrast, saturation and hue, each with probability 0.5 (SSD).

    The image is turned into float32 and processed in this order:

    1. brightness: ``img + delta``, delta ~ U(-brightness_delta, brightness_delta);
    2. contrast, when ``mode == 1``: ``img * alpha``, alpha ~ U(contrast_range);
    3. BGR -> HSV (float: H in degrees [0, 360), S in [0, 1], V unchanged);
    4. saturation: ``S * s``, s ~ U(saturation_range);
    5. hue: ``H + h`` wrapped back into [0, 360], h ~ U(-hue_delta, hue_delta);
    6. HSV -> BGR;
    7. contrast, when ``mode == 0``;
    8. channel swap by a random permutation, with probability 0.5.

    All draws happen up front, in this order: mode, then the brightness, contrast,
    saturation, hue and swap coin flips (``np.random.randint(2)`` each), then delta, alpha,
    s, h (``np.random.uniform``) and the permutation (``np.random.permutation(3)``).

    Required keys: ``img`` (uint8 or float). Modified keys: ``img`` (float32).

    Args:
        brightness_delta (int): Largest brightness shift. Defaults to 32.
        contrast_range (sequence[number]): (lower, upper) contrast factor.
            Defaults to (0.5, 1.5).
        saturation_range (sequence[number]): (lower, upper) saturation factor.
            Defaults to (0.5, 1.5).
        hue_delta (int): Largest hue shift in degrees. Defaults to 18.
    """

    def __init__(self,
                 brightness_delta: int = 32,
                 contrast_range: Sequence[Number] = (0.5, 1.5),
                 saturation_range: Sequence[Number] = (0.5, 1.5),
                 hue_delta: int = 18) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_lower, self.contrast_upper = contrast_range
        self.saturation_lower, self.saturation_upper = saturation_range
        self.hue_delta = hue_delta

    @cache_randomness
    def _random_flags(self) -> Tuple:
        """Every random value of one call, drawn in the documented order.

        Returns:
            tuple: (mode, brightness_flag, contrast_flag, saturation_flag, hue_flag,
            swap_flag, delta, alpha, saturation, hue, permutation).
        """
        mode, brightness_flag, contrast_flag, saturation_flag, hue_flag, swap_flag = (
            np.random.randint(2) for _ in range(6))
        delta = np.random.uniform(-self.brightness_delta, self.brightness_delta)
        alpha = np.random.uniform(self.contrast_lower, self.contrast_upper)
        saturation = np.random.uniform(self.saturation_lower, self.saturation_upper)
        hue = np.random.uniform(-self.hue_delta, self.hue_delta)
        permutation = np.random.permutation(3)
        return (mode, brightness_flag, contrast_flag, saturation_flag, hue_flag, swap_flag,
                delta, alpha, saturation, hue, permutation)

    def transform(self, results: dict) -> dict:
        """Distort ``results['img']``.

        Args:
            results (dict): Pipeline results with ``img`` ([H, W, 3], BGR).

        Returns:
            dict: The same dict, ``img`` now float32.
        """
        require_key(results, 'img', 'PhotoMetricDistortion')
        img = results['img'].astype(np.float32)
        (mode, brightness_flag, contrast_flag, saturation_flag, hue_flag, swap_flag, delta,
         alpha, saturation, hue, permutation) = self._random_flags()

        if brightness_flag:
            img += delta
        if mode == 1 and contrast_flag:
            img *= alpha

        img = mmcv.bgr2hsv(img)
        if saturation_flag:
            img[..., 1] *= saturation
        if hue_flag:
            hue_channel = img[..., 0]  # a view: the edits below land in img
            hue_channel += hue
            hue_channel[hue_channel > 360] -= 360
            hue_channel[hue_channel < 0] += 360
        img = mmcv.hsv2bgr(img)

        if mode == 0 and contrast_flag:
            img *= alpha
        if swap_flag:
            img = img[..., permutation]

        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness_delta={self.brightness_delta}, '
                f'contrast_range={(self.contrast_lower, self.contrast_upper)}, '
                f'saturation_range={(self.saturation_lower, self.saturation_upper)}, '
                f'hue_delta={self.hue_delta})')


@TRANSFORMS.register_module()
class YOLOXHSVRandomAug(BaseTransform):
    """Shift hue, saturation and value by random integer gains (YOLOX's HSV augmentation).

    Each of the three gains is ``U(-1, 1) * delta``, kept with probability 0.5 (else 0) and
    truncated to an integer. In OpenCV's 8-bit HSV (H in [0, 180), S and V in [0, 255]) the
    hue is shifted modulo 180 and S and V are shifted and clipped to [0, 255]; then the image
    is converted back to BGR.

    Required keys: ``img`` (uint8 BGR). Modified keys: ``img``.

    Args:
        hue_delta (int): Largest hue shift (OpenCV units of 2 degrees). Defaults to 5.
        saturation_delta (int): Largest saturation shift. Defaults to 30.
        value_delta (int): Largest value shift. Defaults to 30.
    """

    def __init__(self,
                 hue_delta: int = 5,
                 saturation_delta: int = 30,
                 value_delta: int = 30) -> None:
        self.hue_delta = hue_delta
        self.saturation_delta = saturation_delta
        self.value_delta = value_delta

    @cache_randomness
    def _get_hsv_gains(self) -> np.ndarray:
        """The (h, s, v) gains of one call, int16 [3]."""
        gains = np.random.uniform(-1, 1, 3) * [
            self.hue_delta, self.saturation_delta, self.value_delta
        ]
        gains *= np.random.randint(0, 2, 3)  # each gain is used with probability 0.5
        # int16 leaves room for the sums below without uint8 wrap-around.
        return gains.astype(np.int16)

    def transform(self, results: dict) -> dict:
        """Shift the HSV channels of ``results['img']``.

        Args:
            results (dict): Pipeline results with ``img`` ([H, W, 3], BGR).

        Returns:
            dict: The same dict.
        """
        img = results['img']
        gains = self._get_hsv_gains()
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV).astype(np.int16)
        hsv[..., 0] = (hsv[..., 0] + gains[0]) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] + gains[1], 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] + gains[2], 0, 255)
        results['img'] = cv2.cvtColor(hsv.astype(img.dtype), cv2.COLOR_HSV2BGR)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(hue_delta={self.hue_delta}, '
                f'saturation_delta={self.saturation_delta}, '
                f'value_delta={self.value_delta})')
