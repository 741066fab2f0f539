"""InferencerLoader: one loading step for a path, an image array or a results dict."""
from typing import Union

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet_lite.registry import TRANSFORMS


@TRANSFORMS.register_module()
class InferencerLoader(BaseTransform):
    """Load an inference input given as a file path, an image array or a dict.

    A str becomes ``dict(img_path=...)`` and an array ``dict(img=...)``; a dict holding
    ``img`` goes through ``LoadImageFromNDArray``, any other through
    ``LoadImageFromFile``.

    Args:
        **kwargs: Arguments of both loaders (``to_float32``, ``backend_args`` ...).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__()
        self.from_file = TRANSFORMS.build(dict(type='LoadImageFromFile', **kwargs))
        self.from_ndarray = TRANSFORMS.build(dict(type='LoadImageFromNDArray', **kwargs))

    def transform(self, results: Union[str, np.ndarray, dict]) -> dict:
        """Load the image.

        Args:
            results (str | np.ndarray | dict): Path, BGR image [H, W, 3], or results.

        Returns:
            dict: Results with ``img``, ``img_shape``, ``ori_shape`` (and ``img_path``).
        """
        if isinstance(results, str):
            inputs = dict(img_path=results)
        elif isinstance(results, np.ndarray):
            inputs = dict(img=results)
        elif isinstance(results, dict):
            inputs = results
        else:
            raise NotImplementedError('InferencerLoader takes a path, an np.ndarray or a '
                                      f'dict, got {type(results).__name__}.')
        if 'img' in inputs:
            return self.from_ndarray(inputs)
        return self.from_file(inputs)
