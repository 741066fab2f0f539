"""Random cropping of an image with its boxes, masks and semantic map."""
from typing import Optional, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type

from .homography import record_homography
from .transform_arg_errors import MissingResultKeyError, TransformArgError

_CROP_TYPES = ('absolute', 'absolute_range', 'relative', 'relative_range')


@TRANSFORMS.register_module()
class RandomCrop(BaseTransform):
    """Crop a random window; boxes are shifted, clipped, and dropped when outside it.

    The window size (crop_h, crop_w) depends on ``crop_type`` (mmdetection's conventions,
    including their mixed axis orders), for an H x W input:

    - ``'absolute'``: ``crop_size`` = (w, h) pixels -> (min(h, H), min(w, W)).
    - ``'absolute_range'``: ``crop_size`` = (min, max) pixels; crop_h and crop_w are drawn
      independently from [min(min, H), min(max, H)] and [min(min, W), min(max, W)].
    - ``'relative'``: ``crop_size`` = (w_ratio, h_ratio) -> (H * h_ratio, W * w_ratio).
    - ``'relative_range'``: ``crop_size`` = (min_h_ratio, min_w_ratio); each ratio is
      drawn from [min_ratio, 1].

    Its top-left corner is uniform over the positions that keep it inside the image. A box
    survives if any part of it lies inside the window; labels, ignore flags and masks of
    the dropped boxes go with them. Returns None (so the dataset picks another sample) when
    no box survives, unless ``allow_negative_crop``.

    ``gt_bboxes`` may be a box object or a float32 array [N, 4] and keeps its kind. The
    translation [[1, 0, -x0], [0, 1, -y0], [0, 0, 1]] of the window's corner (x0, y0) is
    composed onto ``homography_matrix``.

    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``, ``gt_masks``, ``gt_seg_map``, ``gt_instances_ids``.
    Added keys: ``homography_matrix``.

    Args:
        crop_size (tuple): Window size or ratios, see above.
        crop_type (str): One of 'absolute', 'absolute_range', 'relative',
            'relative_range'. Defaults to 'absolute'.
        allow_negative_crop (bool): Keep a crop that contains no box. Defaults to False.
        recompute_bbox (bool): Replace the boxes by the tight boxes of the cropped masks.
            Defaults to False.
        bbox_clip_border (bool): Clip boxes to the window. Defaults to True.
    """

    def __init__(self,
                 crop_size: tuple,
                 crop_type: str = 'absolute',
                 allow_negative_crop: bool = False,
                 recompute_bbox: bool = False,
                 bbox_clip_border: bool = True) -> None:
        if crop_type not in _CROP_TYPES:
            raise ValueError(f'RandomCrop: `crop_type` must be one of {_CROP_TYPES}, '
                             f'got {crop_type!r}.')
        if not isinstance(crop_size, (tuple, list)) or len(crop_size) != 2:
            raise TypeError(f'RandomCrop: `crop_size` must be a pair, got {crop_size!r}.')
        if crop_type.startswith('absolute'):
            if not all(isinstance(s, int) and s > 0 for s in crop_size):
                raise TransformArgError(f'RandomCrop: an {crop_type!r} `crop_size` must be '
                                        f'two positive ints, got {crop_size!r}.')
            if crop_type == 'absolute_range' and crop_size[0] > crop_size[1]:
                raise TransformArgError('RandomCrop: an absolute_range `crop_size` is (min, '
                                        f'max) with min <= max, got {crop_size!r}.')
        elif not all(0 < s <= 1 for s in crop_size):
            raise TransformArgError(f'RandomCrop: a {crop_type!r} `crop_size` must be two '
                                    f'ratios in (0, 1], got {crop_size!r}.')
        self.crop_size = crop_size  # kept as given: it shows in the repr
        self.crop_type = crop_type
        self.allow_negative_crop = allow_negative_crop
        self.recompute_bbox = recompute_bbox
        self.bbox_clip_border = bbox_clip_border

    @cache_randomness
    def _get_crop_size(self, image_size: Tuple[int, int]) -> Tuple[int, int]:
        """(crop_h, crop_w) in pixels for an image of size ``image_size`` = (H, W)."""
        h, w = image_size
        if self.crop_type == 'absolute':
            return min(self.crop_size[1], h), min(self.crop_size[0], w)
        if self.crop_type == 'absolute_range':
            low, high = self.crop_size
            return (np.random.randint(min(h, low), min(h, high) + 1),
                    np.random.randint(min(w, low), min(w, high) + 1))
        if self.crop_type == 'relative':
            w_ratio, h_ratio = self.crop_size
        else:  # relative_range
            min_ratios = np.asarray(self.crop_size, dtype=np.float32)
            h_ratio, w_ratio = min_ratios + np.random.rand(2) * (1 - min_ratios)
        return int(h * h_ratio + 0.5), int(w * w_ratio + 0.5)

    @cache_randomness
    def _rand_offset(self, margin: Tuple[int, int]) -> Tuple[int, int]:
        """Top-left corner (y, x) drawn uniformly from [0, margin_h] x [0, margin_w]."""
        margin_h, margin_w = margin
        return np.random.randint(0, margin_h + 1), np.random.randint(0, margin_w + 1)

    @autocast_box_type()
    def transform(self, results: dict) -> Optional[dict]:
        """Crop ``results`` in place.

        Args:
            results (dict): Pipeline results with ``img``.

        Returns:
            dict | None: The cropped results, or None when no box is left and
            ``allow_negative_crop`` is False.
        """
        if 'img' not in results:
            raise MissingResultKeyError("RandomCrop needs results['img'] (run "
                                        'LoadImageFromFile first).')
        img = results['img']
        crop_h, crop_w = self._get_crop_size(img.shape[:2])
        off_y, off_x = self._rand_offset((max(img.shape[0] - crop_h, 0),
                                          max(img.shape[1] - crop_w, 0)))
        window = np.array([off_x, off_y, off_x + crop_w, off_y + crop_h])
        # Recorded before the boxes are checked, as in mmdetection.
        record_homography(results, np.array([[1, 0, -off_x], [0, 1, -off_y], [0, 0, 1]],
                                            dtype=np.float32))

        img = img[off_y:off_y + crop_h, off_x:off_x + crop_w, ...]
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        if results.get('gt_bboxes') is not None:
            if self._crop_instances(results, window) is None:
                return None
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = results['gt_seg_map'][off_y:off_y + crop_h,
                                                          off_x:off_x + crop_w]
        return results

    def _crop_instances(self, results: dict, window: np.ndarray) -> Optional[dict]:
        """Move boxes into window coordinates and keep the instances that touch it."""
        img_shape = results['img_shape']
        bboxes = results['gt_bboxes']
        bboxes.translate_([-int(window[0]), -int(window[1])])
        if self.bbox_clip_border:
            bboxes.clip_(img_shape)
        # Any overlap with the window counts; a clipped box outside it has collapsed
        # onto its border and fails the strict inequalities.
        keep = bboxes.is_inside(img_shape).numpy()
        if not keep.any() and not self.allow_negative_crop:
            return None
        results['gt_bboxes'] = bboxes[keep]
        for key in ('gt_ignore_flags', 'gt_bboxes_labels', 'gt_instances_ids'):
            if results.get(key) is not None:
                results[key] = results[key][keep]
        if results.get('gt_masks') is not None:
            results['gt_masks'] = results['gt_masks'][keep.nonzero()[0]].crop(window)
            if self.recompute_bbox:
                box_type = type(results['gt_bboxes'])
                mask_boxes = results['gt_masks'].get_bboxes()
                results['gt_bboxes'] = mask_boxes if isinstance(mask_boxes, box_type) \
                    else box_type(mask_boxes)
        return results

    def __repr__(self) -> str:
        # mmdetection's format: crop_type without quotes.
        return (f'{self.__class__.__name__}(crop_size={self.crop_size}, '
                f'crop_type={self.crop_type}, '
                f'allow_negative_crop={self.allow_negative_crop}, '
                f'recompute_bbox={self.recompute_bbox}, '
                f'bbox_clip_border={self.bbox_clip_border})')
