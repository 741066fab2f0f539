"""LoadImageFromNDArray: start a pipeline from an image already in memory."""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile

from mmdet_lite.registry import TRANSFORMS

from .safe_loading import check_image_size


@TRANSFORMS.register_module()
class LoadImageFromNDArray(LoadImageFromFile):
    """Take the image from ``results['img']`` instead of reading ``results['img_path']``.

    A drop-in replacement for ``LoadImageFromFile`` as the first step of a test pipeline,
    used by :func:`mmdet_lite.apis.inference_detector` for images given as arrays. It
    accepts the same arguments (so a config's ``LoadImageFromFile`` entry can just change
    its ``type``); only ``to_float32`` matters here.

    Required keys: ``img`` (np.ndarray: BGR [H, W, 3], or grayscale [H, W], which is
    repeated to 3 channels, at least 2 x 2 pixels). ``img_id``, when present, names the
    image in errors ('image array #<img_id>').

    Modified keys: ``img``. Added keys: ``img_path`` (None), ``img_shape``, ``ori_shape``.

    Args:
        to_float32 (bool): Convert the image to float32. Defaults to False.
        **kwargs: The other arguments of ``LoadImageFromFile`` (ignored).
    """

    def transform(self, results: dict) -> Optional[dict]:
        """Check the in-memory image and fill in the keys ``LoadImageFromFile`` would.

        Args:
            results (dict): With ``img``.

        Returns:
            dict: ``results`` with ``img``, ``img_path``, ``img_shape``, ``ori_shape``.
        """
        if 'img' not in results:
            raise KeyError("LoadImageFromNDArray needs results['img'] (the image array)")
        img = results['img']
        if not isinstance(img, np.ndarray):
            raise TypeError(f"results['img'] must be an np.ndarray, got {type(img).__name__}")
        check_image_size(img, 'array' if results.get('img_id') is None else
                         f"array #{results['img_id']}")
        if img.ndim == 2:
            img = mmcv.gray2bgr(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError("results['img'] must be a BGR image [H, W, 3] or grayscale "
                             f'[H, W], got shape {img.shape}')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_path'] = None
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results
