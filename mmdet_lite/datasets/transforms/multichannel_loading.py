"""LoadMultiChannelImageFromFiles: stack one file per channel into a single image."""
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.fileio import get

from mmdet_lite.registry import TRANSFORMS


class ImagePathsError(TypeError, AssertionError):
    """``results['img_path']`` is not a list of files (mmdetection asserts this)."""


@TRANSFORMS.register_module()
class LoadMultiChannelImageFromFiles(BaseTransform):
    """Read each file of ``results['img_path']`` (a list) and stack them on a last axis.

    With the default ``color_type='unchanged'`` and single-channel files the image is
    [H, W, len(img_path)]; multi-channel files give [H, W, C, len(img_path)].

    Required keys: ``img_path`` (list[str]).
    Modified keys: ``img``, ``img_shape``, ``ori_shape``.

    Args:
        to_float32 (bool): Convert the image to float32. Defaults to False.
        color_type (str): ``flag`` of ``mmcv.imfrombytes``. Defaults to 'unchanged'.
        imdecode_backend (str): Backend of ``mmcv.imfrombytes``. Defaults to 'cv2'.
        file_client_args (dict, optional): Removed in mmdetection 3; giving it raises
            ``RuntimeError``. Defaults to None.
        backend_args (dict, optional): mmengine file backend arguments. Defaults to None.
    """

    def __init__(self,
                 to_float32: bool = False,
                 color_type: str = 'unchanged',
                 imdecode_backend: str = 'cv2',
                 file_client_args: Optional[dict] = None,
                 backend_args: Optional[dict] = None) -> None:
        self.to_float32 = to_float32
        self.color_type = color_type
        self.imdecode_backend = imdecode_backend
        self.backend_args = backend_args
        if file_client_args is not None:
            raise RuntimeError('LoadMultiChannelImageFromFiles: `file_client_args` is '
                               'deprecated, please use `backend_args` instead.')

    def transform(self, results: dict) -> dict:
        """Load and stack the channel files.

        Args:
            results (dict): With ``img_path``: a list of file paths.

        Returns:
            dict: ``results`` with ``img``, ``img_shape`` and ``ori_shape``.
        """
        paths = results['img_path']
        if not isinstance(paths, list):
            raise ImagePathsError("LoadMultiChannelImageFromFiles needs results['img_path'] "
                                  f'to be a list of files, got {type(paths).__name__}.')
        channels = [
            mmcv.imfrombytes(get(path, backend_args=self.backend_args), flag=self.color_type,
                             backend=self.imdecode_backend) for path in paths
        ]
        img = np.stack(channels, axis=-1)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_float32={self.to_float32}, '
                f"color_type='{self.color_type}', "
                f"imdecode_backend='{self.imdecode_backend}', "
                f'backend_args={self.backend_args})')
