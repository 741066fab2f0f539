"""BatchFixedSizePad: pad every batch to one fixed (H, W), e.g. for a fixed-size transformer."""
from typing import List, Optional, Tuple

import torch.nn.functional as F
from torch import Tensor, nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import DetDataSample

from .batch_augment_utils import pad_sample_sem_seg_


@MODELS.register_module()
class BatchFixedSizePad(nn.Module):
    """Pad a batch of images at the bottom and right up to ``size``.

    A batch already at least ``size`` in both H and W is returned unchanged. Otherwise the
    images are padded to ``(max(H, size_h), max(W, size_w))``; that shape becomes every
    sample's ``batch_input_shape`` and ``pad_shape``, and, when asked, the instance masks
    and semantic maps are padded to it too.

    Args:
        size (tuple[int, int]): Target (h, w).
        img_pad_value (int): Value of padded image pixels. Defaults to 0.
        pad_mask (bool): Pad ``gt_instances.masks``. Defaults to False.
        mask_pad_value (int): Value of padded mask pixels. Defaults to 0.
        pad_seg (bool): Pad ``gt_sem_seg``. Defaults to False.
        seg_pad_value (int): Value of padded semantic pixels. Defaults to 255.
    """

    def __init__(self,
                 size: Tuple[int, int],
                 img_pad_value: int = 0,
                 pad_mask: bool = False,
                 mask_pad_value: int = 0,
                 pad_seg: bool = False,
                 seg_pad_value: int = 255) -> None:
        super().__init__()
        self.size = size
        self.pad_mask = pad_mask
        self.pad_seg = pad_seg
        self.img_pad_value = img_pad_value
        self.mask_pad_value = mask_pad_value
        self.seg_pad_value = seg_pad_value

    def forward(
        self,
        inputs: Tensor,
        data_samples: Optional[List[DetDataSample]] = None
    ) -> Tuple[Tensor, Optional[List[DetDataSample]]]:
        """Pad images, instance masks and semantic maps.

        Args:
            inputs (Tensor): [B, C, H, W] batch.
            data_samples (list[DetDataSample], optional): B samples, edited in place.

        Returns:
            tuple: ``inputs`` [B, C, max(H, size_h), max(W, size_w)] and ``data_samples``.
        """
        src_h, src_w = inputs.shape[-2:]
        dst_h, dst_w = self.size
        if src_h >= dst_h and src_w >= dst_w:
            return inputs, data_samples

        inputs = F.pad(inputs, pad=(0, max(0, dst_w - src_w), 0, max(0, dst_h - src_h)),
                       mode='constant', value=self.img_pad_value)
        if data_samples is None:
            return inputs, data_samples
        # The padded batch is the larger of each side (mmdetection records `size` itself,
        # which is wrong for a side the batch already exceeds).
        shape = tuple(inputs.shape[-2:])
        for data_sample in data_samples:
            data_sample.set_metainfo({'batch_input_shape': shape, 'pad_shape': shape})
            if self.pad_mask:
                masks = data_sample.gt_instances.masks
                data_sample.gt_instances.masks = masks.pad(shape, pad_val=self.mask_pad_value)
            if self.pad_seg:
                pad_sample_sem_seg_(data_sample, shape, self.seg_pad_value)
        return inputs, data_samples
