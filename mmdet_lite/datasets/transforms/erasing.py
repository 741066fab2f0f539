"""Erase random rectangles of the image: CutOut (image only) and RandomErasing (with labels).

Rectangles are (x1, y1, x2, y2) in pixels, x2/y2 exclusive, drawn with ``np.random``.
"""
from typing import List, Optional, Tuple, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes, autocast_box_type
from mmdet_lite.structures.mask import BitmapMasks
from .transform_arg_errors import check_arg

FillValue = Union[int, float, Tuple[float, ...]]


@TRANSFORMS.register_module()
class CutOut(BaseTransform):
    """Fill random rectangles of the image with a constant (`Cutout
    <https://arxiv.org/abs/1708.04552>`_).

    Per call, the number of holes is drawn from [n_holes[0], n_holes[1]]; each hole gets a
    random top-left corner (x1 in [0, W), y1 in [0, H)) and a size picked from the candidates,
    and is cut at the image border. Boxes and masks are not changed.

    Required keys: ``img``. Modified keys: ``img`` (in place).

    Args:
        n_holes (int | tuple[int, int]): Number of holes, or a closed range of it.
        cutout_shape (tuple[int, int] | list[tuple[int, int]], optional): Hole size
            (w, h) in pixels, or candidates for it. Defaults to None.
        cutout_ratio (tuple[float, float] | list[tuple[float, float]], optional): Hole size
            as a fraction (w, h) of the image size, or candidates. Exactly one of
            ``cutout_shape`` and ``cutout_ratio`` must be given. Defaults to None.
        fill_in (tuple[number, number, number]): Value written into the holes.
            Defaults to (0, 0, 0).
    """

    def __init__(self,
                 n_holes: Union[int, Tuple[int, int]],
                 cutout_shape: Optional[Union[Tuple[int, int], List[Tuple[int, int]]]] = None,
                 cutout_ratio: Optional[Union[Tuple[float, float],
                                              List[Tuple[float, float]]]] = None,
                 fill_in: Tuple[float, float, float] = (0, 0, 0)) -> None:
        check_arg((cutout_shape is None) != (cutout_ratio is None),
                  'CutOut: give exactly one of cutout_shape and cutout_ratio, got '
                  f'cutout_shape={cutout_shape!r} and cutout_ratio={cutout_ratio!r}.')
        candidates = cutout_shape if cutout_ratio is None else cutout_ratio
        check_arg(isinstance(candidates, (list, tuple)),
                  'CutOut: cutout_shape / cutout_ratio must be a tuple or a list of tuples, '
                  f'got {candidates!r}.')
        if isinstance(n_holes, tuple):
            check_arg(len(n_holes) == 2 and 0 <= n_holes[0] < n_holes[1],
                      'CutOut: n_holes as a tuple must be (min, max) with 0 <= min < max, '
                      f'got {n_holes!r}.')
        else:
            n_holes = (n_holes, n_holes)
        self.n_holes = n_holes
        self.fill_in = fill_in
        self.with_ratio = cutout_ratio is not None
        self.candidates = candidates if isinstance(candidates, list) else [candidates]

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Fill the holes in ``results['img']``.

        Args:
            results (dict): Pipeline results with ``img`` ([H, W, C]).

        Returns:
            dict: The same dict.
        """
        h, w = results['img'].shape[:2]
        n_holes = np.random.randint(self.n_holes[0], self.n_holes[1] + 1)
        for _ in range(n_holes):
            x1 = np.random.randint(0, w)
            y1 = np.random.randint(0, h)
            size = self.candidates[np.random.randint(0, len(self.candidates))]
            if self.with_ratio:
                cut_w, cut_h = int(size[0] * w), int(size[1] * h)
            else:
                cut_w, cut_h = size
            x2 = np.clip(x1 + cut_w, 0, w)
            y2 = np.clip(y1 + cut_h, 0, h)
            results['img'][y1:y2, x1:x2, :] = self.fill_in
        return results

    def __repr__(self) -> str:
        size_arg = 'cutout_ratio' if self.with_ratio else 'cutout_shape'
        return (f'{self.__class__.__name__}(n_holes={self.n_holes}, '
                f'{size_arg}={self.candidates}, fill_in={self.fill_in})')


@TRANSFORMS.register_module()
class RandomErasing(BaseTransform):
    """Erase random rectangles of the image and of its annotations (`Random Erasing
    <https://arxiv.org/abs/1708.04896>`_).

    Per call, the number of patches is drawn from [n_patches[0], n_patches[1]]. A patch's
    height and width are ``int(H * r_h)`` and ``int(W * r_w)``, with r drawn uniformly from
    ``ratio`` (one r for both sides when ``squared``), and it lies wholly inside the image.
    Then:

    - the image pixels of every patch are set to ``img_border_value``;
    - a box is dropped (with its label, ignore flag and mask) when the patches cover at
      least ``bbox_erased_thr`` of its area (the overlaps of the patches are summed);
    - the remaining bitmap masks are set to ``mask_border_value`` inside the patches;
    - the semantic map is set to ``seg_ignore_label`` inside the patches.

    Required keys: ``img``, ``img_shape``; optional ``gt_bboxes`` (HorizontalBoxes or a
    float32 [N, 4] array), ``gt_bboxes_labels``, ``gt_ignore_flags``, ``gt_masks``
    (BitmapMasks), ``gt_seg_map``.
    Modified keys: ``img``, ``gt_bboxes``, ``gt_bboxes_labels``, ``gt_ignore_flags``,
    ``gt_masks``, ``gt_seg_map``.

    Args:
        n_patches (int | tuple[int, int]): Number of patches, or a closed range of it.
        ratio (float | tuple[float, float]): Patch side as a fraction of the image side,
            or a range [low, high) to draw it from.
        squared (bool): Draw one ratio for both sides. Defaults to True.
        bbox_erased_thr (float): Covered fraction of a box's area from which it is
            dropped. Defaults to 0.9.
        img_border_value (int | float | tuple): Image fill, one value or one per channel.
            Defaults to 128.
        mask_border_value (int): Mask fill. Defaults to 0.
        seg_ignore_label (int): Semantic map fill; should be the semantic head's ignore
            label. Defaults to 255.
    """

    def __init__(self,
                 n_patches: Union[int, Tuple[int, int]],
                 ratio: Union[float, Tuple[float, float]],
                 squared: bool = True,
                 bbox_erased_thr: float = 0.9,
                 img_border_value: FillValue = 128,
                 mask_border_value: int = 0,
                 seg_ignore_label: int = 255) -> None:
        if isinstance(n_patches, tuple):
            check_arg(len(n_patches) == 2 and 0 <= n_patches[0] < n_patches[1],
                      'RandomErasing: n_patches as a tuple must be (min, max) with '
                      f'0 <= min < max, got {n_patches!r}.')
        else:
            n_patches = (n_patches, n_patches)
        if isinstance(ratio, tuple):
            check_arg(len(ratio) == 2 and 0 <= ratio[0] < ratio[1] <= 1,
                      'RandomErasing: ratio as a tuple must be (low, high) with '
                      f'0 <= low < high <= 1, got {ratio!r}.')
        else:
            ratio = (ratio, ratio)
        self.n_patches = n_patches
        self.ratio = ratio
        self.squared = squared
        self.bbox_erased_thr = bbox_erased_thr
        self.img_border_value = img_border_value
        self.mask_border_value = mask_border_value
        self.seg_ignore_label = seg_ignore_label

    def _random_ratio(self) -> float:
        low, high = self.ratio
        return np.random.random() * (high - low) + low

    @cache_randomness
    def _get_patches(self, img_shape: Tuple[int, int]) -> np.ndarray:
        """Draw the patches of one call.

        Args:
            img_shape (tuple[int, int]): (H, W).

        Returns:
            np.ndarray: int [P, 4] patches (x1, y1, x2, y2).
        """
        height, width = img_shape[:2]
        patches = []
        for _ in range(np.random.randint(self.n_patches[0], self.n_patches[1] + 1)):
            ratio_h = self._random_ratio()
            ratio_w = ratio_h if self.squared else self._random_ratio()
            patch_h, patch_w = int(height * ratio_h), int(width * ratio_w)
            x1 = np.random.randint(0, width - patch_w)
            y1 = np.random.randint(0, height - patch_h)
            patches.append([x1, y1, x1 + patch_w, y1 + patch_h])
        return np.array(patches, dtype=np.int64).reshape(-1, 4)

    def _erase_bboxes(self, results: dict, patches: np.ndarray) -> None:
        """Drop the instances whose boxes the patches cover enough."""
        boxes = results['gt_bboxes']
        check_arg(isinstance(boxes, HorizontalBoxes),
                  'RandomErasing: gt_bboxes must be HorizontalBoxes (or an [N, 4] array), '
                  f'got {type(boxes).__name__}.')
        boxes = boxes.numpy()
        top_left = np.maximum(boxes[:, None, :2], patches[None, :, :2])
        bottom_right = np.minimum(boxes[:, None, 2:], patches[None, :, 2:])
        overlap_wh = np.clip(bottom_right - top_left, 0, None)
        covered = (overlap_wh[..., 0] * overlap_wh[..., 1]).sum(-1)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = covered / (areas + 1e-7) < self.bbox_erased_thr
        results['gt_bboxes'] = HorizontalBoxes(boxes[keep])
        for key in ('gt_bboxes_labels', 'gt_ignore_flags', 'gt_masks'):
            if results.get(key) is not None:
                results[key] = results[key][keep]

    def _erase_masks(self, results: dict, patches: np.ndarray) -> None:
        masks = results['gt_masks']
        if not isinstance(masks, BitmapMasks):
            raise TypeError('RandomErasing erases BitmapMasks only, got '
                            f'{type(masks).__name__}; convert polygons with to_bitmap().')
        for x1, y1, x2, y2 in patches:
            masks.masks[:, y1:y2, x1:x2] = self.mask_border_value

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Erase the patches from the image and annotations, in place.

        Args:
            results (dict): Pipeline results.

        Returns:
            dict: The same dict.
        """
        patches = self._get_patches(results['img_shape'])
        for x1, y1, x2, y2 in patches:
            results['img'][y1:y2, x1:x2, :] = self.img_border_value
        if results.get('gt_bboxes') is not None:
            self._erase_bboxes(results, patches)
        if results.get('gt_masks') is not None:
            self._erase_masks(results, patches)
        if results.get('gt_seg_map') is not None:
            for x1, y1, x2, y2 in patches:
                results['gt_seg_map'][y1:y2, x1:x2] = self.seg_ignore_label
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(n_patches={self.n_patches}, '
                f'ratio={self.ratio}, squared={self.squared}, '
                f'bbox_erased_thr={self.bbox_erased_thr}, '
                f'img_border_value={self.img_border_value}, '
                f'mask_border_value={self.mask_border_value}, '
                f'seg_ignore_label={self.seg_ignore_label})')
