"""Data transforms: importing this package registers them into ``TRANSFORMS``.

mmcv's transforms (``LoadImageFromFile``, ``RandomApply`` ...) are registered in the parent
registry and found from ours as well.
"""
import mmcv.transforms  # noqa: F401  (registers mmcv's transforms in the parent registry)

from .crop import RandomCrop
from .filters import FilterAnnotations
from .flip import RandomFlip
from .formatting import PackDetInputs
from .loading import LoadAnnotations
from .loading_ndarray import LoadImageFromNDArray
from .pad import Pad
from .random_resize import RandomChoiceResize, RandomResize
from .resize import Resize
from .safe_loading import LoadImageFromFile
from .wrappers import RandomChoice

__all__ = [
    'LoadAnnotations', 'Resize', 'RandomResize', 'RandomChoiceResize', 'RandomFlip',
    'RandomCrop', 'Pad', 'FilterAnnotations', 'PackDetInputs', 'RandomChoice',
    'LoadImageFromNDArray', 'LoadImageFromFile'
]
