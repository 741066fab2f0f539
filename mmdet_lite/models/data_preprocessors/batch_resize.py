"""BatchResize: rescale a whole batch to fit a (short, long) edge scale, then pad."""
from typing import List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

from .batch_augment_utils import padded_size, scale_sample_boxes_


@MODELS.register_module()
class BatchResize(nn.Module):
    """Rescale a padded batch keeping its aspect ratio, as one image, during training.

    The factor ``s`` makes the batch's short side ``min(scale)``, unless its long side
    would then exceed ``max(scale)``, in which case the long side becomes ``max(scale)``.
    The images are resized on the CPU with ``mmcv.imrescale`` (bilinear), then padded with
    zeros at the bottom and right to multiples of ``pad_size_divisor``. Every sample gets
    ``img_shape = int(s * h), int(s * w)``, ``scale_factor = (s, s)`` and the padded batch
    shape as ``batch_input_shape`` and ``pad_shape``; the boxes of ``gt_instances`` and
    ``ignored_instances`` (tensors or box objects) are multiplied by ``s``.

    Args:
        scale (Sequence[int]): The (short, long) edge sizes, in either order.
        pad_size_divisor (int): Pad H and W up to multiples of it. Defaults to 1.
    """

    def __init__(self, scale: Sequence[int], pad_size_divisor: int = 1) -> None:
        super().__init__()
        self.min_size = min(scale)
        self.max_size = max(scale)
        self.pad_size_divisor = pad_size_divisor

    def forward(
        self, inputs: Tensor, data_samples: Optional[List[DetDataSample]]
    ) -> Tuple[Tensor, Optional[List[DetDataSample]]]:
        """Rescale and pad the batch; update the samples in place.

        Args:
            inputs (Tensor): [B, C, H, W] batch.
            data_samples (list[DetDataSample], optional): B samples.

        Returns:
            tuple: ``inputs`` [B, C, H', W'] float and ``data_samples``.
        """
        batch_height, batch_width = inputs.shape[-2:]
        target_height, target_width, scale = self.target_size(batch_height, batch_width)

        images = inputs.detach().cpu().numpy().transpose(0, 2, 3, 1)  # [B, H, W, C]
        resized = np.stack([mmcv.imrescale(image, (target_width, target_height))
                            for image in images])
        # cv2 drops the channel axis of a 1-channel image
        resized = resized.reshape(resized.shape[:3] + (-1, )).transpose(0, 3, 1, 2)
        inputs = self.get_padded_tensor(
            torch.as_tensor(resized, device=inputs.device).float())

        if data_samples is not None:
            batch_input_shape = tuple(inputs.shape[-2:])
            for data_sample in data_samples:
                data_sample.set_metainfo({
                    'img_shape': tuple(int(scale * size) for size in data_sample.img_shape),
                    'batch_input_shape': batch_input_shape,
                    'pad_shape': batch_input_shape,
                    'scale_factor': (scale, scale)
                })
                scale_sample_boxes_(data_sample, scale, scale)
        return inputs, data_samples

    def target_size(self, height: int, width: int) -> Tuple[int, int, float]:
        """The resized (height, width) of a batch and the factor between them.

        Args:
            height (int): Batch height.
            width (int): Batch width.

        Returns:
            tuple[int, int, float]: ``round(height * s)``, ``round(width * s)`` and ``s``.
        """
        scale = self.min_size / min(height, width)
        if scale * max(height, width) > self.max_size:
            scale = self.max_size / max(height, width)
        return int(round(height * scale)), int(round(width * scale)), scale

    def get_padded_tensor(self, tensor: Tensor, pad_value: int = 0) -> Tensor:
        """Pad a [B, C, H, W] tensor at the bottom and right to multiples of the divisor.

        Raises:
            AssertionError: ``tensor`` is not 4-dimensional.
        """
        assert tensor.ndim == 4, (
            f'BatchResize.get_padded_tensor: expected a [B, C, H, W] tensor, got shape '
            f'{tuple(tensor.shape)}')
        height, width = tensor.shape[-2:]
        padded = tensor.new_full(
            (tensor.shape[0], tensor.shape[1], padded_size(height, self.pad_size_divisor),
             padded_size(width, self.pad_size_divisor)), pad_value)
        padded[:, :, :height, :width] = tensor
        return padded
