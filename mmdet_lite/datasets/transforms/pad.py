"""Pad an image (and its masks and semantic map) on the bottom and right."""
from numbers import Number
from typing import Optional, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import Pad as MMCVPad

from mmdet_lite.registry import TRANSFORMS

from .transform_arg_errors import MissingResultKeyError, TransformArgError, check_arg

_PADDING_MODES = ('constant', 'edge', 'reflect', 'symmetric')


@TRANSFORMS.register_module()
class Pad(MMCVPad):
    """Pad ``img`` to a fixed size, to a multiple of ``size_divisor``, or to a square.

    Padding goes on the bottom and right, so box coordinates do not change and, as in
    mmdetection, no ``homography_matrix`` is recorded (it would be the identity). An image
    already larger than the target is left as is (never cropped). With ``pad_to_square``
    the image first becomes max(H, W) square, then ``size_divisor`` (if any) rounds that up.

    Modified keys: ``img``, ``img_shape`` (the padded size, as in mmcv), ``gt_masks``,
    ``gt_seg_map``. Added keys: ``pad_shape``, ``pad_fixed_size``, ``pad_size_divisor``.

    Args:
        size (tuple[int, int], optional): Fixed output (w, h). Defaults to None.
        size_divisor (int, optional): Pad H and W up to multiples of it. Defaults to None.
        pad_to_square (bool): Pad to a square. Defaults to False.
        pad_val (Number | dict): Padding values; a number is the image value (semantic
            maps then use 255). A dict may hold ``img``, ``seg`` and ``masks`` values
            (defaults 0, 255 and 0). Defaults to dict(img=0, seg=255).
        padding_mode (str): 'constant', 'edge', 'reflect' or 'symmetric'.
            Defaults to 'constant'.
    """

    def __init__(self,
                 size: Optional[Tuple[int, int]] = None,
                 size_divisor: Optional[int] = None,
                 pad_to_square: bool = False,
                 pad_val: Union[Number, dict] = dict(img=0, seg=255),
                 padding_mode: str = 'constant') -> None:
        check_arg(not (pad_to_square and size is not None),
                  'Pad: `size` must be None when `pad_to_square` is True.')
        check_arg(pad_to_square or (size is None) != (size_divisor is None),
                  'Pad needs exactly one of `size` (w, h) and `size_divisor` (or '
                  f'pad_to_square=True), got size={size}, size_divisor={size_divisor}.')
        if size_divisor is not None and (not isinstance(size_divisor, int)
                                         or size_divisor <= 0):
            raise TransformArgError(f'Pad: `size_divisor` must be a positive int, got '
                                    f'{size_divisor!r}.')
        check_arg(padding_mode in _PADDING_MODES,
                  f'Pad: `padding_mode` must be one of {_PADDING_MODES}, got '
                  f'{padding_mode!r}.')
        if isinstance(pad_val, Number):
            pad_val = dict(img=pad_val, seg=255)
        check_arg(isinstance(pad_val, dict),
                  f'Pad: `pad_val` must be a number or a dict, got {pad_val!r}.')
        self.size = size  # kept as given: it shows in the repr and pad_fixed_size
        self.size_divisor = size_divisor
        self.pad_to_square = pad_to_square
        self.pad_val = pad_val
        self.padding_mode = padding_mode

    def _target_shape(self, img_shape: Tuple[int, int]) -> Tuple[int, int]:
        """(h, w) to pad an image of ``img_shape`` (h, w) to."""
        if self.size is not None:
            return int(self.size[1]), int(self.size[0])
        h, w = img_shape
        if self.pad_to_square:
            h = w = max(h, w)
        if self.size_divisor is not None:
            h = int(np.ceil(h / self.size_divisor)) * self.size_divisor
            w = int(np.ceil(w / self.size_divisor)) * self.size_divisor
        return h, w

    def transform(self, results: dict) -> dict:
        """Pad ``results['img']`` and the maps aligned with it.

        Args:
            results (dict): Pipeline results with ``img``.

        Returns:
            dict: ``results`` with padded entries and ``pad_shape``.
        """
        if 'img' not in results:
            raise MissingResultKeyError("Pad needs results['img'] (run LoadImageFromFile "
                                        'first).')
        img = results['img']
        img = _pad_array(img, self._target_shape(img.shape[:2]),
                         self.pad_val.get('img', 0), self.padding_mode)
        results['img'] = img
        results['pad_shape'] = img.shape
        results['pad_fixed_size'] = self.size
        results['pad_size_divisor'] = self.size_divisor
        results['img_shape'] = img.shape[:2]
        if results.get('gt_masks') is not None:
            results['gt_masks'] = results['gt_masks'].pad(
                img.shape[:2], pad_val=self.pad_val.get('masks', 0))
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = _pad_array(results['gt_seg_map'], img.shape[:2],
                                               self.pad_val.get('seg', 255),
                                               self.padding_mode)
        return results

    def __repr__(self) -> str:
        # mmcv's format, unbalanced parentheses and unquoted mode included.
        return (f'{self.__class__.__name__}(size={self.size}, '
                f'size_divisor={self.size_divisor}, pad_to_square={self.pad_to_square}, '
                f'pad_val={self.pad_val}), padding_mode={self.padding_mode})')


def _pad_array(array: np.ndarray, shape: Tuple[int, int], value: Number,
               padding_mode: str) -> np.ndarray:
    """Pad an [H, W] or [H, W, C] array on the bottom/right up to ``shape`` (h, w)."""
    if array.ndim == 3 and isinstance(value, (int, float)):
        value = tuple(value for _ in range(array.shape[2]))  # cv2 wants one per channel
    elif isinstance(value, (list, tuple)):
        value = tuple(value)  # a per-channel value, e.g. pad_val=dict(img=(114, 114, 114))
    return mmcv.impad(array, shape=shape, pad_val=value, padding_mode=padding_mode)
