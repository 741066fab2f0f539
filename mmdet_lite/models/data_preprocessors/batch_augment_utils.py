"""Small in-place edits of a batch's annotations, shared by the batch augments."""
from typing import Sequence, Tuple, Union

import torch.nn.functional as F
from mmengine.structures import PixelData
from torch import Tensor

from mmdet_lite.structures import DetDataSample
from mmdet_lite.structures.bbox import BaseBoxes

# Both kinds of box a data sample may hold: a box object (boxtype2tensor=False) or the
# plain [N, 4] (x1, y1, x2, y2) tensor DetDataPreprocessor leaves by default.
Boxes = Union[Tensor, BaseBoxes]
INSTANCE_FIELDS = ('gt_instances', 'ignored_instances')


def scale_boxes_(boxes: Boxes, scale_x: float, scale_y: float) -> None:
    """Multiply x coordinates by ``scale_x`` and y coordinates by ``scale_y``, in place.

    Args:
        boxes (Tensor | BaseBoxes): [..., 4] (x1, y1, x2, y2) tensor, or a box object.
        scale_x (float): Factor of x1 and x2.
        scale_y (float): Factor of y1 and y2.
    """
    if isinstance(boxes, BaseBoxes):
        boxes.rescale_((scale_x, scale_y))
    else:
        boxes[..., 0::2] *= scale_x
        boxes[..., 1::2] *= scale_y


def scale_sample_boxes_(data_sample: DetDataSample, scale_x: float, scale_y: float) -> None:
    """:func:`scale_boxes_` on the ``bboxes`` of ``gt_instances`` and ``ignored_instances``
    (those the sample has)."""
    for field in INSTANCE_FIELDS:
        instances = data_sample.get(field)
        if instances is not None and 'bboxes' in instances:
            scale_boxes_(instances.bboxes, scale_x, scale_y)


def pad_sem_seg(sem_seg: Tensor, shape: Tuple[int, int], pad_value: int) -> Tensor:
    """Pad a semantic map [..., h, w] at the bottom and right up to ``shape`` (H, W).

    Returns:
        Tensor: [..., max(h, H), max(w, W)].
    """
    h, w = sem_seg.shape[-2:]
    return F.pad(sem_seg, pad=(0, max(shape[1] - w, 0), 0, max(shape[0] - h, 0)),
                 mode='constant', value=pad_value)


def pad_sample_sem_seg_(data_sample: DetDataSample, shape: Tuple[int, int],
                        pad_value: int) -> None:
    """Replace ``data_sample.gt_sem_seg`` by its map padded with :func:`pad_sem_seg`."""
    gt_sem_seg = data_sample.gt_sem_seg
    data_sample.gt_sem_seg = PixelData(sem_seg=pad_sem_seg(gt_sem_seg.sem_seg, shape,
                                                           pad_value),
                                       metainfo=gt_sem_seg.metainfo)


def samplelist_boxtype2tensor(batch_data_samples: Sequence[DetDataSample]) -> None:
    """Replace box objects in ``gt_instances``, ``pred_instances`` and ``ignored_instances``
    by their [N, 4] tensors, in place (what ``DetDataPreprocessor(boxtype2tensor=True)``
    hands the model)."""
    for data_sample in batch_data_samples:
        for field in ('gt_instances', 'pred_instances', 'ignored_instances'):
            instances = data_sample.get(field)
            if instances is None:
                continue
            boxes = instances.get('bboxes', None)
            if isinstance(boxes, BaseBoxes):
                instances.bboxes = boxes.tensor


def padded_size(size: int, divisor: int) -> int:
    """``size`` rounded up to a multiple of ``divisor``."""
    return (size + divisor - 1) // divisor * divisor
