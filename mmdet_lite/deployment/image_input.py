"""An image as the exported graph takes it: letterboxed into the fixed (H, W), with its meta.

The exported input size is fixed, so an image is resized keeping its aspect ratio to fit
inside (H, W) and padded at the bottom/right, as ``Resize(keep_ratio=True)`` + padding would
do for a test scale of (W, H). Which padding depends on the config's test pipeline:

- with a ``Pad`` transform (RTMDet, YOLOX: ``pad_val=114``) the pipeline pads the image
  itself, and mmcv's ``Pad`` makes the padded size the ``img_shape``: the same here;
- without one, the data preprocessor pads after normalizing: the padding gets the raw value
  that normalizes to its ``pad_value``, and ``img_shape`` stays the resized size.
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor

from .normalize import InputNormalizer


def fixed_size_meta(ori_shape: Sequence[int], img_shape: Sequence[int],
                    input_shape: Sequence[int]) -> dict:
    """The image meta the heads' ``predict_by_feat`` reads, for one letterboxed image.

    Args:
        ori_shape (Sequence[int]): (h, w) of the original image.
        img_shape (Sequence[int]): (h, w) after resizing (the valid part of the input).
        input_shape (Sequence[int]): (H, W) of the exported input.

    Returns:
        dict: ``ori_shape``, ``img_shape``, ``pad_shape``, ``batch_input_shape`` and
        ``scale_factor`` (w_scale, h_scale) from the original to the resized image.
    """
    ori_h, ori_w = (int(v) for v in ori_shape[:2])
    img_h, img_w = (int(v) for v in img_shape[:2])
    input_shape = tuple(int(v) for v in input_shape[:2])
    return dict(ori_shape=(ori_h, ori_w), img_shape=(img_h, img_w), pad_shape=input_shape,
                batch_input_shape=input_shape, scale_factor=(img_w / ori_w, img_h / ori_h))


def pipeline_pad_value(test_pipeline: Sequence[dict]) -> Optional[List[float]]:
    """The raw image padding of a ``Pad`` transform in ``test_pipeline``, else None.

    Args:
        test_pipeline (Sequence[dict]): Transform configs (``get_test_pipeline_cfg``).

    Returns:
        list[float] | None: Per-channel value, e.g. [114, 114, 114] for RTMDet.
    """
    for transform in test_pipeline:
        if str(transform.get('type', '')).split('.')[-1] == 'Pad':
            pad_val = transform.get('pad_val', dict(img=0))
            value = pad_val.get('img', 0) if isinstance(pad_val, dict) else pad_val
            return [float(v) for v in value] if isinstance(value, (tuple, list)) else \
                [float(value)] * 3
    return None


def letterbox(img: np.ndarray, input_shape: Sequence[int], normalizer: InputNormalizer,
              pipeline_pad: Optional[Sequence[float]] = None) -> Tuple[Tensor, dict]:
    """Resize ``img`` to fit (H, W) keeping its aspect ratio, pad, make a [1, 3, H, W] batch.

    Args:
        img (np.ndarray): [h, w, 3] image as loaded (BGR for ``mmcv.imread``).
        input_shape (Sequence[int]): (H, W) of the exported input.
        normalizer (InputNormalizer): Gives the raw padding value of the preprocessor.
        pipeline_pad (Sequence[float], optional): The test pipeline's own ``Pad`` value
            (:func:`pipeline_pad_value`); then ``img_shape`` is the padded (H, W).

    Returns:
        tuple[Tensor, dict]: The float batch of raw pixels and the image's meta
        (:func:`fixed_size_meta`).
    """
    height, width = (int(v) for v in input_shape)
    ori_h, ori_w = img.shape[:2]
    scale = min(height / ori_h, width / ori_w)
    # rounded as mmcv.imrescale rounds the new size
    new_w, new_h = min(int(ori_w * scale + 0.5), width), min(int(ori_h * scale + 0.5), height)
    resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.empty((height, width, 3), dtype=np.float32)
    pad = normalizer.raw_pad_value() if pipeline_pad is None else list(pipeline_pad)
    canvas[...] = np.asarray(pad, dtype=np.float32)
    canvas[:new_h, :new_w] = resized
    batch = torch.from_numpy(canvas).permute(2, 0, 1)[None].contiguous()  # [1, 3, H, W]
    meta = fixed_size_meta((ori_h, ori_w), (new_h, new_w), (height, width))
    if pipeline_pad is not None:  # mmcv's Pad: the padded image is the image
        meta['img_shape'] = (height, width)
    return batch, meta
