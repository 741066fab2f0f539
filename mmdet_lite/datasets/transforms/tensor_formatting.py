"""Small formatting steps of older pipelines: to tensors, transposes, list wrapping.

As in mmdetection these are plain callables (not ``BaseTransform``): each edits and
returns the results dict it is given.
"""
from typing import Sequence

import numpy as np
from mmcv.transforms import to_tensor

from mmdet_lite.registry import TRANSFORMS


@TRANSFORMS.register_module()
class ToTensor:
    """Convert ``results[key]`` to a ``torch.Tensor`` for each key in ``keys``.

    Args:
        keys (Sequence[str]): Keys to convert (arrays, sequences, ints or floats).
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = keys

    def __call__(self, results: dict) -> dict:
        """Convert the values in place.

        Args:
            results (dict): Holds every key of ``keys``.

        Returns:
            dict: ``results`` with tensor values.
        """
        for key in self.keys:
            results[key] = to_tensor(results[key])
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(keys={self.keys})'


@TRANSFORMS.register_module()
class ImageToTensor:
    """Convert images [H, W, C] (or [H, W]) to contiguous tensors [C, H, W] ([1, H, W]).

    Args:
        keys (Sequence[str]): Keys of the images to convert.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = keys

    def __call__(self, results: dict) -> dict:
        """Convert and move channels first, in place.

        Args:
            results (dict): Holds every key of ``keys`` as an np.ndarray image.

        Returns:
            dict: ``results`` with tensors [C, H, W].
        """
        for key in self.keys:
            img = results[key]
            if img.ndim < 3:
                img = np.expand_dims(img, -1)
            results[key] = to_tensor(img).permute(2, 0, 1).contiguous()
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(keys={self.keys})'


@TRANSFORMS.register_module()
class Transpose:
    """Permute the axes of ``results[key]`` by ``order`` for each key in ``keys``.

    Args:
        keys (Sequence[str]): Keys of np.ndarray values to transpose.
        order (Sequence[int]): New axis order, as for ``np.ndarray.transpose``.
    """

    def __init__(self, keys: Sequence[str], order: Sequence[int]) -> None:
        self.keys = keys
        self.order = order

    def __call__(self, results: dict) -> dict:
        """Transpose the values in place.

        Args:
            results (dict): Holds every key of ``keys``.

        Returns:
            dict: ``results`` with transposed values.
        """
        for key in self.keys:
            results[key] = results[key].transpose(self.order)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(keys={self.keys}, order={self.order})'


@TRANSFORMS.register_module()
class WrapFieldsToLists:
    """Wrap every value of the results in a one-element list (single-image test time)."""

    def __call__(self, results: dict) -> dict:
        """Replace each ``results[key]`` by ``[results[key]]``.

        Args:
            results (dict): Any results.

        Returns:
            dict: ``results`` with list values.
        """
        for key, value in results.items():
            results[key] = [value]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'
