"""``BaseBoxes``: an abstract, tensor-like wrapper around a box tensor of shape [..., box_dim].

A box object behaves like a tensor whose last dimension is fixed to ``box_dim``: indexing,
reshaping, device moves and concatenation all return box objects of the same class, and none of
them may change the last dimension. Subclasses (e.g. ``HorizontalBoxes``) set ``box_dim`` and
implement the geometric operations declared abstract here.
"""
from abc import ABCMeta, abstractmethod
from typing import Callable, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np
import torch
from torch import BoolTensor, Tensor

T = TypeVar('T', bound='BaseBoxes')
DeviceType = Union[str, torch.device]
IndexType = Union[slice, int, list, Tensor, np.ndarray, tuple]


# ``convert_box_type`` of box_type.py, installed by that module when it is imported (the
# package __init__ does so). box_type.py imports this module, so importing it back here would
# make the two modules import each other.
_convert_box_type: Optional[Callable] = None


def _install_box_converter(convert: Callable) -> None:
    """Give ``BaseBoxes.convert_to`` the registry's conversion function."""
    global _convert_box_type
    _convert_box_type = convert


class BoxValueError(ValueError, AssertionError):
    """Invalid box data or argument.

    It is also an ``AssertionError`` because mmdetection asserts in the same places, and code
    written against mmdetection may catch that.
    """


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise BoxValueError(message)


def _check_not_last_dim(dim: int, ndim: int, op: str) -> None:
    """Refuse an operation along the box-coordinate (last) dimension."""
    _check(dim != -1 and dim != ndim - 1,
           f'{op}: dim must not be the last (box coordinate) dimension, but got dim={dim} '
           f'for boxes with {ndim} dims')


class BaseBoxes(metaclass=ABCMeta):
    """Abstract base class of 2D box types.

    Args:
        data (Tensor | np.ndarray | Sequence): Box data of shape [..., box_dim] (at least 2
            dims). Empty data (e.g. ``[]``) becomes shape [0, box_dim].
        dtype (torch.dtype, optional): Cast the data to this dtype. Defaults to None.
        device (str | torch.device, optional): Move the data to this device. Defaults to None.
        clone (bool): Copy the data so that later in-place edits do not leak into the caller's
            tensor. Defaults to True.

    Attributes:
        tensor (Tensor): The wrapped boxes, shape [..., box_dim].
    """

    # Length of the last dimension; subclasses must override it.
    box_dim: int = 0

    def __init__(self,
                 data: Union[Tensor, np.ndarray, Sequence],
                 dtype: Optional[torch.dtype] = None,
                 device: Optional[DeviceType] = None,
                 clone: bool = True) -> None:
        if not isinstance(data, (Tensor, np.ndarray, Sequence)):
            raise TypeError('boxes should be Tensor, ndarray, or Sequence, '
                            f'but got {type(data)}')
        data = torch.as_tensor(data)
        if dtype is not None or device is not None:
            data = data.to(dtype=dtype, device=device)
        if clone:
            data = data.clone()
        if data.numel() == 0:
            data = data.reshape(-1, self.box_dim)
        _check(data.dim() >= 2 and data.size(-1) == self.box_dim,
               f'{type(self).__name__} data must have at least 2 dims and a last dimension of '
               f'length {self.box_dim}, but got shape {tuple(data.shape)}')
        self.tensor = data

    # ------------------------------------------------------------------ construction helpers
    def convert_to(self, dst_type: Union[str, type]) -> 'BaseBoxes':
        """Convert to another registered box type.

        Args:
            dst_type (str | type): Destination box type name or class.

        Returns:
            BaseBoxes: Boxes of the destination type.
        """
        if _convert_box_type is None:
            raise RuntimeError('box conversion is not set up: import mmdet_lite.structures.bbox')
        return _convert_box_type(self, dst_type=dst_type)

    def empty_boxes(self: T,
                    dtype: Optional[torch.dtype] = None,
                    device: Optional[DeviceType] = None) -> T:
        """Return boxes of the same type with shape [0, box_dim].

        Args:
            dtype (torch.dtype, optional): dtype; defaults to this object's.
            device (str | torch.device, optional): device; defaults to this object's.

        Returns:
            BaseBoxes: Empty boxes.
        """
        empty = self.tensor.new_zeros(0, self.box_dim, dtype=dtype, device=device)
        return type(self)(empty, clone=False)

    def fake_boxes(self: T,
                   sizes: Tuple[int, ...],
                   fill: float = 0,
                   dtype: Optional[torch.dtype] = None,
                   device: Optional[DeviceType] = None) -> T:
        """Return boxes of the same type filled with ``fill``.

        Args:
            sizes (tuple[int]): Shape of the result; the last entry must be ``box_dim``.
            fill (float): Fill value. Defaults to 0.
            dtype (torch.dtype, optional): dtype; defaults to this object's.
            device (str | torch.device, optional): device; defaults to this object's.

        Returns:
            BaseBoxes: Boxes of shape ``sizes``.
        """
        fake = self.tensor.new_full(sizes, fill, dtype=dtype, device=device)
        return type(self)(fake, clone=False)

    # ------------------------------------------------------------------ indexing
    def _normalize_index(self, index: IndexType) -> IndexType:
        """Convert numpy indices to tensors and refuse indices that reach the last dim."""
        if isinstance(index, np.ndarray):
            index = torch.as_tensor(index, device=self.device)
        ndim = self.tensor.dim()
        if isinstance(index, Tensor) and index.dtype == torch.bool:
            _check(index.dim() < ndim,
                   f'a boolean index must have fewer than {ndim} dims, but got {index.dim()}')
        elif isinstance(index, tuple):
            _check(len(index) < ndim,
                   f'an index tuple must have fewer than {ndim} entries, but got {len(index)}')
            # An Ellipsis in the middle could select into the coordinate dimension.
            if any(item is Ellipsis for item in index):
                _check(index[-1] is Ellipsis, 'Ellipsis must be the last entry of the index')
        return index

    def __getitem__(self: T, index: IndexType) -> T:
        """Index the boxes; the result always keeps at least the shape [1, box_dim]."""
        boxes = self.tensor[self._normalize_index(index)]
        if boxes.dim() == 1:
            boxes = boxes.reshape(1, -1)
        return type(self)(boxes, clone=False)

    def __setitem__(self, index: IndexType, values: 'BaseBoxes') -> None:
        """Write ``values`` (boxes of the same type) at ``index``."""
        _check(type(values) is type(self),
               f'values must be {type(self).__name__}, but got {type(values).__name__}')
        self.tensor[self._normalize_index(index)] = values.tensor

    def __len__(self) -> int:
        """Return the size of the first dimension."""
        return self.tensor.size(0)

    def __deepcopy__(self, memo: dict) -> 'BaseBoxes':
        """Deep-copy by cloning only the tensor."""
        other = self.__class__.__new__(self.__class__)
        memo[id(self)] = other
        other.tensor = self.tensor.clone()
        return other

    def __repr__(self) -> str:
        """Return ``ClassName(\\n<tensor>)`` as mmdetection does."""
        return f'{self.__class__.__name__}(\n{self.tensor})'

    # ------------------------------------------------------------------ tensor-like API
    def new_tensor(self, *args, **kwargs) -> Tensor:
        """``Tensor.new_tensor`` of the wrapped tensor."""
        return self.tensor.new_tensor(*args, **kwargs)

    def new_full(self, *args, **kwargs) -> Tensor:
        """``Tensor.new_full`` of the wrapped tensor."""
        return self.tensor.new_full(*args, **kwargs)

    def new_empty(self, *args, **kwargs) -> Tensor:
        """``Tensor.new_empty`` of the wrapped tensor."""
        return self.tensor.new_empty(*args, **kwargs)

    def new_ones(self, *args, **kwargs) -> Tensor:
        """``Tensor.new_ones`` of the wrapped tensor."""
        return self.tensor.new_ones(*args, **kwargs)

    def new_zeros(self, *args, **kwargs) -> Tensor:
        """``Tensor.new_zeros`` of the wrapped tensor."""
        return self.tensor.new_zeros(*args, **kwargs)

    def size(self, dim: Optional[int] = None) -> Union[int, torch.Size]:
        """Return the full size, or the size of dimension ``dim``."""
        return self.tensor.size() if dim is None else self.tensor.size(dim)

    def dim(self) -> int:
        """Return the number of dimensions."""
        return self.tensor.dim()

    @property
    def device(self) -> torch.device:
        """torch.device: Device of the wrapped tensor."""
        return self.tensor.device

    @property
    def dtype(self) -> torch.dtype:
        """torch.dtype: dtype of the wrapped tensor."""
        return self.tensor.dtype

    @property
    def shape(self) -> torch.Size:
        """torch.Size: Shape of the wrapped tensor."""
        return self.tensor.shape

    def numel(self) -> int:
        """Return the number of elements of the wrapped tensor."""
        return self.tensor.numel()

    def numpy(self) -> np.ndarray:
        """Return the wrapped tensor as a numpy array (sharing memory on CPU)."""
        return self.tensor.numpy()

    def to(self: T, *args, **kwargs) -> T:
        """``Tensor.to`` on the wrapped tensor."""
        return type(self)(self.tensor.to(*args, **kwargs), clone=False)

    def cpu(self: T) -> T:
        """Move to CPU."""
        return type(self)(self.tensor.cpu(), clone=False)

    def cuda(self: T, *args, **kwargs) -> T:
        """Move to a CUDA device."""
        return type(self)(self.tensor.cuda(*args, **kwargs), clone=False)

    def clone(self: T) -> T:
        """Return a copy with its own storage."""
        return type(self)(self.tensor)

    def detach(self: T) -> T:
        """Detach from the autograd graph."""
        return type(self)(self.tensor.detach(), clone=False)

    def view(self: T, *shape: int) -> T:
        """``Tensor.view``; the last entry must keep ``box_dim``."""
        return type(self)(self.tensor.view(shape), clone=False)

    def reshape(self: T, *shape: int) -> T:
        """``Tensor.reshape``; the last entry must keep ``box_dim``."""
        return type(self)(self.tensor.reshape(shape), clone=False)

    def expand(self: T, *sizes: int) -> T:
        """``Tensor.expand``."""
        return type(self)(self.tensor.expand(sizes), clone=False)

    def repeat(self: T, *sizes: int) -> T:
        """``Tensor.repeat``."""
        return type(self)(self.tensor.repeat(sizes), clone=False)

    def transpose(self: T, dim0: int, dim1: int) -> T:
        """``Tensor.transpose`` of two non-coordinate dimensions."""
        ndim = self.tensor.dim()
        _check_not_last_dim(dim0, ndim, 'transpose')
        _check_not_last_dim(dim1, ndim, 'transpose')
        return type(self)(self.tensor.transpose(dim0, dim1), clone=False)

    def permute(self: T, *dims: int) -> T:
        """``Tensor.permute``; the coordinate dimension must stay last."""
        _check(dims[-1] == -1 or dims[-1] == self.tensor.dim() - 1,
               f'permute: the last dim must stay last, but got dims={dims}')
        return type(self)(self.tensor.permute(dims), clone=False)

    def split(self: T, split_size_or_sections: Union[int, Sequence[int]],
              dim: int = 0) -> List[T]:
        """``Tensor.split`` along a non-coordinate dimension."""
        _check_not_last_dim(dim, self.tensor.dim(), 'split')
        parts = self.tensor.split(split_size_or_sections, dim=dim)
        return [type(self)(part, clone=False) for part in parts]

    def chunk(self: T, chunks: int, dim: int = 0) -> List[T]:
        """``Tensor.chunk`` along a non-coordinate dimension."""
        _check_not_last_dim(dim, self.tensor.dim(), 'chunk')
        parts = self.tensor.chunk(chunks, dim=dim)
        return [type(self)(part, clone=False) for part in parts]

    def unbind(self: T, dim: int = 0) -> List[T]:
        """``Tensor.unbind`` along a non-coordinate dimension."""
        _check_not_last_dim(dim, self.tensor.dim(), 'unbind')
        parts = self.tensor.unbind(dim=dim)
        return [type(self)(part, clone=False) for part in parts]

    def flatten(self: T, start_dim: int = 0, end_dim: int = -2) -> T:
        """``Tensor.flatten`` of dims ``start_dim..end_dim`` (not the coordinate dim)."""
        _check_not_last_dim(end_dim, self.tensor.dim(), 'flatten')
        return type(self)(self.tensor.flatten(start_dim, end_dim), clone=False)

    def squeeze(self: T, dim: Optional[int] = None) -> T:
        """``Tensor.squeeze``."""
        boxes = self.tensor.squeeze() if dim is None else self.tensor.squeeze(dim)
        return type(self)(boxes, clone=False)

    def unsqueeze(self: T, dim: int) -> T:
        """``Tensor.unsqueeze`` before the coordinate dimension."""
        _check(dim != -1 and dim != self.tensor.dim(),
               f'unsqueeze: dim must not be after the coordinate dimension, but got {dim}')
        return type(self)(self.tensor.unsqueeze(dim), clone=False)

    @classmethod
    def cat(cls: Type[T], box_list: Sequence[T], dim: int = 0) -> T:
        """Concatenate box objects of this class, like ``torch.cat``.

        Args:
            box_list (Sequence[BaseBoxes]): Non-empty sequence of boxes of this class.
            dim (int): Dimension to concatenate along (not the last). Defaults to 0.

        Returns:
            BaseBoxes: The concatenated boxes.
        """
        _check(isinstance(box_list, Sequence),
               f'box_list must be a sequence, but got {type(box_list).__name__}')
        if len(box_list) == 0:
            raise ValueError('box_list should not be a empty list.')
        _check_not_last_dim(dim, box_list[0].dim(), 'cat')
        _check(all(isinstance(boxes, cls) for boxes in box_list),
               f'every item of box_list must be a {cls.__name__}')
        return cls(torch.cat([boxes.tensor for boxes in box_list], dim=dim), clone=False)

    @classmethod
    def stack(cls: Type[T], box_list: Sequence[T], dim: int = 0) -> T:
        """Stack box objects of this class along a new dimension, like ``torch.stack``.

        Args:
            box_list (Sequence[BaseBoxes]): Non-empty sequence of boxes of this class.
            dim (int): Position of the new dimension (not after the last). Defaults to 0.

        Returns:
            BaseBoxes: The stacked boxes.
        """
        _check(isinstance(box_list, Sequence),
               f'box_list must be a sequence, but got {type(box_list).__name__}')
        if len(box_list) == 0:
            raise ValueError('box_list should not be a empty list.')
        _check(dim != -1 and dim != box_list[0].dim(),
               f'stack: dim must not be after the coordinate dimension, but got {dim}')
        _check(all(isinstance(boxes, cls) for boxes in box_list),
               f'every item of box_list must be a {cls.__name__}')
        return cls(torch.stack([boxes.tensor for boxes in box_list], dim=dim), clone=False)

    # ------------------------------------------------------------------ geometry (abstract)
    @property
    @abstractmethod
    def centers(self) -> Tensor:
        """Tensor: Box centers, shape [..., 2]."""

    @property
    @abstractmethod
    def areas(self) -> Tensor:
        """Tensor: Box areas, shape [...]."""

    @property
    @abstractmethod
    def widths(self) -> Tensor:
        """Tensor: Box widths, shape [...]."""

    @property
    @abstractmethod
    def heights(self) -> Tensor:
        """Tensor: Box heights, shape [...]."""

    @abstractmethod
    def flip_(self, img_shape: Tuple[int, int], direction: str = 'horizontal') -> None:
        """Flip in place inside an image of shape (h, w) ('horizontal'/'vertical'/'diagonal')."""

    @abstractmethod
    def translate_(self, distances: Tuple[float, float]) -> None:
        """Shift in place by (dx, dy)."""

    @abstractmethod
    def clip_(self, img_shape: Tuple[int, int]) -> None:
        """Clip in place to an image of shape (h, w)."""

    @abstractmethod
    def rotate_(self, center: Tuple[float, float], angle: float) -> None:
        """Rotate in place about ``center`` by ``angle`` degrees (positive: clockwise)."""

    @abstractmethod
    def project_(self, homography_matrix: Union[Tensor, np.ndarray]) -> None:
        """Transform in place by a 3x3 homography."""

    @abstractmethod
    def rescale_(self, scale_factor: Tuple[float, float]) -> None:
        """Scale coordinates (and so centers and sizes) in place by (w_scale, h_scale)."""

    @abstractmethod
    def resize_(self, scale_factor: Tuple[float, float]) -> None:
        """Scale widths and heights in place about the box centers by (w_scale, h_scale)."""

    @abstractmethod
    def is_inside(self,
                  img_shape: Tuple[int, int],
                  all_inside: bool = False,
                  allowed_border: int = 0) -> BoolTensor:
        """Return which boxes lie (partly, or with ``all_inside`` fully) inside the image."""

    @abstractmethod
    def find_inside_points(self, points: Tensor, is_aligned: bool = False) -> BoolTensor:
        """Return which points [M, 2] lie inside which boxes [N, box_dim]."""

    @staticmethod
    @abstractmethod
    def overlaps(boxes1: 'BaseBoxes',
                 boxes2: 'BaseBoxes',
                 mode: str = 'iou',
                 is_aligned: bool = False,
                 eps: float = 1e-6) -> Tensor:
        """Return overlaps [M, N] (or [M] when aligned) after converting to this type."""

    @staticmethod
    @abstractmethod
    def from_instance_masks(masks) -> 'BaseBoxes':
        """Return the boxes [N, box_dim] enclosing N instance masks."""
