"""BitmapMasks: instance masks stored as a dense uint8 array [N, H, W]."""
from typing import Callable, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import roi_align

from mmdet_lite.utils.util_random import RngLike, ensure_rng
from .base_masks import (FLIP_DIRECTIONS, TRANSLATE_DIRECTIONS, BaseInstanceMasks,
                         MaskTypeError, MaskValueError, check_direction)
from .utils import polygon_to_bitmap, segmentation_to_bitmap

CV2_INTERP = {
    'nearest': cv2.INTER_NEAREST,
    'bilinear': cv2.INTER_LINEAR,
    'bicubic': cv2.INTER_CUBIC,
    'area': cv2.INTER_AREA,
    'lanczos': cv2.INTER_LANCZOS4,
}
# Dtypes OpenCV's resize / warpAffine accept; others (bool, int64, ...) go through float64.
CV2_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


class BitmapMasks(BaseInstanceMasks):
    """Dense binary masks of N instances in an image of size (height, width).

    Unlike mmdetection, bool masks are stored as uint8 (OpenCV, used by the geometric ops,
    rejects bool arrays); any other dtype is kept.

    Args:
        masks (np.ndarray | list[np.ndarray] | Tensor): Masks [N, H, W], a list of N masks
            [H, W], or an empty list.
        height (int): Image height H.
        width (int): Image width W.

    Example:
        >>> masks = BitmapMasks(np.zeros((2, 10, 12), np.uint8), 10, 12)
        >>> masks.flip('horizontal').resize((20, 24)).to_ndarray().shape
        (2, 20, 24)
    """

    def __init__(self, masks: Union[np.ndarray, Sequence[np.ndarray], Tensor], height: int,
                 width: int) -> None:
        self.height = int(height)
        self.width = int(width)
        if isinstance(masks, Tensor):
            masks = masks.detach().cpu().numpy()
        if not isinstance(masks, (list, tuple, np.ndarray)):
            raise MaskTypeError('BitmapMasks masks must be an np.ndarray [N, H, W] or a list '
                                f'of [H, W] arrays, but got {type(masks).__name__}')
        if len(masks) == 0:
            self.masks = np.empty((0, self.height, self.width), dtype=np.uint8)
            return
        masks = np.stack([np.asarray(m) for m in masks]) if isinstance(masks, (list, tuple)) \
            else masks
        if masks.ndim != 3 or masks.shape[1:] != (self.height, self.width):
            raise MaskValueError(f'BitmapMasks masks must have shape [N, {self.height}, '
                                 f'{self.width}] to match height and width, but got '
                                 f'{masks.shape}')
        if masks.dtype == bool:
            # Stored as uint8 (mmdetection keeps bool), so that the OpenCV ops accept them.
            masks = masks.astype(np.uint8)
        self.masks = masks

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_polygons(cls, polygons: Sequence[Sequence[np.ndarray]], height: int,
                      width: int) -> 'BitmapMasks':
        """Rasterise per-object polygon lists (COCO ``segmentation`` polygons)."""
        masks = [polygon_to_bitmap(polys, height, width).astype(np.uint8) for polys in polygons]
        return cls(masks, height, width)

    @classmethod
    def from_segmentations(cls, segmentations: Sequence[Union[list, dict]], height: int,
                           width: int) -> 'BitmapMasks':
        """Decode COCO segmentations (polygon lists, uncompressed or compressed RLE)."""
        masks = [segmentation_to_bitmap(s, height, width).astype(np.uint8) for s in segmentations]
        return cls(masks, height, width)

    @classmethod
    def random(cls,
               num_masks: int = 3,
               height: int = 32,
               width: int = 32,
               dtype: type = np.uint8,
               rng: RngLike = None) -> 'BitmapMasks':
        """Random masks for demos and tests: each pixel is foreground with probability 0.9.

        Args:
            num_masks (int): Number of masks N. Defaults to 3.
            height (int): Mask height H. Defaults to 32.
            width (int): Mask width W. Defaults to 32.
            dtype (type): Dtype of the 0/1 values. Defaults to np.uint8 (bool is stored as
                uint8, see the class docstring).
            rng (None | int | np.random.RandomState): Seed or random state; None uses
                numpy's global one.

        Returns:
            BitmapMasks: Masks [N, H, W].

        Example:
            >>> BitmapMasks.random()
            BitmapMasks(num_masks=3, height=32, width=32)
        """
        rng = ensure_rng(rng)
        masks = (rng.rand(num_masks, height, width) > 0.1).astype(dtype)
        return cls(masks, height=height, width=width)

    @classmethod
    def cat(cls, masks: Sequence['BitmapMasks']) -> 'BitmapMasks':
        """Concatenate several BitmapMasks of the same image size along N.

        Args:
            masks (Sequence[BitmapMasks]): Non-empty sequence of masks [N_i, H, W].

        Returns:
            BitmapMasks: Masks [sum(N_i), H, W].
        """
        cls._check_cat_inputs(masks)
        merged = np.concatenate([m.masks for m in masks], axis=0)
        return cls(merged, *merged.shape[1:])

    def __getitem__(self, index) -> 'BitmapMasks':
        """Select masks by int, slice, list/array of ints or bool mask; returns BitmapMasks."""
        index = self._index_to_numpy(index)
        selected = self.masks[index].reshape(-1, self.height, self.width)
        return BitmapMasks(selected, self.height, self.width)

    # --- conversions --------------------------------------------------------------------
    def to_ndarray(self) -> np.ndarray:
        """Return the masks array [N, H, W] (the stored dtype, uint8 by default)."""
        return self.masks

    @property
    def areas(self) -> np.ndarray:
        """np.ndarray: Number of foreground pixels per mask, shape [N]."""
        return self.masks.sum((1, 2))

    # --- geometric ops ------------------------------------------------------------------
    def rescale(self, scale: Union[float, Tuple[int, int]],
                interpolation: str = 'nearest') -> 'BitmapMasks':
        """Resize keeping the aspect ratio (see :func:`mmcv.imrescale`)."""
        if len(self) == 0:
            new_w, new_h = mmcv.rescale_size((self.width, self.height), scale)
            return BitmapMasks([], new_h, new_w)
        rescaled = np.stack([
            _cv2_safe(lambda m: mmcv.imrescale(m, scale, interpolation=interpolation), m)
            for m in self.masks
        ])
        return BitmapMasks(rescaled, *rescaled.shape[1:])

    def resize(self, out_shape: Tuple[int, int], interpolation: str = 'nearest') -> 'BitmapMasks':
        """Resize every mask to ``out_shape`` (h, w) (see :func:`mmcv.imresize`)."""
        out_h, out_w = int(out_shape[0]), int(out_shape[1])
        if len(self) == 0:
            return BitmapMasks([], out_h, out_w)
        resized = np.stack([
            _cv2_safe(lambda m: mmcv.imresize(m, (out_w, out_h), interpolation=interpolation), m)
            for m in self.masks
        ])
        return BitmapMasks(resized, out_h, out_w)

    def flip(self, flip_direction: str = 'horizontal') -> 'BitmapMasks':
        """Mirror the masks: 'horizontal' (x), 'vertical' (y) or 'diagonal' (both)."""
        check_direction(flip_direction, FLIP_DIRECTIONS, 'flip_direction')
        axes = {'horizontal': (2, ), 'vertical': (1, ), 'diagonal': (1, 2)}[flip_direction]
        flipped = np.flip(self.masks, axis=axes).copy()
        return BitmapMasks(flipped, self.height, self.width)

    def pad(self, out_shape: Tuple[int, int], pad_val: int = 0) -> 'BitmapMasks':
        """Pad at the bottom/right to ``out_shape`` (h, w), filling with ``pad_val``."""
        out_h, out_w = int(out_shape[0]), int(out_shape[1])
        if out_h < self.height or out_w < self.width:
            raise MaskValueError(f'pad out_shape {tuple(out_shape)} must be at least the mask '
                                 f'size ({self.height}, {self.width})')
        padded = np.full((len(self), out_h, out_w), pad_val, dtype=self.masks.dtype)
        padded[:, :self.height, :self.width] = self.masks
        return BitmapMasks(padded, out_h, out_w)

    def crop(self, bbox: np.ndarray) -> 'BitmapMasks':
        """Crop to ``bbox`` (x1, y1, x2, y2), clipped to the image; at least 1 x 1."""
        x1, y1, w, h = _clip_crop_box(bbox, self.height, self.width)
        cropped = self.masks[:, y1:y1 + h, x1:x1 + w]
        # A box clipped to the bottom/right edge can leave fewer rows/cols than h/w.
        return BitmapMasks(cropped, *cropped.shape[1:])

    def crop_and_resize(self,
                        bboxes: Union[np.ndarray, Tensor],
                        out_shape: Tuple[int, int],
                        inds: Union[np.ndarray, Tensor],
                        device: Union[str, torch.device] = 'cpu',
                        interpolation: str = 'bilinear',
                        binarize: bool = True) -> 'BitmapMasks':
        """Sample mask ``inds[i]`` inside ``bboxes[i]`` onto an ``out_shape`` grid.

        Uses RoIAlign (aligned=True, adaptive sampling ratio, average pooling), as
        mmdetection does with mmcv's ``roi_align``: a box fully inside a mask gives all ones,
        a box half inside gives half ones.

        Args:
            bboxes (np.ndarray | Tensor): Boxes [K, 4] in image pixels.
            out_shape (tuple[int, int]): Target size (h, w), e.g. (28, 28).
            inds (np.ndarray | Tensor): Index [K] of the mask to sample for each box.
            device (str | torch.device): Device for the RoIAlign computation.
            interpolation (str): Kept for API compatibility; RoIAlign is bilinear.
            binarize (bool): Threshold at 0.5 (True) or keep soft values in [0, 1].

        Returns:
            BitmapMasks: K masks of size ``out_shape`` (uint8 if binarized, else float32).
        """
        out_h, out_w = int(out_shape[0]), int(out_shape[1])
        if len(self) == 0 or len(bboxes) == 0:
            return BitmapMasks([], out_h, out_w)
        bboxes = torch.as_tensor(bboxes, dtype=torch.float32, device=device).reshape(-1, 4)
        inds = torch.as_tensor(inds, dtype=torch.long, device=device).reshape(-1)
        if len(inds) != len(bboxes):
            raise MaskValueError(f'crop_and_resize needs one index per box, but got '
                                 f'{len(inds)} inds for {len(bboxes)} bboxes')
        # Each box samples its own selected mask, so the roi batch index is just 0..K-1.
        batch_idx = torch.arange(len(bboxes), dtype=bboxes.dtype, device=device)[:, None]
        rois = torch.cat([batch_idx, bboxes], dim=1)  # [K, 5]
        gt_masks = torch.from_numpy(np.ascontiguousarray(self.masks)).to(device)
        gt_masks = gt_masks.index_select(0, inds).to(bboxes.dtype)[:, None]  # [K, 1, H, W]
        targets = roi_align(gt_masks, rois, (out_h, out_w), spatial_scale=1.0, sampling_ratio=0,
                            aligned=True).squeeze(1)  # [K, out_h, out_w]
        if binarize:
            resized = (targets >= 0.5).cpu().numpy().astype(np.uint8)
        else:
            resized = targets.cpu().numpy()
        return BitmapMasks(resized, out_h, out_w)

    def expand(self, expanded_h: int, expanded_w: int, top: int, left: int) -> 'BitmapMasks':
        """Place the masks at (top, left) in an empty (expanded_h, expanded_w) canvas."""
        if top < 0 or left < 0 or top + self.height > expanded_h or \
                left + self.width > expanded_w:
            raise MaskValueError(f'expand: masks of size ({self.height}, {self.width}) at '
                                 f'(top={top}, left={left}) do not fit in '
                                 f'({expanded_h}, {expanded_w})')
        expanded = np.zeros((len(self), expanded_h, expanded_w), dtype=self.masks.dtype)
        expanded[:, top:top + self.height, left:left + self.width] = self.masks
        return BitmapMasks(expanded, expanded_h, expanded_w)

    def translate(self,
                  out_shape: Tuple[int, int],
                  offset: Union[int, float],
                  direction: str = 'horizontal',
                  border_value: Union[int, float] = 0,
                  interpolation: str = 'bilinear') -> 'BitmapMasks':
        """Shift the masks by ``offset`` pixels (positive: right/down) into ``out_shape``.

        As in mmdetection, masks of another size are first cropped / zero-padded at the
        bottom-right to ``out_shape``; ``border_value`` fills what the shift uncovers.
        """
        check_direction(direction, TRANSLATE_DIRECTIONS, 'direction')
        out_h, out_w = int(out_shape[0]), int(out_shape[1])
        masks = self.masks
        if masks.shape[1:] != (out_h, out_w):
            fitted = np.zeros((len(self), out_h, out_w), dtype=masks.dtype)
            min_h, min_w = min(out_h, self.height), min(out_w, self.width)
            fitted[:, :min_h, :min_w] = masks[:, :min_h, :min_w]
            masks = fitted
        dx, dy = (offset, 0) if direction == 'horizontal' else (0, offset)
        matrix = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
        return _warp_affine(masks, matrix, (out_h, out_w), border_value, interpolation)

    def shear(self,
              out_shape: Tuple[int, int],
              magnitude: Union[int, float],
              direction: str = 'horizontal',
              border_value: Union[int, float] = 0,
              interpolation: str = 'bilinear') -> 'BitmapMasks':
        """Shear: x' = x + magnitude * y (horizontal) or y' = y + magnitude * x (vertical)."""
        check_direction(direction, TRANSLATE_DIRECTIONS, 'direction')
        matrix = np.array([[1, magnitude, 0], [0, 1, 0]] if direction == 'horizontal' else
                          [[1, 0, 0], [magnitude, 1, 0]], dtype=np.float32)
        return _warp_affine(self.masks, matrix, out_shape, border_value, interpolation)

    def rotate(self,
               out_shape: Tuple[int, int],
               angle: Union[int, float],
               center: Optional[Tuple[float, float]] = None,
               scale: Union[int, float] = 1.0,
               border_value: Union[int, float] = 0,
               interpolation: str = 'bilinear') -> 'BitmapMasks':
        """Rotate clockwise by ``angle`` degrees about ``center`` (default: image centre)."""
        if center is None:
            center = ((self.width - 1) * 0.5, (self.height - 1) * 0.5)
        # mmcv convention: positive angle turns clockwise, hence the minus for OpenCV.
        matrix = cv2.getRotationMatrix2D(tuple(map(float, center)), -angle, scale)
        return _warp_affine(self.masks, matrix, out_shape, border_value, interpolation)


def _cv2_safe(fn: Callable[[np.ndarray], np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Apply the OpenCV-backed ``fn`` to ``mask``, via float64 for dtypes OpenCV rejects."""
    if mask.dtype.type in CV2_DTYPES:
        return fn(mask)
    return fn(mask.astype(np.float64)).astype(mask.dtype)


def _warp_affine(masks: np.ndarray, matrix: np.ndarray, out_shape: Tuple[int, int],
                 border_value: Union[int, float], interpolation: str) -> BitmapMasks:
    """Warp masks [N, H, W] by the 2 x 3 affine ``matrix`` into ``out_shape`` (h, w)."""
    out_h, out_w = int(out_shape[0]), int(out_shape[1])
    if len(masks) == 0:
        return BitmapMasks([], out_h, out_w)
    if interpolation not in CV2_INTERP:
        raise MaskValueError(f'interpolation must be one of {tuple(CV2_INTERP)}, '
                             f'but got {interpolation!r}')

    def warp(mask: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(mask, matrix, (out_w, out_h), flags=CV2_INTERP[interpolation],
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)

    # OpenCV warps at most 4 channels at once, so warp mask by mask.
    warped = np.stack([_cv2_safe(warp, m) for m in masks]).astype(masks.dtype)
    return BitmapMasks(warped, out_h, out_w)


def _clip_crop_box(bbox: np.ndarray, height: int, width: int) -> Tuple[int, int, int, int]:
    """Clip a crop box to the image and return integer (x1, y1, w, h) with w, h >= 1."""
    bbox = np.asarray(bbox)
    if bbox.shape != (4, ):
        raise MaskValueError(f'crop bbox must have shape (4,) as (x1, y1, x2, y2), '
                             f'but got {bbox.shape}')
    bbox = bbox.copy()
    bbox[0::2] = np.clip(bbox[0::2], 0, width)
    bbox[1::2] = np.clip(bbox[1::2], 0, height)
    x1, y1, x2, y2 = (int(v) for v in bbox)
    return x1, y1, max(x2 - x1, 1), max(y2 - y1, 1)
