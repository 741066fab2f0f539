"""Mosaic: stitch four images, each resized to ``img_scale``, around a random center."""
from typing import List, Sequence, Tuple

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .transform_arg_errors import MissingResultKeyError, check_arg, require_key

_CORNERS = ('top_left', 'top_right', 'bottom_left', 'bottom_right')
Coords = Tuple[int, int, int, int]


@TRANSFORMS.register_module()
class Mosaic(BaseTransform):
    """Combine the sample with three others (``results['mix_results']``) into one image.

    The canvas is (2 * h, 2 * w) for ``img_scale`` = (w, h), filled with ``pad_val``. A
    center (cx, cy) is drawn as (int(U(center_ratio_range) * w), int(U(...) * h)). Each of
    the four images is resized keeping its ratio to fit in (w, h) (scale s = min(h / H_i,
    w / W_i), size (int(W_i * s), int(H_i * s))) and placed in one quadrant with its inner
    corner on the center: the sample itself top-left, then ``mix_results[0..2]`` top-right,
    bottom-left, bottom-right; what does not fit on the canvas is cut off. Boxes are scaled
    by s and shifted with their image, clipped to the canvas when ``bbox_clip_border``, and
    boxes left without area inside the canvas are dropped with their labels and flags.

    ``mix_results`` comes from :class:`MultiImageMixDataset`, which loads the indices of
    :meth:`get_indexes`. Masks (``gt_masks``) follow their boxes; mmdetection 3.3's Mosaic
    leaves them untouched (then out of step with the boxes), its CachedMosaic moves them
    as here. ``gt_bboxes`` may be a box object or a float32 array [N, 4] and keeps its kind.

    Required keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``,
    ``mix_results`` (3 dicts with the same keys).
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``, ``gt_masks`` (optional).

    Args:
        img_scale (tuple[int, int]): (w, h) of each quadrant; the output is twice that.
            Defaults to (640, 640).
        center_ratio_range (tuple[float, float]): Range of the center as a ratio of
            ``img_scale``. Defaults to (0.5, 1.5).
        bbox_clip_border (bool): Clip boxes to the canvas. Defaults to True.
        pad_val (float): Fill of the canvas. Defaults to 114.0.
        prob (float): Probability of applying the mosaic, in [0, 1]. Defaults to 1.0.
    """

    def __init__(self,
                 img_scale: Tuple[int, int] = (640, 640),
                 center_ratio_range: Tuple[float, float] = (0.5, 1.5),
                 bbox_clip_border: bool = True,
                 pad_val: float = 114.0,
                 prob: float = 1.0) -> None:
        check_arg(isinstance(img_scale, tuple),
                  f'{type(self).__name__}: img_scale must be a tuple (w, h), got {img_scale!r}.')
        check_arg(0 <= prob <= 1.0, f'{type(self).__name__}: prob must be in [0, 1], '
                  f'got {prob}.')
        self.img_scale = img_scale
        self.center_ratio_range = center_ratio_range
        self.bbox_clip_border = bbox_clip_border
        self.pad_val = pad_val
        self.prob = prob

    @cache_randomness
    def get_indexes(self, dataset) -> List[int]:
        """Three random indices of ``dataset`` for the other quadrants.

        Args:
            dataset (Sized): The dataset the wrapper loads from.

        Returns:
            list[int]: Indices in [0, len(dataset)).
        """
        return [np.random.randint(0, len(dataset)) for _ in range(3)]

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Mosaic ``results`` with ``results['mix_results']`` (with probability ``prob``).

        Args:
            results (dict): Pipeline results with ``mix_results``.

        Returns:
            dict: The same dict, updated.
        """
        if np.random.uniform(0, 1) > self.prob:
            return results
        require_key(results, 'mix_results', type(self).__name__)
        return self._mosaic(results, results['mix_results'])

    def _mosaic(self, results: dict, mix_results: Sequence[dict]) -> dict:
        """Draw the center and stitch ``results`` with three others into ``results``."""
        check_arg(len(mix_results) >= 3, f'{type(self).__name__} needs 3 mix_results, got '
                  f'{len(mix_results)}.')
        scale_w, scale_h = self.img_scale
        out_h, out_w = int(scale_h * 2), int(scale_w * 2)
        img = results['img']
        canvas = np.full((out_h, out_w) + img.shape[2:], self.pad_val, dtype=img.dtype)
        center = (int(np.random.uniform(*self.center_ratio_range) * scale_w),
                  int(np.random.uniform(*self.center_ratio_range) * scale_h))
        with_mask = results.get('gt_masks') is not None

        boxes, labels, flags, masks = [], [], [], []
        for corner, patch in zip(_CORNERS, [results, *mix_results[:3]]):
            patch_img = patch['img']
            h_i, w_i = patch_img.shape[:2]
            ratio = min(scale_h / h_i, scale_w / w_i)
            patch_img = mmcv.imresize(patch_img, (int(w_i * ratio), int(h_i * ratio)))
            paste, crop = self._mosaic_combine(corner, center, patch_img.shape[1::-1])
            canvas[paste[1]:paste[3], paste[0]:paste[2]] = \
                patch_img[crop[1]:crop[3], crop[0]:crop[2]]

            shift_x, shift_y = paste[0] - crop[0], paste[1] - crop[1]
            patch_boxes = patch['gt_bboxes'].clone()  # the inputs stay as they were
            patch_boxes.rescale_([ratio, ratio])
            patch_boxes.translate_([shift_x, shift_y])
            boxes.append(patch_boxes)
            labels.append(patch['gt_bboxes_labels'])
            flags.append(patch['gt_ignore_flags'])
            if with_mask:
                if patch.get('gt_masks') is None:
                    raise MissingResultKeyError(
                        f"{type(self).__name__}: the sample has gt_masks but its {corner} "
                        "image has none; load masks for every image or for none.")
                patch_masks = patch['gt_masks'].rescale(float(ratio))
                patch_masks = patch_masks.translate((out_h, out_w), shift_x, 'horizontal')
                masks.append(patch_masks.translate((out_h, out_w), shift_y, 'vertical'))

        boxes = boxes[0].cat(boxes, 0)
        if self.bbox_clip_border:
            boxes.clip_([out_h, out_w])
        inside = boxes.is_inside([out_h, out_w]).numpy()
        results['img'] = canvas
        results['img_shape'] = canvas.shape[:2]
        results['gt_bboxes'] = boxes[inside]
        results['gt_bboxes_labels'] = np.concatenate(labels, 0)[inside]
        results['gt_ignore_flags'] = np.concatenate(flags, 0)[inside]
        if with_mask:
            results['gt_masks'] = masks[0].cat(masks)[inside]
        return results

    def _mosaic_combine(self, loc: str, center_position_xy: Sequence[int],
                        img_shape_wh: Sequence[int]) -> Tuple[Coords, Coords]:
        """Where a resized image goes on the canvas, and which part of it.

        Args:
            loc (str): 'top_left', 'top_right', 'bottom_left' or 'bottom_right'.
            center_position_xy (Sequence[int]): Mosaic center (x, y) on the canvas.
            img_shape_wh (Sequence[int]): (w, h) of the resized image.

        Returns:
            tuple: ``paste_coord`` (x1, y1, x2, y2) on the canvas and ``crop_coord``
            (x1, y1, x2, y2) in the image, of equal sizes.
        """
        check_arg(loc in _CORNERS, f'Mosaic: loc must be one of {_CORNERS}, got {loc!r}.')
        cx, cy = center_position_xy
        w, h = img_shape_wh
        out_w, out_h = self.img_scale[0] * 2, self.img_scale[1] * 2
        # The image's inner corner sits on the center; the canvas edges cut the rest.
        if loc == 'top_left':
            x1, y1, x2, y2 = max(cx - w, 0), max(cy - h, 0), cx, cy
            crop = (w - (x2 - x1), h - (y2 - y1), w, h)
        elif loc == 'top_right':
            x1, y1, x2, y2 = cx, max(cy - h, 0), min(cx + w, out_w), cy
            crop = (0, h - (y2 - y1), min(w, x2 - x1), h)
        elif loc == 'bottom_left':
            x1, y1, x2, y2 = max(cx - w, 0), cy, cx, min(out_h, cy + h)
            crop = (w - (x2 - x1), 0, w, min(y2 - y1, h))
        else:
            x1, y1, x2, y2 = cx, cy, min(cx + w, out_w), min(out_h, cy + h)
            crop = (0, 0, min(w, x2 - x1), min(y2 - y1, h))
        return (x1, y1, x2, y2), crop

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(img_scale={self.img_scale}, '
                f'center_ratio_range={self.center_ratio_range}, pad_val={self.pad_val}, '
                f'prob={self.prob})')
