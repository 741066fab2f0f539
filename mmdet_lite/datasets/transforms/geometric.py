"""AutoAugment geometric ops: Rotate, ShearX/Y and TranslateX/Y on images and annotations.

Each op draws a magnitude from its ``level`` (see :mod:`.augment_levels`), negates it with
probability ``1 - reversal_prob``, builds the 3x3 matrix of the move and applies it to the
image, boxes (corners projected, then clipped), instance masks and semantic map. The matrix
is chained onto ``results['homography_matrix']`` (new @ old), so projecting the original box
corners with the recorded matrix gives the new boxes before clipping.
"""
from typing import Optional, Tuple, Union

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type
from .augment_levels import _MAX_LEVEL, level_to_mag
from .homography import record_homography
from .transform_arg_errors import check_arg

BorderValue = Union[int, float, Tuple[float, float, float]]


def _img_border_triple(value: BorderValue) -> Tuple[float, float, float]:
    """One float per BGR channel from a number or a 3-tuple, each in [0, 255]."""
    if isinstance(value, (int, float)):
        triple = (float(value), ) * 3
    elif isinstance(value, tuple):
        check_arg(len(value) == 3, 'img_border_value as a tuple must have 3 elements, '
                  f'got {len(value)}: {value!r}.')
        triple = tuple(float(v) for v in value)
    else:
        raise ValueError('img_border_value must be a number or a tuple of 3 numbers, '
                         f'got {value!r}.')
    check_arg(all(0 <= v <= 255 for v in triple),
              f'every element of img_border_value must be in [0, 255], got {triple}.')
    return triple


def _check_mag_range(name: str, min_mag: float, max_mag: float, upper: float, unit: str) -> None:
    """The op-specific bounds on min_mag / max_mag (checked before the generic ones)."""
    for arg, value in (('min_mag', min_mag), ('max_mag', max_mag)):
        check_arg(0. <= value <= upper,
                  f'{name}: {arg} ({unit}) must be in [0, {upper:g}], got {value}.')


@TRANSFORMS.register_module()
class GeomTransform(BaseTransform):
    """Base of the geometric AutoAugment ops; on its own it is the identity.

    Subclasses give the homography of the move and how the image, masks and semantic map
    are warped. Boxes are always projected with the homography and clipped to the image.

    Required keys: ``img``; optional ``gt_bboxes`` (box object or float32 [N, 4] array),
    ``gt_masks`` (BitmapMasks | PolygonMasks), ``gt_seg_map`` (uint8 [H, W]).
    Modified keys: ``img``, ``gt_bboxes``, ``gt_masks``, ``gt_seg_map``.
    Added keys: ``homography_matrix`` (float32 [3, 3]).

    Args:
        prob (float): Probability of applying the op, in [0, 1]. Defaults to 1.0.
        level (int, optional): Strength in [0, 10]; None draws the magnitude uniformly
            between min_mag and max_mag at each call. Defaults to None.
        min_mag (float): Magnitude at level 0. Defaults to 0.0.
        max_mag (float): Magnitude at level 10. Defaults to 1.0.
        reversal_prob (float): Probability of keeping the magnitude's sign; otherwise it is
            negated. Defaults to 0.5.
        img_border_value (int | float | tuple): Fill of the uncovered image area, one value
            or one per channel, in [0, 255]. Stored as a 3-tuple of floats. Defaults to 128.
        mask_border_value (int): Fill of the uncovered bitmap mask area. Defaults to 0.
        seg_ignore_label (int): Fill of the uncovered semantic map area. Defaults to 255.
        interpolation (str): Image and bitmap-mask interpolation ('nearest', 'bilinear',
            'bicubic', 'area', 'lanczos'); the semantic map always uses 'nearest'.
            Defaults to 'bilinear'.
    """

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.0,
                 max_mag: float = 1.0,
                 reversal_prob: float = 0.5,
                 img_border_value: BorderValue = 128,
                 mask_border_value: int = 0,
                 seg_ignore_label: int = 255,
                 interpolation: str = 'bilinear') -> None:
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
        check_arg(isinstance(reversal_prob, float),
                  f'{name}: reversal_prob must be a float, got {type(reversal_prob).__name__}.')
        check_arg(0 <= reversal_prob <= 1.0,
                  f'{name}: reversal_prob must be in [0, 1], got {reversal_prob}.')
        self.prob = prob
        self.level = level
        self.min_mag = min_mag
        self.max_mag = max_mag
        self.reversal_prob = reversal_prob
        self.img_border_value = _img_border_triple(img_border_value)
        self.mask_border_value = mask_border_value
        self.seg_ignore_label = seg_ignore_label
        self.interpolation = interpolation

    # ------------------------------------------------------------- per-op hooks
    def _get_homography_matrix(self, results: dict, mag: float) -> np.ndarray:
        """The float32 [3, 3] matrix mapping input pixel coordinates to output ones."""
        return np.eye(3, dtype=np.float32)

    def _transform_img(self, results: dict, mag: float) -> None:
        """Warp ``results['img']``; the identity here."""

    def _transform_masks(self, results: dict, mag: float) -> None:
        """Warp ``results['gt_masks']``; the identity here."""

    def _transform_seg(self, results: dict, mag: float) -> None:
        """Warp ``results['gt_seg_map']``; the identity here."""

    def _transform_bboxes(self, results: dict, mag: float) -> None:
        """Project the box corners with the op's matrix, keep their hull, clip to the image."""
        results['gt_bboxes'].project_(self.homography_matrix)
        results['gt_bboxes'].clip_(results['img_shape'])

    # --------------------------------------------------------------- randomness
    @cache_randomness
    def _random_disable(self) -> bool:
        """True (skip the op) with probability ``1 - prob``."""
        return np.random.rand() > self.prob

    @cache_randomness
    def _get_mag(self) -> float:
        """The signed magnitude of this call."""
        mag = level_to_mag(self.level, self.min_mag, self.max_mag)
        return -mag if np.random.rand() > self.reversal_prob else mag

    def _record_homography_matrix(self, results: dict) -> None:
        """Chain this op's matrix after the ones already recorded."""
        record_homography(results, self.homography_matrix)

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Apply the op to ``results`` in place (or nothing, with probability 1 - prob).

        Args:
            results (dict): Pipeline results with ``img`` and ``img_shape``.

        Returns:
            dict: The same dict, warped.
        """
        if self._random_disable():
            return results
        mag = self._get_mag()
        self.homography_matrix = self._get_homography_matrix(results, mag)
        self._record_homography_matrix(results)
        self._transform_img(results, mag)
        if results.get('gt_bboxes') is not None:
            self._transform_bboxes(results, mag)
        if results.get('gt_masks') is not None:
            self._transform_masks(results, mag)
        if results.get('gt_seg_map') is not None:
            self._transform_seg(results, mag)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, level={self.level}, '
                f'min_mag={self.min_mag}, max_mag={self.max_mag}, '
                f'reversal_prob={self.reversal_prob}, '
                f'img_border_value={self.img_border_value}, '
                f'mask_border_value={self.mask_border_value}, '
                f'seg_ignore_label={self.seg_ignore_label}, '
                f'interpolation={self.interpolation})')


class _Shear(GeomTransform):
    """Shear along ``_direction``; the magnitude is an angle in degrees, used as its tangent.

    ShearX maps (x, y) to (x + t * y, y), ShearY maps it to (x, y + t * x), t = tan(angle).
    """

    _direction = 'horizontal'

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.0,
                 max_mag: float = 30.0,
                 reversal_prob: float = 0.5,
                 img_border_value: BorderValue = 128,
                 mask_border_value: int = 0,
                 seg_ignore_label: int = 255,
                 interpolation: str = 'bilinear') -> None:
        _check_mag_range(self.__class__.__name__, min_mag, max_mag, 90., 'shear angle')
        super().__init__(prob=prob, level=level, min_mag=min_mag, max_mag=max_mag,
                         reversal_prob=reversal_prob, img_border_value=img_border_value,
                         mask_border_value=mask_border_value,
                         seg_ignore_label=seg_ignore_label, interpolation=interpolation)

    @cache_randomness
    def _get_mag(self) -> float:
        """Signed tangent of the drawn shear angle."""
        mag = np.tan(level_to_mag(self.level, self.min_mag, self.max_mag) * np.pi / 180)
        return -mag if np.random.rand() > self.reversal_prob else mag

    def _get_homography_matrix(self, results: dict, mag: float) -> np.ndarray:
        matrix = np.eye(3, dtype=np.float32)
        if self._direction == 'horizontal':
            matrix[0, 1] = mag
        else:
            matrix[1, 0] = mag
        return matrix

    def _transform_img(self, results: dict, mag: float) -> None:
        results['img'] = mmcv.imshear(results['img'], mag, direction=self._direction,
                                      border_value=self.img_border_value,
                                      interpolation=self.interpolation)

    def _transform_masks(self, results: dict, mag: float) -> None:
        results['gt_masks'] = results['gt_masks'].shear(
            results['img_shape'], mag, direction=self._direction,
            border_value=self.mask_border_value, interpolation=self.interpolation)

    def _transform_seg(self, results: dict, mag: float) -> None:
        results['gt_seg_map'] = mmcv.imshear(results['gt_seg_map'], mag,
                                             direction=self._direction,
                                             border_value=self.seg_ignore_label,
                                             interpolation='nearest')


@TRANSFORMS.register_module()
class ShearX(_Shear):
    """Shear horizontally: (x, y) -> (x + tan(angle) * y, y).

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], None for random. Defaults to None.
        min_mag (float): Shear angle in degrees at level 0, in [0, 90]. Defaults to 0.0.
        max_mag (float): Shear angle in degrees at level 10, in [0, 90]. Defaults to 30.0.
        reversal_prob (float): Probability of keeping the sign. Defaults to 0.5.
        img_border_value (int | float | tuple): Image fill. Defaults to 128.
        mask_border_value (int): Bitmap mask fill. Defaults to 0.
        seg_ignore_label (int): Semantic map fill. Defaults to 255.
        interpolation (str): Image and mask interpolation. Defaults to 'bilinear'.
    """

    _direction = 'horizontal'


@TRANSFORMS.register_module()
class ShearY(_Shear):
    """Shear vertically: (x, y) -> (x, y + tan(angle) * x).

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], None for random. Defaults to None.
        min_mag (float): Shear angle in degrees at level 0, in [0, 90]. Defaults to 0.0.
        max_mag (float): Shear angle in degrees at level 10, in [0, 90]. Defaults to 30.0.
        reversal_prob (float): Probability of keeping the sign. Defaults to 0.5.
        img_border_value (int | float | tuple): Image fill. Defaults to 128.
        mask_border_value (int): Bitmap mask fill. Defaults to 0.
        seg_ignore_label (int): Semantic map fill. Defaults to 255.
        interpolation (str): Image and mask interpolation. Defaults to 'bilinear'.
    """

    _direction = 'vertical'


@TRANSFORMS.register_module()
class Rotate(GeomTransform):
    """Rotate clockwise (on screen) by the magnitude in degrees about the image centre.

    The centre is ((w - 1) / 2, (h - 1) / 2), as in ``mmcv.imrotate``; the output keeps the
    input size, so corners may leave the image (boxes are clipped).

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], None for random. Defaults to None.
        min_mag (float): Angle in degrees at level 0, in [0, 180]. Defaults to 0.0.
        max_mag (float): Angle in degrees at level 10, in [0, 180]. Defaults to 30.0.
        reversal_prob (float): Probability of keeping the sign. Defaults to 0.5.
        img_border_value (int | float | tuple): Image fill. Defaults to 128.
        mask_border_value (int): Bitmap mask fill. Defaults to 0.
        seg_ignore_label (int): Semantic map fill. Defaults to 255.
        interpolation (str): Image and mask interpolation. Defaults to 'bilinear'.
    """

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.0,
                 max_mag: float = 30.0,
                 reversal_prob: float = 0.5,
                 img_border_value: BorderValue = 128,
                 mask_border_value: int = 0,
                 seg_ignore_label: int = 255,
                 interpolation: str = 'bilinear') -> None:
        _check_mag_range('Rotate', min_mag, max_mag, 180., 'angle')
        super().__init__(prob=prob, level=level, min_mag=min_mag, max_mag=max_mag,
                         reversal_prob=reversal_prob, img_border_value=img_border_value,
                         mask_border_value=mask_border_value,
                         seg_ignore_label=seg_ignore_label, interpolation=interpolation)

    def _get_homography_matrix(self, results: dict, mag: float) -> np.ndarray:
        h, w = results['img_shape'][:2]
        center = ((w - 1) * 0.5, (h - 1) * 0.5)
        # OpenCV turns counter-clockwise for positive angles; mmcv.imrotate clockwise.
        affine = cv2.getRotationMatrix2D(center, -mag, 1.0)
        return np.vstack([affine, [0., 0., 1.]]).astype(np.float32)

    def _transform_img(self, results: dict, mag: float) -> None:
        results['img'] = mmcv.imrotate(results['img'], mag, border_value=self.img_border_value,
                                       interpolation=self.interpolation)

    def _transform_masks(self, results: dict, mag: float) -> None:
        results['gt_masks'] = results['gt_masks'].rotate(
            results['img_shape'], mag, border_value=self.mask_border_value,
            interpolation=self.interpolation)

    def _transform_seg(self, results: dict, mag: float) -> None:
        results['gt_seg_map'] = mmcv.imrotate(results['gt_seg_map'], mag,
                                              border_value=self.seg_ignore_label,
                                              interpolation='nearest')


class _Translate(GeomTransform):
    """Shift along ``_direction`` by int(magnitude * image side) pixels (positive: right/down)."""

    _direction = 'horizontal'

    def __init__(self,
                 prob: float = 1.0,
                 level: Optional[int] = None,
                 min_mag: float = 0.0,
                 max_mag: float = 0.1,
                 reversal_prob: float = 0.5,
                 img_border_value: BorderValue = 128,
                 mask_border_value: int = 0,
                 seg_ignore_label: int = 255,
                 interpolation: str = 'bilinear') -> None:
        _check_mag_range(self.__class__.__name__, min_mag, max_mag, 1., 'ratio of the side')
        super().__init__(prob=prob, level=level, min_mag=min_mag, max_mag=max_mag,
                         reversal_prob=reversal_prob, img_border_value=img_border_value,
                         mask_border_value=mask_border_value,
                         seg_ignore_label=seg_ignore_label, interpolation=interpolation)

    def _offset(self, results: dict, mag: float) -> int:
        """The shift in whole pixels (truncated toward zero, as int() does)."""
        side = results['img_shape'][1] if self._direction == 'horizontal' \
            else results['img_shape'][0]
        return int(side * mag)

    def _get_homography_matrix(self, results: dict, mag: float) -> np.ndarray:
        matrix = np.eye(3, dtype=np.float32)
        matrix[0 if self._direction == 'horizontal' else 1, 2] = self._offset(results, mag)
        return matrix

    def _transform_img(self, results: dict, mag: float) -> None:
        results['img'] = mmcv.imtranslate(results['img'], self._offset(results, mag),
                                          direction=self._direction,
                                          border_value=self.img_border_value,
                                          interpolation=self.interpolation)

    def _transform_masks(self, results: dict, mag: float) -> None:
        results['gt_masks'] = results['gt_masks'].translate(
            results['img_shape'], self._offset(results, mag), direction=self._direction,
            border_value=self.mask_border_value, interpolation=self.interpolation)

    def _transform_seg(self, results: dict, mag: float) -> None:
        results['gt_seg_map'] = mmcv.imtranslate(results['gt_seg_map'],
                                                 self._offset(results, mag),
                                                 direction=self._direction,
                                                 border_value=self.seg_ignore_label,
                                                 interpolation='nearest')


@TRANSFORMS.register_module()
class TranslateX(_Translate):
    """Shift horizontally by int(magnitude * width) pixels.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], None for random. Defaults to None.
        min_mag (float): Ratio of the width at level 0, in [0, 1]. Defaults to 0.0.
        max_mag (float): Ratio of the width at level 10, in [0, 1]. Defaults to 0.1.
        reversal_prob (float): Probability of keeping the sign. Defaults to 0.5.
        img_border_value (int | float | tuple): Image fill. Defaults to 128.
        mask_border_value (int): Bitmap mask fill. Defaults to 0.
        seg_ignore_label (int): Semantic map fill. Defaults to 255.
        interpolation (str): Image and mask interpolation. Defaults to 'bilinear'.
    """

    _direction = 'horizontal'


@TRANSFORMS.register_module()
class TranslateY(_Translate):
    """Shift vertically by int(magnitude * height) pixels.

    Args:
        prob (float): Probability of applying the op. Defaults to 1.0.
        level (int, optional): Strength in [0, 10], None for random. Defaults to None.
        min_mag (float): Ratio of the height at level 0, in [0, 1]. Defaults to 0.0.
        max_mag (float): Ratio of the height at level 10, in [0, 1]. Defaults to 0.1.
        reversal_prob (float): Probability of keeping the sign. Defaults to 0.5.
        img_border_value (int | float | tuple): Image fill. Defaults to 128.
        mask_border_value (int): Bitmap mask fill. Defaults to 0.
        seg_ignore_label (int): Semantic map fill. Defaults to 255.
        interpolation (str): Image and mask interpolation. Defaults to 'bilinear'.
    """

    _direction = 'vertical'
