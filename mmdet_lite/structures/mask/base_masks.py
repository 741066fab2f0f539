"""The instance-mask API shared by the bitmap and polygon containers."""
from abc import ABCMeta, abstractmethod
from typing import Iterator, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np
import torch
from torch import Tensor

T = TypeVar('T', bound='BaseInstanceMasks')

FLIP_DIRECTIONS = ('horizontal', 'vertical', 'diagonal')
TRANSLATE_DIRECTIONS = ('horizontal', 'vertical')


class MaskValueError(ValueError, AssertionError):
    """A bad argument value; an AssertionError too, as mmdetection asserts these."""


class MaskTypeError(TypeError, AssertionError):
    """A bad argument type; an AssertionError too, as mmdetection asserts these."""


def check_direction(direction: str, allowed: Tuple[str, ...], name: str) -> None:
    """Raise :class:`MaskValueError` unless ``direction`` is one of ``allowed``."""
    if direction not in allowed:
        raise MaskValueError(f'{name} must be one of {allowed}, but got {direction!r}')


class BaseInstanceMasks(metaclass=ABCMeta):
    """The masks of N instances in one image of size (height, width).

    Subclasses store ``self.masks`` and implement the geometric ops, each returning a new
    object of the same type (the original is never modified).
    """

    masks: object
    height: int
    width: int

    # --- container protocol -------------------------------------------------------------
    def __len__(self) -> int:
        """Number of masks N."""
        return len(self.masks)

    def __iter__(self) -> Iterator:
        """Iterate over the N masks (an [H, W] array or a list of polygons each)."""
        return iter(self.masks)

    def __repr__(self) -> str:
        # mmdetection's format, e.g. 'BitmapMasks(num_masks=3, height=32, width=32)'.
        return (f'{type(self).__name__}(num_masks={len(self)}, height={self.height}, '
                f'width={self.width})')

    @staticmethod
    def _index_to_numpy(index):
        """Turn torch / list / bool indices into something numpy and list indexing accept."""
        if isinstance(index, Tensor):
            index = index.detach().cpu().numpy()
        if isinstance(index, list) and index and isinstance(index[0], (bool, np.bool_)):
            index = np.asarray(index, dtype=bool)
        if isinstance(index, np.ndarray) and index.dtype == bool:
            index = np.nonzero(index)[0]
        return index

    @classmethod
    def _check_cat_inputs(cls: Type[T], masks: Sequence[T]) -> None:
        """Check ``masks`` is a non-empty sequence of ``cls`` objects (as mmdetection does)."""
        if not isinstance(masks, Sequence):
            raise MaskTypeError(f'{cls.__name__}.cat expects a sequence of {cls.__name__}, '
                                f'but got {type(masks).__name__}')
        if len(masks) == 0:
            # mmdetection raises a plain ValueError here, not an assertion.
            raise ValueError('masks should not be an empty list.')
        for m in masks:
            if not isinstance(m, cls):
                raise MaskTypeError(f'{cls.__name__}.cat expects {cls.__name__} items, '
                                    f'but got {type(m).__name__}')

    @classmethod
    @abstractmethod
    def cat(cls: Type[T], masks: Sequence[T]) -> T:
        """Concatenate masks of the same image along N.

        Args:
            masks (Sequence[BaseInstanceMasks]): Non-empty sequence of masks of this type.

        Returns:
            BaseInstanceMasks: One object holding all the masks, in order.
        """

    # --- conversions --------------------------------------------------------------------
    @abstractmethod
    def to_ndarray(self) -> np.ndarray:
        """Return the masks as an array [N, H, W]."""

    def to_tensor(self, dtype: torch.dtype = torch.bool,
                  device: Union[str, torch.device] = 'cpu') -> Tensor:
        """Return the masks as a tensor.

        Args:
            dtype (torch.dtype): Dtype of the tensor. Defaults to torch.bool (mmdetection
                requires it; the default is ours).
            device (str | torch.device): Device of the tensor. Defaults to 'cpu'.

        Returns:
            Tensor: Masks of shape [N, H, W].
        """
        return torch.as_tensor(self.to_ndarray(), dtype=dtype, device=device)

    @property
    @abstractmethod
    def areas(self) -> np.ndarray:
        """np.ndarray: Foreground area of each mask, shape [N]."""

    def get_bboxes(self, dst_type: Union[str, type] = 'hbb'):
        """Tight boxes around the masks, as a box object.

        Args:
            dst_type (str | type): A registered box type name (e.g. ``'hbox'``) or class.
                ``'hbb'`` (the default) is taken for ``'hbox'``. Names are looked up in the
                box-type registry, filled when ``mmdet_lite.structures.bbox`` is imported.

        Returns:
            BaseBoxes: N boxes of ``dst_type``, made by its ``from_instance_masks``.
        """
        # The box module imports the mask classes, so only its registry is imported here.
        from ..bbox.box_type import get_box_type
        if isinstance(dst_type, str) and dst_type.lower() == 'hbb':
            dst_type = 'hbox'
        _, box_type_cls = get_box_type(dst_type)
        return box_type_cls.from_instance_masks(self)

    # --- geometric ops (all return new masks) -------------------------------------------
    @abstractmethod
    def rescale(self: T, scale: Union[float, Tuple[int, int]], interpolation: str = 'nearest') -> T:
        """Resize keeping the aspect ratio, as :func:`mmcv.imrescale`.

        Args:
            scale (float | tuple[int, int]): A factor, or the (long, short) edges to fit in.
            interpolation (str): Interpolation name of :func:`mmcv.imresize`.

        Returns:
            BaseInstanceMasks: The rescaled masks.
        """

    @abstractmethod
    def resize(self: T, out_shape: Tuple[int, int], interpolation: str = 'nearest') -> T:
        """Resize to ``out_shape`` (h, w); see :func:`mmcv.imresize` for ``interpolation``."""

    @abstractmethod
    def flip(self: T, flip_direction: str = 'horizontal') -> T:
        """Flip 'horizontal', 'vertical' or 'diagonal' (both)."""

    @abstractmethod
    def pad(self: T, out_shape: Tuple[int, int], pad_val: int = 0) -> T:
        """Pad at the bottom/right to ``out_shape`` (h, w) with ``pad_val``."""

    @abstractmethod
    def crop(self: T, bbox: np.ndarray) -> T:
        """Crop to the box (x1, y1, x2, y2), shape (4, ); the result is (y2 - y1, x2 - x1)."""

    @abstractmethod
    def crop_and_resize(self,
                        bboxes: Union[np.ndarray, Tensor],
                        out_shape: Tuple[int, int],
                        inds: Union[np.ndarray, Tensor],
                        device: Union[str, torch.device] = 'cpu',
                        interpolation: str = 'bilinear',
                        binarize: bool = True) -> 'BaseInstanceMasks':
        """Crop mask ``inds[i]`` to ``bboxes[i]`` and resize it to ``out_shape``.

        Args:
            bboxes (np.ndarray | Tensor): Boxes [K, 4] (x1, y1, x2, y2).
            out_shape (tuple[int, int]): Target (h, w).
            inds (np.ndarray | Tensor): Mask index [K] for each box, in [0, N - 1].
            device (str | torch.device): Device of the computation.
            interpolation (str): Interpolation name (see :func:`mmcv.imresize`).
            binarize (bool): Round the resampled values to 0 / 1. Types that can only hold
                binary masks raise when it is False.

        Returns:
            BaseInstanceMasks: K masks of size ``out_shape``.
        """

    @abstractmethod
    def expand(self: T, expanded_h: int, expanded_w: int, top: int, left: int) -> T:
        """Place the masks at (top, left) in an empty (expanded_h, expanded_w) canvas."""

    @abstractmethod
    def translate(self: T,
                  out_shape: Tuple[int, int],
                  offset: Union[int, float],
                  direction: str = 'horizontal',
                  border_value: Union[int, float] = 0,
                  interpolation: str = 'bilinear') -> T:
        """Shift by ``offset`` pixels (positive: right / down) into an ``out_shape`` canvas.

        Args:
            out_shape (tuple[int, int]): Output (h, w).
            offset (int | float): The shift in pixels.
            direction (str): 'horizontal' or 'vertical'.
            border_value (int | float): Fill of the uncovered area.
            interpolation (str): Interpolation name (see :func:`mmcv.imtranslate`).

        Returns:
            BaseInstanceMasks: The translated masks.
        """

    def shear(self: T,
              out_shape: Tuple[int, int],
              magnitude: Union[int, float],
              direction: str = 'horizontal',
              border_value: Union[int, float] = 0,
              interpolation: str = 'bilinear') -> T:
        """Shear: x' = x + magnitude * y ('horizontal') or y' = y + magnitude * x ('vertical').

        Args:
            out_shape (tuple[int, int]): Output (h, w).
            magnitude (int | float): The shear factor.
            direction (str): 'horizontal' or 'vertical'.
            border_value (int | float): Fill of the uncovered area.
            interpolation (str): Interpolation name (see :func:`mmcv.imshear`).

        Returns:
            BaseInstanceMasks: The sheared masks.
        """
        raise NotImplementedError(f'{type(self).__name__} does not implement shear')

    @abstractmethod
    def rotate(self: T,
               out_shape: Tuple[int, int],
               angle: Union[int, float],
               center: Optional[Tuple[float, float]] = None,
               scale: Union[int, float] = 1.0,
               border_value: Union[int, float] = 0,
               interpolation: str = 'bilinear') -> T:
        """Rotate by ``angle`` degrees, clockwise on screen (as :func:`mmcv.imrotate`).

        Args:
            out_shape (tuple[int, int]): Output (h, w).
            angle (int | float): Rotation angle in degrees; positive turns clockwise.
            center (tuple[float, float], optional): (x, y) centre of the rotation. Defaults
                to the image centre ((w - 1) / 2, (h - 1) / 2).
            scale (int | float): Isotropic scale factor.
            border_value (int | float): Fill of the uncovered area.
            interpolation (str): Interpolation name (see :func:`mmcv.imrotate`).

        Returns:
            BaseInstanceMasks: The rotated masks.
        """
