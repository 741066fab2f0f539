"""MixUp: blend the sample 50/50 with another, randomly scaled, flipped and shifted."""
from typing import Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .transform_arg_errors import check_arg, require_key

PadVal = Union[float, Tuple[float, ...]]


def mixup_with(results: dict, retrieved: dict, img_scale: Tuple[int, int],
               ratio_range: Tuple[float, float], flip_ratio: float, pad_val: PadVal,
               bbox_clip_border: bool) -> dict:
    """Blend ``retrieved`` into ``results`` (edited in place), drawing the random choices.

    Steps, in mmdetection's order of random draws: jitter j ~ U(ratio_range); flip when
    U(0, 1) > ``flip_ratio``; the retrieved image is resized keeping its ratio to fit in
    ``img_scale`` (w, h) (ratio s) and pasted top-left on a (h, w) canvas of ``pad_val``;
    the canvas is resized by j, flipped horizontally if drawn, padded to at least the
    sample's size and cropped to it at a random offset (y drawn first, then x, each only
    when that side is larger). The image is 0.5 * sample + 0.5 * crop, cast to uint8.
    Retrieved boxes are scaled by s * j, clipped to the jittered canvas, flipped in it,
    shifted by the offset and clipped to the sample (when ``bbox_clip_border``); they are
    appended after the sample's, and boxes without area inside the image are dropped.
    Masks, when the sample has them, follow the same path.

    Args:
        results (dict): The sample (``img``, ``gt_bboxes`` as a box object,
            ``gt_bboxes_labels``, ``gt_ignore_flags``, optional ``gt_masks``).
        retrieved (dict): The other sample, with the same keys; left unchanged.
        img_scale (tuple[int, int]): (w, h) the retrieved image is fitted into.
        ratio_range (tuple[float, float]): Range of the jitter.
        flip_ratio (float): The flip happens when U(0, 1) > flip_ratio.
        pad_val (float | tuple): Fill of the canvas.
        bbox_clip_border (bool): Clip boxes to the canvas and the image.

    Returns:
        dict: ``results``.
    """
    if retrieved['gt_bboxes'].shape[0] == 0:
        return results  # nothing to add: the sample stays as it is

    retrieve_img = retrieved['img']
    with_mask = 'gt_masks' in results
    jit_factor = np.random.uniform(*ratio_range)
    is_flip = np.random.uniform(0, 1) > flip_ratio

    canvas = np.ones((img_scale[1], img_scale[0]) + retrieve_img.shape[2:],
                     dtype=retrieve_img.dtype) * pad_val
    scale_ratio = min(img_scale[1] / retrieve_img.shape[0],
                      img_scale[0] / retrieve_img.shape[1])
    retrieve_img = mmcv.imresize(retrieve_img, (int(retrieve_img.shape[1] * scale_ratio),
                                                int(retrieve_img.shape[0] * scale_ratio)))
    canvas[:retrieve_img.shape[0], :retrieve_img.shape[1]] = retrieve_img
    scale_ratio *= jit_factor
    canvas = mmcv.imresize(canvas, (int(canvas.shape[1] * jit_factor),
                                    int(canvas.shape[0] * jit_factor)))
    if is_flip:
        canvas = canvas[:, ::-1]

    ori_img = results['img']
    origin_h, origin_w = canvas.shape[:2]
    target_h, target_w = ori_img.shape[:2]
    padded = (np.ones((max(origin_h, target_h), max(origin_w, target_w)) + canvas.shape[2:])
              * pad_val).astype(np.uint8)
    padded[:origin_h, :origin_w] = canvas
    x_offset, y_offset = 0, 0
    if padded.shape[0] > target_h:
        y_offset = np.random.randint(0, padded.shape[0] - target_h)
    if padded.shape[1] > target_w:
        x_offset = np.random.randint(0, padded.shape[1] - target_w)
    cropped = padded[y_offset:y_offset + target_h, x_offset:x_offset + target_w]

    boxes = retrieved['gt_bboxes'].clone()
    boxes.rescale_([scale_ratio, scale_ratio])
    if bbox_clip_border:
        boxes.clip_([origin_h, origin_w])
    if is_flip:
        boxes.flip_([origin_h, origin_w], direction='horizontal')
    boxes.translate_([-x_offset, -y_offset])
    if bbox_clip_border:
        boxes.clip_([target_h, target_w])

    if with_mask:
        # The masks take the image's path: fitted to the jittered canvas (so that they
        # flip about its width, as the boxes do), padded, then cropped at the offset.
        # mmdetection's CachedMixUp flips them about their own width and crops them at the
        # top-left before shifting, which loses what lies beyond the sample's size.
        masks = retrieved['gt_masks'].rescale(scale_ratio)
        masks = masks.translate((origin_h, origin_w), 0, 'horizontal')
        if is_flip:
            masks = masks.flip()
        masks = masks.pad(padded.shape[:2]).crop(
            np.array([x_offset, y_offset, x_offset + target_w, y_offset + target_h]))

    mixup_img = 0.5 * ori_img.astype(np.float32) + 0.5 * cropped.astype(np.float32)
    all_boxes = boxes.cat((results['gt_bboxes'], boxes), dim=0)
    inside = all_boxes.is_inside([target_h, target_w]).numpy()
    results['img'] = mixup_img.astype(np.uint8)
    results['img_shape'] = mixup_img.shape[:2]
    results['gt_bboxes'] = all_boxes[inside]
    results['gt_bboxes_labels'] = np.concatenate(
        (results['gt_bboxes_labels'], retrieved['gt_bboxes_labels']), axis=0)[inside]
    results['gt_ignore_flags'] = np.concatenate(
        (results['gt_ignore_flags'], retrieved['gt_ignore_flags']), axis=0)[inside]
    if with_mask:
        results['gt_masks'] = masks.cat([results['gt_masks'], masks])[inside]
    return results


@TRANSFORMS.register_module()
class MixUp(BaseTransform):
    """Blend the sample with one other image (``results['mix_results'][0]``) 50/50.

    See :func:`mixup_with` for the steps. ``mix_results`` comes from
    :class:`MultiImageMixDataset`, which loads the index of :meth:`get_indexes`. The output
    keeps the sample's size; its boxes are the sample's followed by the other image's.
    Masks (``gt_masks``) follow their boxes; mmdetection 3.3's MixUp leaves them untouched
    (then out of step with the boxes), its CachedMixUp moves them as here.

    Required keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``,
    ``mix_results`` (one dict with the same keys).
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``, ``gt_masks`` (optional).

    Args:
        img_scale (tuple[int, int]): (w, h) the other image is fitted into before the
            jitter. Defaults to (640, 640).
        ratio_range (tuple[float, float]): Range of the scale jitter. Defaults to (0.5, 1.5).
        flip_ratio (float): The other image is flipped when U(0, 1) > flip_ratio (so with
            probability 1 - flip_ratio, as in mmdetection). Defaults to 0.5.
        pad_val (float): Fill of the padding. Defaults to 114.0.
        max_iters (int): Tries of :meth:`get_indexes` to find an image with boxes.
            Defaults to 15.
        bbox_clip_border (bool): Clip boxes to the image. Defaults to True.
    """

    def __init__(self,
                 img_scale: Tuple[int, int] = (640, 640),
                 ratio_range: Tuple[float, float] = (0.5, 1.5),
                 flip_ratio: float = 0.5,
                 pad_val: float = 114.0,
                 max_iters: int = 15,
                 bbox_clip_border: bool = True) -> None:
        check_arg(isinstance(img_scale, tuple),
                  f'MixUp: img_scale must be a tuple (w, h), got {img_scale!r}.')
        self.dynamic_scale = img_scale
        self.ratio_range = ratio_range
        self.flip_ratio = flip_ratio
        self.pad_val = pad_val
        self.max_iters = max_iters
        self.bbox_clip_border = bbox_clip_border

    @cache_randomness
    def get_indexes(self, dataset) -> int:
        """A random index of ``dataset``, redrawn up to ``max_iters`` times until the
        image there has boxes.

        Args:
            dataset (Sequence[dict]): The dataset the wrapper loads from.

        Returns:
            int: An index in [0, len(dataset)).
        """
        for _ in range(self.max_iters):
            index = np.random.randint(0, len(dataset))
            if len(dataset[index]['gt_bboxes']) != 0:
                break
        return index

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Mix ``results`` with ``results['mix_results'][0]``.

        Args:
            results (dict): Pipeline results with ``mix_results``.

        Returns:
            dict: The same dict, updated.
        """
        require_key(results, 'mix_results', 'MixUp')
        check_arg(len(results['mix_results']) == 1, 'MixUp mixes 2 images: mix_results '
                  f"must hold 1 dict, got {len(results['mix_results'])}.")
        return mixup_with(results, results['mix_results'][0], self.dynamic_scale,
                          self.ratio_range, self.flip_ratio, self.pad_val,
                          self.bbox_clip_border)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(dynamic_scale={self.dynamic_scale}, '
                f'ratio_range={self.ratio_range}, flip_ratio={self.flip_ratio}, '
                f'pad_val={self.pad_val}, max_iters={self.max_iters}, '
                f'bbox_clip_border={self.bbox_clip_border})')
