"""Sliced inference on large images: cut the image into patches, detect, merge back.

A large image (satellite or aerial imagery, a scanned page) is cut into overlapping square
patches small enough for the detector (:func:`get_slice_bboxes`); the patch predictions are
moved into the full image's coordinates (:func:`shift_predictions`) and the duplicates that
the overlaps produce are removed with class-wise NMS (:func:`merge_results_by_nms`).

The slicing follows ``sahi.slicing.get_slice_bboxes`` (which mmdetection's
``demo/large_image_demo.py`` uses): patches step by ``slice - int(overlap_ratio * slice)``
pixels, row by row, and a patch that would run past the image is moved back to end at the
border; the merging follows ``mmdet.utils.large_image``.

This module is on the ground floor: it needs only torch, torchvision and mmengine.
"""
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.structures import InstanceData
from torch import Tensor
from torchvision.ops import batched_nms as tv_batched_nms

from .nms_config import parse_nms_cfg


class LargeImageArgumentError(ValueError, AssertionError):
    """A bad argument to the large-image helpers (an AssertionError in mmdetection)."""


def _slice_starts(image_size: int, slice_size: int, overlap: int) -> List[Tuple[int, int]]:
    """(start, end) of the patches along one side of the image.

    Patches start every ``slice_size - overlap`` pixels until one reaches the border; that
    last one is moved back so it ends exactly at the border (it then overlaps its
    neighbour by more than ``overlap``). A side shorter than ``slice_size`` gets one patch
    covering all of it.
    """
    step = slice_size - overlap
    spans = []
    start = 0
    while True:
        end = start + slice_size
        if end >= image_size:
            spans.append((max(0, image_size - slice_size), image_size))
            return spans
        spans.append((start, end))
        start += step


def get_slice_bboxes(image_height: int,
                     image_width: int,
                     slice_height: int,
                     slice_width: int,
                     overlap_height_ratio: float = 0.2,
                     overlap_width_ratio: float = 0.2) -> List[List[int]]:
    """Patches covering an image, overlapping by the given ratios, as sahi slices it.

    Neighbouring patches overlap by ``int(overlap_ratio * slice_size)`` pixels; the last
    row and column are moved back to end at the image border, so every patch has the
    slice size (or the image size along a side shorter than the slice).

    Example:
        A 100 x 70 (width x height) image in 50-pixel patches with overlap 0.2 (10 pixels,
        a step of 40): columns [0, 50], [40, 90], [50, 100] (the last moved back from
        [80, 130]), rows [0, 50], [20, 70] (moved back from [40, 90]).

    Args:
        image_height (int): Image height in pixels.
        image_width (int): Image width in pixels.
        slice_height (int): Patch height in pixels.
        slice_width (int): Patch width in pixels.
        overlap_height_ratio (float): Vertical overlap of neighbouring patches as a
            fraction of ``slice_height``, in [0, 1). Defaults to 0.2 (as sahi).
        overlap_width_ratio (float): Horizontal overlap as a fraction of ``slice_width``,
            in [0, 1). Defaults to 0.2.

    Returns:
        list[list[int]]: Patches ``[x1, y1, x2, y2]`` (x2, y2 exclusive, so
        ``img[y1:y2, x1:x2]`` is the patch), row by row from the top left.
    """
    for name, value in (('image_height', image_height), ('image_width', image_width),
                        ('slice_height', slice_height), ('slice_width', slice_width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise LargeImageArgumentError(f'{name} must be a positive int, got {value!r}')
    for name, value in (('overlap_height_ratio', overlap_height_ratio),
                        ('overlap_width_ratio', overlap_width_ratio)):
        # sahi loops forever at ratio >= 1 and leaves gaps between patches below 0
        if not 0 <= value < 1:
            raise LargeImageArgumentError(f'{name} must be in [0, 1), got {value!r}')
    # int() truncates as sahi does: 0.25 * 50 = 12.5 -> 12 pixels of overlap
    rows = _slice_starts(int(image_height), int(slice_height),
                         int(overlap_height_ratio * slice_height))
    cols = _slice_starts(int(image_width), int(slice_width),
                         int(overlap_width_ratio * slice_width))
    return [[x1, y1, x2, y2] for y1, y2 in rows for x1, x2 in cols]


def _shift_boxes(bboxes, offset: Sequence[int]):
    """Boxes moved by ``offset`` (x, y): [N, 4] (x1, y1, x2, y2) or rotated [N, 5]
    (cx, cy, w, h, angle), as a tensor or a box object (e.g. HorizontalBoxes)."""
    boxes = getattr(bboxes, 'tensor', bboxes)  # a box object carries its [N, 4] tensor
    offset_x, offset_y = offset[0], offset[1]
    if boxes.size(-1) == 4:
        shift = boxes.new_tensor([offset_x, offset_y, offset_x, offset_y])
    elif boxes.size(-1) == 5:  # only the centre moves
        shift = boxes.new_tensor([offset_x, offset_y, 0, 0, 0])
    else:
        raise NotImplementedError(f'cannot shift boxes with {boxes.size(-1)} values each; '
                                  'expected 4 (x1, y1, x2, y2) or 5 (cx, cy, w, h, angle)')
    shifted = boxes + shift
    return shifted if boxes is bboxes else type(bboxes)(shifted)


def _paste_masks(masks: Union[Tensor, np.ndarray], offset: Sequence[int],
                 src_image_shape: Tuple[int, int]) -> Union[Tensor, np.ndarray]:
    """Patch masks [N, h, w] pasted at ``offset`` (x, y) into empty full-image masks
    [N, H, W]; a part falling outside the image is cut off."""
    height, width = src_image_shape[0], src_image_shape[1]
    offset_x, offset_y = int(offset[0]), int(offset[1])
    num, patch_h, patch_w = masks.shape[0], masks.shape[-2], masks.shape[-1]
    if isinstance(masks, Tensor):
        full = masks.new_zeros((num, height, width))
    elif isinstance(masks, np.ndarray):
        full = np.zeros((num, height, width), dtype=masks.dtype)
    else:
        raise TypeError('masks to shift must be a Tensor or np.ndarray [N, h, w], got '
                        f'{type(masks).__name__}')
    y2, x2 = min(height, offset_y + patch_h), min(width, offset_x + patch_w)
    full[:, offset_y:y2, offset_x:x2] = masks[:, :y2 - offset_y, :x2 - offset_x]
    return full


def shift_predictions(det_data_samples: Sequence,
                      offsets: Sequence[Tuple[int, int]],
                      src_image_shape: Tuple[int, int]) -> InstanceData:
    """Move the predictions of each patch into the full image and gather them.

    Args:
        det_data_samples (Sequence[DetDataSample]): One result per patch, each with
            ``pred_instances`` (``bboxes`` [n, 4] or rotated [n, 5] in patch pixels,
            ``scores``, ``labels``, optionally ``masks`` [n, h, w]).
        offsets (Sequence[tuple[int, int]]): Top-left corner (x, y) of each patch in the
            full image.
        src_image_shape (tuple[int, int]): (height, width) of the full image.

    Returns:
        InstanceData: The predictions of all patches, [sum n], boxes in full-image pixels
        and masks [sum n, H, W] (an ``InstanceData``, not a list, as mmdetection's
        function returns despite its annotation).
    """
    if len(det_data_samples) != len(offsets):
        raise LargeImageArgumentError(
            f'det_data_samples and offsets must have the same length (one offset per '
            f'patch), got {len(det_data_samples)} and {len(offsets)}')
    shifted = []
    for det_data_sample, offset in zip(det_data_samples, offsets):
        pred_instances = det_data_sample.pred_instances.clone()
        pred_instances.bboxes = _shift_boxes(pred_instances.bboxes, offset)
        # mmdetection tests `'masks' in det_data_sample` (the sample, which never holds a
        # `masks` field), so its masks stay patch-sized; we paste them into the full image,
        # which is what the predictions' boxes now refer to.
        if 'masks' in pred_instances:
            pred_instances.masks = _paste_masks(pred_instances.masks, offset, src_image_shape)
        shifted.append(pred_instances)
    return InstanceData.cat(shifted)


def _nms_keep(boxes: Tensor, scores: Tensor, labels: Tensor, nms_cfg: dict) -> Tensor:
    """Indices kept by class-wise NMS configured like mmcv's ``batched_nms``, highest
    score first.

    ``nms_cfg``: ``type`` ('nms'), ``iou_threshold``, optionally ``class_agnostic``,
    ``max_num`` (keep at most that many) and ``split_thr`` (ignored: torchvision picks its
    own strategy for many boxes): :func:`~mmdet_lite.utils.nms_config.parse_nms_cfg`.
    mmdetection's ``models.utils`` version of this lives a floor above this module, which
    may import only the ground floor.
    """
    iou_threshold, class_agnostic, max_num = parse_nms_cfg(nms_cfg)
    if boxes.size(-1) != 4:
        raise NotImplementedError(f'NMS over boxes with {boxes.size(-1)} values each is not '
                                  'supported; only horizontal boxes [N, 4]')
    if class_agnostic:
        labels = torch.zeros_like(labels)
    # highest score first
    keep = tv_batched_nms(boxes.float(), scores.float(), labels, iou_threshold)
    return keep[:max_num] if max_num > 0 else keep


def merge_results_by_nms(results: Sequence, offsets: Sequence[Tuple[int, int]],
                         src_image_shape: Tuple[int, int], nms_cfg: dict):
    """Merge the patch results of one image: shift them into it, then class-wise NMS.

    Args:
        results (Sequence[DetDataSample]): One result per patch (see
            :func:`shift_predictions`).
        offsets (Sequence[tuple[int, int]]): Top-left corner (x, y) of each patch.
        src_image_shape (tuple[int, int]): (height, width) of the full image.
        nms_cfg (dict): mmcv-style NMS config, e.g.
            ``dict(type='nms', iou_threshold=0.25)``; optional ``class_agnostic`` and
            ``max_num``.

    Returns:
        DetDataSample: A copy of ``results[0]`` whose ``pred_instances`` are the kept
        predictions in full-image pixels, highest score first, and whose ``ori_shape``
        is ``src_image_shape`` (mmdetection leaves the first patch's there).
    """
    if len(results) == 0:
        raise LargeImageArgumentError('results must hold at least one patch result')
    instances = shift_predictions(results, offsets, src_image_shape)
    boxes = getattr(instances.bboxes, 'tensor', instances.bboxes)  # [N, 4]
    keep = _nms_keep(boxes, instances.scores, instances.labels, nms_cfg)
    merged = results[0].clone()
    merged.pred_instances = instances[keep]
    merged.set_metainfo(dict(ori_shape=tuple(src_image_shape[:2])))
    return merged
