"""YOLOX-style random affine warp: rotation, scaling, shear and translation in one matrix."""
import math
from typing import Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mmdet_lite.registry import TRANSFORMS
from mmdet_lite.structures.bbox import autocast_box_type
from .transform_arg_errors import check_arg


@TRANSFORMS.register_module()
class RandomAffine(BaseTransform):
    """Warp the image and boxes with a random affine matrix T @ Sh @ R @ S.

    Drawn uniformly, in this order: rotation angle in [-max_rotate_degree,
    max_rotate_degree] (R, counter-clockwise on screen for positive angles as the matrix
    [[cos, -sin], [sin, cos]] acts on y-down pixels); scale in ``scaling_ratio_range`` (S,
    about the origin); shear angles x then y in [-max_shear_degree, max_shear_degree]
    (Sh = [[1, tan(x)], [tan(y), 1]]); translation x, y in [-max_translate_ratio,
    max_translate_ratio] times the output width and height (T).

    The output is (H + 2 * border[1]) x (W + 2 * border[0]) (``border`` is negative after
    Mosaic to go back to the single-image size), filled with ``border_val`` where nothing
    maps. Box corners are projected and replaced by their axis-aligned hull, clipped to
    the output when ``bbox_clip_border``; boxes that no longer overlap the output are
    dropped with their labels and ignore flags. As in mmdetection 3.3, there is no other
    filtering (use FilterAnnotations for tiny boxes), instance masks are not supported
    (NotImplementedError when boxes are present) and no homography is recorded.

    Required keys: ``img``; optional ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``.
    Modified keys: ``img``, ``img_shape``, ``gt_bboxes``, ``gt_bboxes_labels``,
    ``gt_ignore_flags``.

    Args:
        max_rotate_degree (float): Largest rotation in degrees. Defaults to 10.0.
        max_translate_ratio (float): Largest shift as a ratio of the output side, in
            [0, 1]. Defaults to 0.1.
        scaling_ratio_range (tuple[float, float]): (min, max) scale, 0 < min <= max.
            Defaults to (0.5, 1.5).
        max_shear_degree (float): Largest shear angle in degrees. Defaults to 2.0.
        border (tuple[int, int]): (x, y) pixels added on each side of the output.
            Defaults to (0, 0).
        border_val (tuple[int, int, int]): Fill per channel. Defaults to (114, 114, 114).
        bbox_clip_border (bool): Clip boxes to the output. Defaults to True.
    """

    def __init__(self,
                 max_rotate_degree: float = 10.0,
                 max_translate_ratio: float = 0.1,
                 scaling_ratio_range: Tuple[float, float] = (0.5, 1.5),
                 max_shear_degree: float = 2.0,
                 border: Tuple[int, int] = (0, 0),
                 border_val: Tuple[int, int, int] = (114, 114, 114),
                 bbox_clip_border: bool = True) -> None:
        check_arg(0 <= max_translate_ratio <= 1,
                  f'RandomAffine: max_translate_ratio must be in [0, 1], '
                  f'got {max_translate_ratio}.')
        check_arg(scaling_ratio_range[0] <= scaling_ratio_range[1],
                  'RandomAffine: scaling_ratio_range must be (min, max) with min <= max, '
                  f'got {scaling_ratio_range}.')
        check_arg(scaling_ratio_range[0] > 0,
                  f'RandomAffine: scaling_ratio_range must be positive, got {scaling_ratio_range}.')
        self.max_rotate_degree = max_rotate_degree
        self.max_translate_ratio = max_translate_ratio
        self.scaling_ratio_range = scaling_ratio_range
        self.max_shear_degree = max_shear_degree
        self.border = border
        self.border_val = border_val
        self.bbox_clip_border = bbox_clip_border

    @cache_randomness
    def _get_random_homography_matrix(self, height: int, width: int) -> np.ndarray:
        """The float32 [3, 3] warp for an output of ``height`` x ``width``."""
        rotation = self._get_rotation_matrix(
            np.random.uniform(-self.max_rotate_degree, self.max_rotate_degree))
        scaling = self._get_scaling_matrix(np.random.uniform(*self.scaling_ratio_range[:2]))
        shear = self._get_shear_matrix(
            np.random.uniform(-self.max_shear_degree, self.max_shear_degree),
            np.random.uniform(-self.max_shear_degree, self.max_shear_degree))
        trans_x = np.random.uniform(-self.max_translate_ratio, self.max_translate_ratio) * width
        trans_y = np.random.uniform(-self.max_translate_ratio, self.max_translate_ratio) * height
        translation = self._get_translation_matrix(trans_x, trans_y)
        return translation @ shear @ rotation @ scaling

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Warp ``results`` in place.

        Args:
            results (dict): Pipeline results with ``img``.

        Returns:
            dict: The same dict.
        """
        img = results['img']
        height = img.shape[0] + self.border[1] * 2
        width = img.shape[1] + self.border[0] * 2
        warp_matrix = self._get_random_homography_matrix(height, width)

        bboxes = results.get('gt_bboxes')
        if bboxes is not None and len(bboxes) and 'gt_masks' in results:
            raise NotImplementedError('RandomAffine only supports bbox; results have '
                                      'gt_masks.')
        results['img'] = cv2.warpPerspective(img, warp_matrix, dsize=(width, height),
                                             borderValue=self.border_val)
        results['img_shape'] = results['img'].shape[:2]
        if bboxes is None or not len(bboxes):
            return results

        bboxes.project_(warp_matrix)
        if self.bbox_clip_border:
            bboxes.clip_([height, width])
        keep = bboxes.is_inside([height, width]).numpy()
        results['gt_bboxes'] = bboxes[keep]
        for key in ('gt_bboxes_labels', 'gt_ignore_flags'):
            if results.get(key) is not None:
                results[key] = results[key][keep]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(max_rotate_degree={self.max_rotate_degree}, '
                f'max_translate_ratio={self.max_translate_ratio}, '
                f'scaling_ratio_range={self.scaling_ratio_range}, '
                f'max_shear_degree={self.max_shear_degree}, border={self.border}, '
                f'border_val={self.border_val}, bbox_clip_border={self.bbox_clip_border})')

    @staticmethod
    def _get_rotation_matrix(rotate_degrees: float) -> np.ndarray:
        """[[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]] for the angle in degrees."""
        radian = math.radians(rotate_degrees)
        cos, sin = np.cos(radian), np.sin(radian)
        return np.array([[cos, -sin, 0.], [sin, cos, 0.], [0., 0., 1.]], dtype=np.float32)

    @staticmethod
    def _get_scaling_matrix(scale_ratio: float) -> np.ndarray:
        """Isotropic scaling about the origin."""
        return np.diag([scale_ratio, scale_ratio, 1.]).astype(np.float32)

    @staticmethod
    def _get_shear_matrix(x_shear_degrees: float, y_shear_degrees: float) -> np.ndarray:
        """[[1, tan(x), 0], [tan(y), 1, 0], [0, 0, 1]] for the angles in degrees."""
        tan_x = np.tan(math.radians(x_shear_degrees))
        tan_y = np.tan(math.radians(y_shear_degrees))
        return np.array([[1., tan_x, 0.], [tan_y, 1., 0.], [0., 0., 1.]], dtype=np.float32)

    @staticmethod
    def _get_translation_matrix(x: float, y: float) -> np.ndarray:
        """Shift by (x, y) pixels."""
        return np.array([[1., 0., x], [0., 1., y], [0., 0., 1.]], dtype=np.float32)
