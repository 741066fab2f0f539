"""PolygonMasks: instance masks stored as per-object lists of polygons."""
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from torch import Tensor

from mmdet_lite.utils.util_random import RngLike, ensure_rng
from .base_masks import (FLIP_DIRECTIONS, TRANSLATE_DIRECTIONS, BaseInstanceMasks,
                         MaskTypeError, MaskValueError, check_direction)
from .bitmap_masks import BitmapMasks
from .random_polygons import random_star_polygon
from .utils import clip_polygon, polygon_area, polygon_to_bitmap

Polygons = List[np.ndarray]  # the polygons of one object, each a flat [x0, y0, x1, y1, ...]


class PolygonMasks(BaseInstanceMasks):
    """Polygon masks of N instances in an image of size (height, width).

    Geometric ops move the polygon vertices; :meth:`to_ndarray` rasterises with pycocotools.

    Args:
        masks (list[list[np.ndarray]]): For each object, its polygons, each a flat array
            [x0, y0, x1, y1, ...] (plain lists of floats are converted).
        height (int): Image height H.
        width (int): Image width W.

    Example:
        >>> square = [np.array([0., 0., 4., 0., 4., 4., 0., 4.])]
        >>> PolygonMasks([square], 10, 12).areas
        array([16.])
    """

    def __init__(self, masks: Sequence[Sequence[Union[np.ndarray, Sequence[float]]]], height: int,
                 width: int) -> None:
        if not isinstance(masks, (list, tuple)):
            raise MaskTypeError('PolygonMasks masks must be a list (objects) of lists '
                                f'(polygons), but got {type(masks).__name__}')
        self.height = int(height)
        self.width = int(width)
        self.masks: List[Polygons] = []
        for i, polys in enumerate(masks):
            if not isinstance(polys, (list, tuple)):
                raise MaskTypeError(f'PolygonMasks masks[{i}] must be a list of polygons, '
                                    f'but got {type(polys).__name__}')
            obj = []
            for poly in polys:
                poly = poly if isinstance(poly, np.ndarray) else np.asarray(poly, np.float64)
                if poly.ndim != 1 or len(poly) % 2 != 0:
                    raise MaskValueError(f'PolygonMasks masks[{i}] has a polygon of shape '
                                         f'{poly.shape}; expected a flat [x0, y0, x1, y1, ...] '
                                         'array')
                obj.append(poly)
            self.masks.append(obj)

    @classmethod
    def random(cls,
               num_masks: int = 3,
               height: int = 32,
               width: int = 32,
               n_verts: int = 5,
               dtype: type = np.float32,
               rng: RngLike = None) -> 'PolygonMasks':
        """Random masks for demos and tests: one simple polygon per object.

        Args:
            num_masks (int): Number of objects N. Defaults to 3.
            height (int): Image height. Defaults to 32.
            width (int): Image width. Defaults to 32.
            n_verts (int): Vertices per polygon. Defaults to 5.
            dtype (type): Dtype of the vertex coordinates. Defaults to np.float32.
            rng (None | int | np.random.RandomState): Seed or random state; None uses
                numpy's global one.

        Returns:
            PolygonMasks: N objects, each ``[polygon]`` with a polygon of ``2 * n_verts``
            coordinates inside the image.

        Example:
            >>> PolygonMasks.random(rng=0)
            PolygonMasks(num_masks=3, height=32, width=32)
        """
        rng = ensure_rng(rng)
        masks = []
        for _ in range(num_masks):
            points = random_star_polygon(rng, n_verts) * [(width, height)]
            masks.append([points.astype(dtype).ravel()])
        return cls(masks, height, width)

    @classmethod
    def cat(cls, masks: Sequence['PolygonMasks']) -> 'PolygonMasks':
        """Concatenate several PolygonMasks of the same image size along N.

        Args:
            masks (Sequence[PolygonMasks]): Non-empty sequence of masks.

        Returns:
            PolygonMasks: All objects, in order, with the first item's height and width.
        """
        cls._check_cat_inputs(masks)
        merged = [obj for m in masks for obj in m.masks]
        return cls(merged, masks[0].height, masks[0].width)

    def __getitem__(self, index) -> 'PolygonMasks':
        """Select objects by int, slice, list/array of ints or bool mask; returns PolygonMasks."""
        index = self._index_to_numpy(index)
        if isinstance(index, np.ndarray):
            index = index.tolist()
        if isinstance(index, list):
            selected = [self.masks[i] for i in index]
        elif isinstance(index, slice):
            selected = self.masks[index]
        else:
            selected = [self.masks[int(index)]]
        return PolygonMasks(selected, self.height, self.width)

    def _map_points(self, fn, out_h: int, out_w: int) -> 'PolygonMasks':
        """Apply ``fn(xs, ys) -> (xs, ys)`` to every polygon; returns masks of size (h, w)."""
        mapped = []
        for obj in self.masks:
            new_obj = []
            for poly in obj:
                xs, ys = fn(poly[0::2].astype(np.float64), poly[1::2].astype(np.float64))
                new_poly = np.empty(len(poly), dtype=np.float64)
                new_poly[0::2], new_poly[1::2] = xs, ys
                new_obj.append(new_poly)
            mapped.append(new_obj)
        return PolygonMasks(mapped, out_h, out_w)

    # --- conversions --------------------------------------------------------------------
    def to_ndarray(self) -> np.ndarray:
        """Rasterise to a uint8 array [N, H, W]."""
        if len(self) == 0:
            return np.empty((0, self.height, self.width), dtype=np.uint8)
        return np.stack([polygon_to_bitmap(obj, self.height, self.width) for obj in self.masks
                         ]).astype(np.uint8)

    def to_bitmap(self) -> BitmapMasks:
        """Rasterise into :class:`BitmapMasks` of the same size."""
        return BitmapMasks(self.to_ndarray(), self.height, self.width)

    @property
    def areas(self) -> np.ndarray:
        """np.ndarray: Sum of the polygon areas of each object, shape [N] (holes not removed)."""
        return np.array([sum(polygon_area(p) for p in obj) for obj in self.masks],
                        dtype=np.float64)

    # --- geometric ops ------------------------------------------------------------------
    def rescale(self, scale: Union[float, Tuple[int, int]],
                interpolation: Optional[str] = None) -> 'PolygonMasks':
        new_w, new_h = mmcv.rescale_size((self.width, self.height), scale)
        return self.resize((new_h, new_w))

    def resize(self, out_shape: Tuple[int, int],
               interpolation: Optional[str] = None) -> 'PolygonMasks':
        out_h, out_w = int(out_shape[0]), int(out_shape[1])
        w_scale, h_scale = out_w / self.width, out_h / self.height
        return self._map_points(lambda xs, ys: (xs * w_scale, ys * h_scale), out_h, out_w)

    def flip(self, flip_direction: str = 'horizontal') -> 'PolygonMasks':
        check_direction(flip_direction, FLIP_DIRECTIONS, 'flip_direction')
        flip_x = flip_direction in ('horizontal', 'diagonal')
        flip_y = flip_direction in ('vertical', 'diagonal')
        w, h = self.width, self.height
        return self._map_points(
            lambda xs, ys: (w - xs if flip_x else xs, h - ys if flip_y else ys), h, w)

    def pad(self, out_shape: Tuple[int, int], pad_val: int = 0) -> 'PolygonMasks':
        """Padding at the bottom/right leaves vertices in place; only the canvas grows."""
        return PolygonMasks(self.masks, int(out_shape[0]), int(out_shape[1]))

    def crop(self, bbox: np.ndarray) -> 'PolygonMasks':
        """Clip every polygon to ``bbox`` and move it into the crop's frame."""
        bbox = np.asarray(bbox, dtype=np.float64)
        if bbox.shape != (4, ):
            raise MaskValueError(f'crop bbox must have shape (4,) as (x1, y1, x2, y2), '
                                 f'but got {bbox.shape}')
        x1, x2 = np.clip(bbox[0::2], 0, self.width)
        y1, y2 = np.clip(bbox[1::2], 0, self.height)
        w, h = max(x2 - x1, 1), max(y2 - y1, 1)
        cropped = []
        for obj in self.masks:
            new_obj = []
            for poly in obj:
                clipped = clip_polygon(poly, x1, y1, x2, y2)
                if len(clipped) < 6:  # fewer than 3 vertices: nothing left inside the crop
                    continue
                clipped[0::2] -= x1
                clipped[1::2] -= y1
                new_obj.append(clipped)
            # A degenerate placeholder keeps masks aligned with their boxes (mmdet does too);
            # it rasterises to an empty mask.
            cropped.append(new_obj or [np.zeros(6)])
        return PolygonMasks(cropped, int(h), int(w))

    def crop_and_resize(self,
                        bboxes: Union[np.ndarray, Tensor],
                        out_shape: Tuple[int, int],
                        inds: Union[np.ndarray, Tensor],
                        device: Union[str, torch.device] = 'cpu',
                        interpolation: str = 'bilinear',
                        binarize: bool = True) -> 'PolygonMasks':
        """Map polygon ``inds[i]`` from box ``bboxes[i]`` onto an ``out_shape`` canvas.

        Args:
            bboxes (np.ndarray | Tensor): Boxes [K, 4] in image pixels.
            out_shape (tuple[int, int]): Target size (h, w), e.g. (28, 28).
            inds (np.ndarray | Tensor): Index [K] of the object for each box.
            device, interpolation: Accepted for API compatibility with BitmapMasks.
            binarize (bool): Must be True: polygons only give binary masks.

        Returns:
            PolygonMasks: K objects on an ``out_shape`` canvas; ``to_ndarray()`` rasterises.
        """
        out_h, out_w = int(out_shape[0]), int(out_shape[1])
        if len(self) == 0:
            return PolygonMasks([], out_h, out_w)
        if not binarize:
            raise ValueError('PolygonMasks.crop_and_resize only makes binary masks; '
                             'binarize=False (soft_mask_target) needs BitmapMasks')
        if isinstance(bboxes, Tensor):
            bboxes = bboxes.detach().cpu().numpy()
        if isinstance(inds, Tensor):
            inds = inds.detach().cpu().numpy()
        bboxes = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
        inds = np.asarray(inds).reshape(-1)
        if len(inds) != len(bboxes):
            raise MaskValueError(f'crop_and_resize needs one index per box, but got '
                                 f'{len(inds)} inds for {len(bboxes)} bboxes')
        resized = []
        for bbox, ind in zip(bboxes, inds):
            # As mmdetection: boxes under 1 px count as 1 px, so the scale stays finite.
            w_scale = out_w / max(bbox[2] - bbox[0], 1.0)
            h_scale = out_h / max(bbox[3] - bbox[1], 1.0)
            obj = []
            for poly in self.masks[int(ind)]:
                new_poly = poly.astype(np.float64)  # astype copies
                new_poly[0::2] = (new_poly[0::2] - bbox[0]) * w_scale
                new_poly[1::2] = (new_poly[1::2] - bbox[1]) * h_scale
                obj.append(new_poly)
            resized.append(obj)
        return PolygonMasks(resized, out_h, out_w)

    def expand(self, expanded_h: int, expanded_w: int, top: int, left: int) -> 'PolygonMasks':
        return self._map_points(lambda xs, ys: (xs + left, ys + top), expanded_h, expanded_w)

    def translate(self,
                  out_shape: Tuple[int, int],
                  offset: Union[int, float],
                  direction: str = 'horizontal',
                  border_value=None,
                  interpolation=None) -> 'PolygonMasks':
        """Shift vertices by ``offset`` and clip them into ``out_shape``.

        ``border_value`` and ``interpolation`` mean nothing for polygons; as in mmdetection,
        ``border_value`` must be None or 0.
        """
        if border_value is not None and border_value != 0:
            raise MaskValueError('PolygonMasks.translate does not use border_value, it must '
                                 f'be None or 0, but got {border_value}')
        check_direction(direction, TRANSLATE_DIRECTIONS, 'direction')
        out_h, out_w = int(out_shape[0]), int(out_shape[1])
        dx, dy = (offset, 0) if direction == 'horizontal' else (0, offset)
        return self._map_points(
            lambda xs, ys: (np.clip(xs + dx, 0, out_w), np.clip(ys + dy, 0, out_h)), out_h, out_w)

    def shear(self,
              out_shape: Tuple[int, int],
              magnitude: float,
              direction: str = 'horizontal',
              border_value=0,
              interpolation='bilinear') -> 'PolygonMasks':
        """Shear vertices (same matrix as :meth:`BitmapMasks.shear`) and clip to ``out_shape``."""
        check_direction(direction, TRANSLATE_DIRECTIONS, 'direction')
        matrix = np.array([[1, magnitude, 0], [0, 1, 0]] if direction == 'horizontal' else
                          [[1, 0, 0], [magnitude, 1, 0]], dtype=np.float64)
        return self._affine(matrix, out_shape)

    def rotate(self,
               out_shape: Tuple[int, int],
               angle: float,
               center: Optional[Tuple[float, float]] = None,
               scale: float = 1.0,
               border_value=0,
               interpolation='bilinear') -> 'PolygonMasks':
        """Rotate vertices clockwise by ``angle`` degrees and clip them to ``out_shape``."""
        if center is None:
            center = ((self.width - 1) * 0.5, (self.height - 1) * 0.5)
        matrix = cv2.getRotationMatrix2D(tuple(map(float, center)), -angle, scale)
        return self._affine(matrix, out_shape)

    def _affine(self, matrix: np.ndarray, out_shape: Tuple[int, int]) -> 'PolygonMasks':
        out_h, out_w = int(out_shape[0]), int(out_shape[1])

        def fn(xs, ys):
            new_xs = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
            new_ys = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
            return np.clip(new_xs, 0, out_w), np.clip(new_ys, 0, out_h)

        return self._map_points(fn, out_h, out_w)
