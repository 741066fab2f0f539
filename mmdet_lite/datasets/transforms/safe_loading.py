"""``LoadImageFromFile`` that names the file it could not load, and can skip it.

Registered under mmcv's name, so every pipeline's ``dict(type='LoadImageFromFile')`` builds
it (scope ``mmdet_lite``); arguments and results are mmcv's. What changes is the failure:

- A missing file raises ``FileNotFoundError('image file not found: <path>')`` and a file
  that is not a decodable image (truncated, corrupt, empty) raises ``ValueError`` naming
  the file and its size; mmcv raised an ``AssertionError`` for the latter.
- An image with a side under ``MIN_IMAGE_SIDE`` (2) pixels raises ``ValueError`` naming
  the file and its shape (:func:`check_image_size`); resizing such an image divided by
  zero or asked cv2 for a 0-pixel side.
- ``ignore_empty=True`` (mmcv's switch for this) skips such images instead: it logs a
  warning naming the file and how many images this process has skipped so far, and returns
  ``None``, on which mmengine's ``BaseDataset`` draws another sample for training (up to
  its ``max_refetch``). Test-mode datasets refuse ``None``, so evaluation still fails on
  a broken image, as it should: its metric would silently cover fewer images.

Turn skipping on for training only, e.g. ``--cfg-options
+train_dataloader.dataset.pipeline.0.ignore_empty=True`` (the loader is the pipeline's
first step in every config here). With ``num_workers > 0`` each worker keeps its own count.
"""
import logging
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from ...registry import TRANSFORMS

# Smallest height and width of an image a detector is given, in pixels.
MIN_IMAGE_SIDE = 2


def check_image_size(img: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the shape when ``img`` is empty or has a
    side under ``MIN_IMAGE_SIDE`` pixels.

    Args:
        img (np.ndarray): Image [H, W] or [H, W, C].
        name (str): How to name the image in the message: its path, or e.g. 'image
            array #3'.
    """
    shape = tuple(img.shape)
    if img.size == 0 or (img.ndim >= 2 and min(shape[:2]) < MIN_IMAGE_SIDE):
        what = 'is empty' if img.size == 0 else 'is too small'
        raise ValueError(f'image {name} {what}: shape {shape} (height, width, channels); '
                         f'both sides must be at least {MIN_IMAGE_SIDE} pixels')


@TRANSFORMS.register_module()
class LoadImageFromFile(MMCVLoadImageFromFile):
    """Load ``results['img_path']`` into ``results['img']`` (uint8 HxWx3 BGR by default).

    Args:
        ignore_empty (bool): Skip images that are missing or cannot be decoded (warning,
            count, return None) instead of raising. Defaults to False.
        **kwargs: The other arguments of mmcv's ``LoadImageFromFile`` (``to_float32``,
            ``color_type``, ``imdecode_backend``, ``backend_args``, ...).

    Results keys set: ``img``, ``img_shape`` (h, w), ``ori_shape`` (h, w).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.num_skipped = 0  # images skipped by this instance (one per worker process)

    def transform(self, results: dict) -> Optional[dict]:
        """Load the image, or raise / return None if it is missing or not decodable."""
        filename = results['img_path']
        try:
            img = self._load(filename)
        except (FileNotFoundError, ValueError) as err:
            if not self.ignore_empty:
                raise
            self.num_skipped += 1
            print_log(f'LoadImageFromFile: skipping a sample: {err} ({self.num_skipped} '
                      'unreadable image(s) skipped so far by this process)',
                      logger='current', level=logging.WARNING)
            return None
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _load(self, filename: str) -> np.ndarray:
        """Read and decode ``filename``.

        Raises:
            FileNotFoundError: The file does not exist.
            ValueError: The file's bytes are not an image the decoder can read, or the
                image has a side under ``MIN_IMAGE_SIDE`` pixels.
        """
        try:
            if self.file_client_args is not None:  # mmcv's deprecated way, still accepted
                img_bytes = fileio.FileClient.infer_client(self.file_client_args,
                                                           filename).get(filename)
            else:
                img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'image file not found: {filename}') from err
        try:
            img = mmcv.imfrombytes(img_bytes, flag=self.color_type,
                                   backend=self.imdecode_backend)
        except Exception as err:  # decoders raise anything from cv2.error to PIL errors
            raise ValueError(f'could not decode image {filename} ({len(img_bytes)} bytes): '
                             f'{err}') from err
        if img is None:  # cv2 returns None for bytes it cannot decode
            raise ValueError(f'could not decode image {filename} ({len(img_bytes)} bytes): '
                             'the file is truncated, corrupt or not an image')
        check_image_size(img, filename)
        return img
