"""SSD-style random crop whose window overlaps every box by at least a drawn IoU."""
from typing import Optional, Sequence, Union

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import HorizontalBoxes, autocast_box_type
from .transform_arg_errors import require_key

Number = Union[int, float]

_TRIES_PER_MODE = 50


@TRANSFORMS.register_module()
class MinIoURandomCrop(BaseTransform):
    """Crop a random window that keeps every box's IoU with it above a drawn threshold.

    Each attempt draws a mode from ``(1, *min_ious, 0)``: 1 keeps the image as it is;
    otherwise the mode is the minimum IoU and up to 50 windows are tried. A window has
    width in [min_crop_size * W, W), height in [min_crop_size * H, H), h / w in [0.5, 2],
    integer corners and non-zero size. It is accepted when the IoU of every box with it is
    at least the threshold and some box's centre lies strictly inside it; then the boxes
    whose centres are inside are kept (moved into window coordinates, clipped to it when
    ``bbox_clip_border``), with their labels, ignore flags and masks, and the image and
    semantic map are cropped. With no boxes at all, the first well-shaped window is used
    (and the empty masks take its size).
    When all 50 windows fail, a new mode is drawn. No homography is recorded (as in
    mmdetection).

    Required keys: ``img``, ``gt_bboxes``; optional ``gt_bboxes_labels``,
    ``gt_ignore_flags``, ``gt_masks``, ``gt_seg_map``.
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``, ``gt_masks``, ``gt_seg_map``.

    Args:
        min_ious (Sequence[float]): The IoU thresholds to draw from.
            Defaults to (0.1, 0.3, 0.5, 0.7, 0.9).
        min_crop_size (float): Smallest window side as a ratio of the image side.
            Defaults to 0.3.
        bbox_clip_border (bool): Clip the kept boxes to the window. Defaults to True.
    """

    def __init__(self,
                 min_ious: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
                 min_crop_size: float = 0.3,
                 bbox_clip_border: bool = True) -> None:
        self.min_ious = min_ious
        self.sample_mode = (1, *min_ious, 0)
        self.min_crop_size = min_crop_size
        self.bbox_clip_border = bbox_clip_border

    @cache_randomness
    def _random_mode(self) -> Number:
        """1 (no crop) or the minimum IoU of this attempt, uniformly from ``sample_mode``."""
        return np.random.choice(self.sample_mode)

    def _random_patch(self, h: int, w: int) -> Optional[np.ndarray]:
        """One candidate window [x1, y1, x2, y2] (ints) in an h x w image, or None.

        None when the drawn shape is too elongated (h / w outside [0.5, 2]) or collapses to a
        line once its corners are truncated to ints.
        """
        new_w = np.random.uniform(self.min_crop_size * w, w)
        new_h = np.random.uniform(self.min_crop_size * h, h)
        if new_h / new_w < 0.5 or new_h / new_w > 2:
            return None
        # As in mmdetection, uniform(low) draws between ``low`` and 1.0 (numpy's default
        # high), not between 0 and ``low``; kept so that seeded runs crop the same windows.
        left = np.random.uniform(w - new_w)
        top = np.random.uniform(h - new_h)
        patch = np.array((int(left), int(top), int(left + new_w), int(top + new_h)))
        if patch[2] == patch[0] or patch[3] == patch[1]:
            return None
        return patch

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Crop ``results`` in place (or leave it when the drawn mode is 1).

        Args:
            results (dict): Pipeline results with ``img`` and ``gt_bboxes``.

        Returns:
            dict: The same dict.
        """
        require_key(results, 'img', 'MinIoURandomCrop')
        require_key(results, 'gt_bboxes', 'MinIoURandomCrop')
        boxes = results['gt_bboxes']
        h, w = results['img'].shape[:2]
        while True:
            self.mode = self._random_mode()
            if self.mode == 1:
                return results
            min_iou = self.mode
            for _ in range(_TRIES_PER_MODE):
                patch = self._random_patch(h, w)
                if patch is None:
                    continue
                if len(boxes) == 0:
                    # Nothing to test the window against; the (empty) masks still take
                    # the window's size so that they match the image.
                    self._crop_instances(results, patch, np.zeros(0, dtype=bool))
                    self._crop_image_and_map(results, patch)
                    return results
                window = HorizontalBoxes(patch.reshape(1, 4).astype(np.float32))
                ious = boxes.overlaps(window, boxes).numpy().reshape(-1)
                if ious.min() < min_iou:
                    continue
                inside = _centers_inside(boxes, patch)
                if not inside.any():
                    continue
                self._crop_instances(results, patch, inside)
                self._crop_image_and_map(results, patch)
                return results

    def _crop_instances(self, results: dict, patch: np.ndarray, keep: np.ndarray) -> None:
        """Keep the instances ``keep`` and move their boxes and masks into the window."""
        boxes = results['gt_bboxes'][keep]
        boxes.translate_([-patch[0], -patch[1]])
        if self.bbox_clip_border:
            boxes.clip_([patch[3] - patch[1], patch[2] - patch[0]])
        results['gt_bboxes'] = boxes
        for key in ('gt_ignore_flags', 'gt_bboxes_labels'):
            if results.get(key) is not None:
                results[key] = results[key][keep]
        if results.get('gt_masks') is not None:
            results['gt_masks'] = results['gt_masks'][keep.nonzero()[0]].crop(patch)

    @staticmethod
    def _crop_image_and_map(results: dict, patch: np.ndarray) -> None:
        """Cut the window out of the image and the semantic map."""
        x1, y1, x2, y2 = (int(v) for v in patch)
        results['img'] = results['img'][y1:y2, x1:x2]
        results['img_shape'] = results['img'].shape[:2]
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = results['gt_seg_map'][y1:y2, x1:x2]

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_ious={self.min_ious}, '
                f'min_crop_size={self.min_crop_size}, '
                f'bbox_clip_border={self.bbox_clip_border})')


def _centers_inside(boxes, patch: np.ndarray) -> np.ndarray:
    """Bool [N]: box centre strictly inside the window [x1, y1, x2, y2]."""
    centers = boxes.centers.numpy()
    return ((centers[:, 0] > patch[0]) & (centers[:, 1] > patch[1]) &
            (centers[:, 0] < patch[2]) & (centers[:, 1] < patch[3]))
