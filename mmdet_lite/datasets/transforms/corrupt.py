"""Corrupt: the image corruptions of the robustness benchmark, from ``imagecorruptions``."""
import numpy as np
from mmcv.transforms import BaseTransform

from mmdet_lite.registry import TRANSFORMS
from .optional_imports import import_optional


@TRANSFORMS.register_module()
class Corrupt(BaseTransform):
    """Apply one corruption of `imagecorruptions
    <https://github.com/bethgelab/imagecorruptions>`_ (noise, blur, weather, digital).

    Needs the optional package ``imagecorruptions``; building the transform without it
    raises an ``ImportError`` (also a ``RuntimeError``) naming the package.

    Required keys: ``img``. Modified keys: ``img`` (uint8).

    Args:
        corruption (str): Corruption name, e.g. ``'gaussian_noise'``
            (``imagecorruptions.get_corruption_names('all')`` lists them).
        severity (int): Severity, 1 to 5. Defaults to 1.
    """

    def __init__(self, corruption: str, severity: int = 1) -> None:
        self._corrupt = import_optional('imagecorruptions', 'imagecorruptions',
                                        'Corrupt').corrupt
        self.corruption = corruption
        self.severity = severity

    def transform(self, results: dict) -> dict:
        """Corrupt ``results['img']``.

        Args:
            results (dict): Pipeline results with ``img`` ([H, W, 3]).

        Returns:
            dict: The same dict, ``img`` corrupted (uint8).
        """
        results['img'] = self._corrupt(results['img'].astype(np.uint8),
                                       corruption_name=self.corruption,
                                       severity=self.severity)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(corruption={self.corruption}, '
                f'severity={self.severity})')
