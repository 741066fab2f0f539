"""Behaviour shared by the bitmap and polygon instance-mask containers."""
from abc import ABCMeta, abstractmethod
from typing import Iterator, Sequence, Type, TypeVar

import numpy as np
import torch
from torch import Tensor

T = TypeVar('T', bound='BaseInstanceMasks')

FLIP_DIRECTIONS = ('horizontal', 'vertical', 'diagonal')
TRANSLATE_DIRECTIONS = ('horizontal', 'vertical')


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
        return len(self.masks)

    def __iter__(self) -> Iterator:
        return iter(self.masks)

    def __repr__(self) -> str:
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
        if not isinstance(masks, Sequence) or len(masks) == 0:
            raise ValueError(f'{cls.__name__}.cat expects a non-empty list of {cls.__name__}')
        for m in masks:
            if not isinstance(m, cls):
                raise TypeError(f'{cls.__name__}.cat expects {cls.__name__} items, '
                                f'but got {type(m).__name__}')

    # --- conversions --------------------------------------------------------------------
    @abstractmethod
    def to_ndarray(self) -> np.ndarray:
        """Return the masks as a uint8 array [N, H, W]."""

    def to_tensor(self, dtype: torch.dtype = torch.bool, device='cpu') -> Tensor:
        """Return the masks as a tensor [N, H, W] of ``dtype`` on ``device``."""
        return torch.as_tensor(self.to_ndarray(), dtype=dtype, device=device)

    @property
    @abstractmethod
    def areas(self) -> np.ndarray:
        """np.ndarray: Foreground area of each mask, shape [N]."""

    # --- geometric ops (all return new masks) -------------------------------------------
    @abstractmethod
    def rescale(self: T, scale, interpolation: str = 'nearest') -> T:
        """Resize keeping the aspect ratio; ``scale`` is a float or a (long, short) edge pair."""

    @abstractmethod
    def resize(self: T, out_shape, interpolation: str = 'nearest') -> T:
        """Resize to ``out_shape`` (h, w)."""

    @abstractmethod
    def flip(self: T, flip_direction: str = 'horizontal') -> T:
        """Flip 'horizontal', 'vertical' or 'diagonal'."""

    @abstractmethod
    def pad(self: T, out_shape, pad_val: int = 0) -> T:
        """Pad at the bottom/right to ``out_shape`` (h, w)."""

    @abstractmethod
    def crop(self: T, bbox: np.ndarray) -> T:
        """Crop to the box (x1, y1, x2, y2)."""

    @abstractmethod
    def crop_and_resize(self, bboxes, out_shape, inds, device='cpu', interpolation='bilinear',
                        binarize=True) -> 'BaseInstanceMasks':
        """Crop mask ``inds[i]`` to ``bboxes[i]`` and resize it to ``out_shape``."""

    @abstractmethod
    def expand(self: T, expanded_h: int, expanded_w: int, top: int, left: int) -> T:
        """Place the masks at (top, left) in a larger empty canvas."""

    @abstractmethod
    def translate(self: T, out_shape, offset, direction='horizontal', border_value=0,
                  interpolation='bilinear') -> T:
        """Shift by ``offset`` pixels along ``direction``."""
