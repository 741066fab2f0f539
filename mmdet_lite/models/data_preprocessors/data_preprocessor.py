"""Batch images for a detector: stack, colour-convert, normalize, pad, batch-augment."""
import math
from numbers import Number
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import ImgDataPreprocessor
from mmengine.utils import is_seq_of
from torch import nn

from mmdet_lite.registry import MODELS
from mmdet_lite.structures import SampleList

from .batch_augment_utils import pad_sample_sem_seg_, samplelist_boxtype2tensor


class NormalizationArgumentError(ValueError, AssertionError):
    """Bad ``mean``/``std``, which mmengine rejects with an assert (hence also an
    AssertionError)."""


@MODELS.register_module()
class DetDataPreprocessor(ImgDataPreprocessor):
    """Turn the collated output of ``PackDetInputs`` into a padded float batch.

    On top of mmengine's ``ImgDataPreprocessor`` (move to device, optional BGR<->RGB,
    ``(x - mean) / std``, pad every image at the bottom/right to the largest H and W of the
    batch rounded up to ``pad_size_divisor``, stack), this records in every data sample

    - ``batch_input_shape``: (H, W) of the padded batch, shared by all samples;
    - ``pad_shape``: (h, w) of that sample's own image rounded up to the divisor;

    replaces box objects (``HorizontalBoxes``) in the instances by their tensors when
    ``boxtype2tensor``, pads the ground-truth masks and semantic maps to
    ``batch_input_shape`` when asked (training only), and finally runs ``batch_augments``
    (training only; :class:`BatchFixedSizePad`, :class:`BatchSyncRandomResize`,
    :class:`BatchResize` or any ``MODELS`` module with that call signature).

    Args:
        mean (Sequence[Number], optional): Per-channel mean, in the channel order after
            conversion. None disables normalization. Defaults to None.
        std (Sequence[Number], optional): Per-channel std. Defaults to None.
        pad_size_divisor (int): Pad H and W up to multiples of it. Defaults to 1.
        pad_value (Number): Value of padded image pixels (after normalization).
            Defaults to 0.
        pad_mask (bool): Pad ``gt_instances.masks`` to the batch shape. Defaults to False.
        mask_pad_value (int): Value of padded mask pixels. Defaults to 0.
        pad_seg (bool): Pad ``gt_sem_seg`` to the batch shape. Defaults to False.
        seg_pad_value (int): Value of padded semantic pixels. Defaults to 255.
        bgr_to_rgb (bool): Reverse the channels of BGR input. Defaults to False.
        rgb_to_bgr (bool): Reverse the channels of RGB input. Defaults to False.
        boxtype2tensor (bool): Replace the box objects in ``gt_instances``,
            ``pred_instances`` and ``ignored_instances`` by their [N, 4] tensors, which
            the heads expect. Defaults to True.
        non_blocking (bool): Non-blocking host-to-device copies. Defaults to False.
        batch_augments (list[dict], optional): Configs (built from ``MODELS``) of
            modules called as ``inputs, data_samples = aug(inputs, data_samples)``.
            Defaults to None.
    """

    def __init__(self,
                 mean: Optional[Sequence[Number]] = None,
                 std: Optional[Sequence[Number]] = None,
                 pad_size_divisor: int = 1,
                 pad_value: Union[float, int] = 0,
                 pad_mask: bool = False,
                 mask_pad_value: int = 0,
                 pad_seg: bool = False,
                 seg_pad_value: int = 255,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 boxtype2tensor: bool = True,
                 non_blocking: Optional[bool] = False,
                 batch_augments: Optional[List[dict]] = None) -> None:
        _check_args(mean, std, pad_size_divisor, bgr_to_rgb, rgb_to_bgr)
        super().__init__(mean=mean, std=std, pad_size_divisor=pad_size_divisor,
                         pad_value=pad_value, bgr_to_rgb=bgr_to_rgb, rgb_to_bgr=rgb_to_bgr,
                         non_blocking=non_blocking)
        self.pad_mask = pad_mask
        self.mask_pad_value = mask_pad_value
        self.pad_seg = pad_seg
        self.seg_pad_value = seg_pad_value
        self.boxtype2tensor = boxtype2tensor
        self.batch_augments = (None if batch_augments is None else
                               nn.ModuleList([MODELS.build(aug) for aug in batch_augments]))

    def forward(self, data: dict, training: bool = False) -> dict:
        """Preprocess one collated batch.

        Args:
            data (dict): ``inputs`` (list of B tensors [3, h_i, w_i] or a [B, 3, H, W]
                tensor) and optionally ``data_samples`` (list of B DetDataSample).
            training (bool): Pad masks/semantic maps and run batch augments.
                Defaults to False.

        Returns:
            dict: ``inputs`` float tensor [B, 3, H, W] and ``data_samples`` (list or None).
        """
        if not isinstance(data, dict) or 'inputs' not in data:
            raise TypeError('DetDataPreprocessor expects a dict with "inputs" (and '
                            f'"data_samples"), got {type(data).__name__}.')
        pad_shapes = self._get_pad_shape(data)
        data = super().forward(data=data, training=training)
        inputs, data_samples = data['inputs'], data['data_samples']  # [B, 3, H, W]

        if data_samples is not None:
            # Models that build padding masks (DETR) need the shape of the whole batch.
            batch_input_shape = tuple(inputs.shape[-2:])
            for data_sample, pad_shape in zip(data_samples, pad_shapes):
                data_sample.set_metainfo({'batch_input_shape': batch_input_shape,
                                          'pad_shape': pad_shape})
            if self.boxtype2tensor:
                samplelist_boxtype2tensor(data_samples)
            if self.pad_mask and training:
                self.pad_gt_masks(data_samples)
            if self.pad_seg and training:
                self.pad_gt_sem_seg(data_samples)

        if training and self.batch_augments is not None:
            for batch_aug in self.batch_augments:
                inputs, data_samples = batch_aug(inputs, data_samples)
        return {'inputs': inputs, 'data_samples': data_samples}

    def _get_pad_shape(self, data: dict) -> List[Tuple[int, int]]:
        """Each image's (h, w) rounded up to ``pad_size_divisor``."""
        inputs = data['inputs']
        if is_seq_of(inputs, torch.Tensor):
            sizes = [tuple(img.shape[-2:]) for img in inputs]
        elif isinstance(inputs, torch.Tensor) and inputs.dim() == 4:
            sizes = [tuple(inputs.shape[-2:])] * inputs.shape[0]
        else:
            raise TypeError('DetDataPreprocessor: data["inputs"] must be a list of [C, H, W] '
                            'tensors or a [B, C, H, W] tensor, got '
                            f'{getattr(inputs, "shape", type(inputs).__name__)}.')
        divisor = self.pad_size_divisor
        return [(math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor)
                for h, w in sizes]

    def pad_gt_masks(self, batch_data_samples: SampleList) -> None:
        """Pad ``gt_instances.masks`` of every sample to its ``batch_input_shape``."""
        for data_sample in batch_data_samples:
            if 'masks' in data_sample.gt_instances:
                masks = data_sample.gt_instances.masks
                data_sample.gt_instances.masks = masks.pad(
                    data_sample.batch_input_shape, pad_val=self.mask_pad_value)

    def pad_gt_sem_seg(self, batch_data_samples: SampleList) -> None:
        """Pad ``gt_sem_seg.sem_seg`` [1, h, w] of every sample to ``batch_input_shape``."""
        for data_sample in batch_data_samples:
            if 'gt_sem_seg' in data_sample:
                pad_sample_sem_seg_(data_sample, data_sample.batch_input_shape,
                                    self.seg_pad_value)


def _check_args(mean, std, pad_size_divisor, bgr_to_rgb, rgb_to_bgr) -> None:
    """Raise the errors mmengine would only assert, naming the bad argument."""
    if bgr_to_rgb and rgb_to_bgr:
        raise ValueError('DetDataPreprocessor: `bgr_to_rgb` and `rgb_to_bgr` cannot both '
                         'be True.')
    # mmengine asserts these two; the error is an AssertionError too.
    if (mean is None) != (std is None):
        raise NormalizationArgumentError(
            'DetDataPreprocessor: `mean` and `std` must both be given or both be None, got '
            f'mean={mean}, std={std}.')
    for name, values in (('mean', mean), ('std', std)):
        if values is not None and len(values) not in (1, 3):
            raise NormalizationArgumentError(
                f'DetDataPreprocessor: `{name}` needs 1 or 3 values, got {values}.')
    if not isinstance(pad_size_divisor, int) or pad_size_divisor < 1:
        raise ValueError('DetDataPreprocessor: `pad_size_divisor` must be a positive int, '
                         f'got {pad_size_divisor!r}.')
