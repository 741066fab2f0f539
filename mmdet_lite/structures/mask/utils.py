"""Conversions between polygons, bitmaps, RLE and boxes."""
import warnings
from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from torch import Tensor


def _decode_rle(rle: dict) -> np.ndarray:
    """Decode one RLE into a bool mask [H, W], hiding pycocotools' numpy-2 copy warning."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return mask_util.decode(rle).astype(bool)


def polygon_to_bitmap(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise the polygons of one object with COCO's rules (pycocotools).

    Args:
        polygons (Sequence[np.ndarray]): Polygons of one object, each a flat array
            [x0, y0, x1, y1, ...] of length 2*K (K >= 3).
        height (int): Height of the output mask.
        width (int): Width of the output mask.

    Returns:
        np.ndarray: Bool mask of shape [height, width], the union of the polygons.
    """
    polys = [np.asarray(p, dtype=np.float64).ravel().tolist() for p in polygons]
    polys = [p for p in polys if len(p) >= 6]
    if not polys:
        return np.zeros((height, width), dtype=bool)
    rles = mask_util.frPyObjects(polys, height, width)
    return _decode_rle(mask_util.merge(rles))


def segmentation_to_bitmap(segmentation: Union[list, dict], height: int,
                           width: int) -> np.ndarray:
    """Decode one COCO ``segmentation`` field into a mask.

    Args:
        segmentation (list | dict): Polygon list (``[[x0, y0, ...], ...]``), uncompressed RLE
            (``counts`` a list) or compressed RLE (``counts`` a str/bytes).
        height (int): Image height.
        width (int): Image width.

    Returns:
        np.ndarray: Bool mask of shape [height, width].
    """
    if isinstance(segmentation, (list, tuple)):
        return polygon_to_bitmap(segmentation, height, width)
    if not isinstance(segmentation, dict) or 'counts' not in segmentation:
        raise TypeError('segmentation must be a polygon list or an RLE dict with "counts", '
                        f'but got {type(segmentation).__name__}')
    rle = segmentation
    if isinstance(rle['counts'], list):
        rle = mask_util.frPyObjects(rle, height, width)
    return _decode_rle(rle)


def bitmap_to_polygon(bitmap: np.ndarray) -> Tuple[List[np.ndarray], bool]:
    """Trace the contours of a binary mask with OpenCV.

    Args:
        bitmap (np.ndarray): Mask of shape [H, W] (any dtype; non-zero is foreground).

    Returns:
        tuple[list[np.ndarray], bool]: The contours, each an int array [K, 2] of (x, y) points,
        and whether the mask has holes (a contour with a parent in the 2-level hierarchy).
    """
    bitmap = np.ascontiguousarray(bitmap).astype(np.uint8)
    if bitmap.ndim != 2:
        raise ValueError(f'bitmap must have shape [H, W], but got {bitmap.shape}')
    # RETR_CCOMP gives outer boundaries and their holes, CHAIN_APPROX_NONE keeps every pixel.
    contours, hierarchy = cv2.findContours(bitmap, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)[-2:]
    if hierarchy is None:
        return [], False
    with_hole = bool((hierarchy.reshape(-1, 4)[:, 3] >= 0).any())
    return [c.reshape(-1, 2) for c in contours], with_hole


def clip_polygon(polygon: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
    """Clip one polygon to the rectangle [x1, x2] x [y1, y2] (Sutherland-Hodgman).

    The clip window is convex, so the result covers exactly the part of the polygon inside it.

    Args:
        polygon (np.ndarray): Flat array [x0, y0, x1, y1, ...].
        x1, y1, x2, y2 (float): The clip rectangle.

    Returns:
        np.ndarray: The clipped polygon as a flat float64 array; length 0 if nothing is inside.
    """
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    # Each edge: (axis, bound, keep_if_greater).
    for axis, bound, keep_greater in ((0, x1, True), (0, x2, False), (1, y1, True),
                                      (1, y2, False)):
        if len(points) == 0:
            break
        inside = points[:, axis] >= bound if keep_greater else points[:, axis] <= bound
        out = []
        for i in range(len(points)):
            cur, prev = points[i], points[i - 1]
            cur_in, prev_in = inside[i], inside[i - 1]
            if cur_in != prev_in:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append(prev + t * (cur - prev))
            if cur_in:
                out.append(cur)
        points = np.array(out, dtype=np.float64).reshape(-1, 2)
    return points.ravel()


def polygon_area(polygon: np.ndarray) -> float:
    """Area of one simple polygon (flat [x0, y0, ...] array) by the shoelace formula."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def encode_mask_results(
        mask_results: Union[Sequence[np.ndarray], np.ndarray, Tensor]) -> List[dict]:
    """Encode binary masks as COCO run-length encodings.

    Args:
        mask_results (Sequence[np.ndarray] | np.ndarray | Tensor): Masks [N, H, W] (or a list
            of N arrays [H, W]); non-zero is foreground.

    Returns:
        list[dict]: One RLE dict per mask with ``size`` [H, W] and ``counts`` as a str, ready
        for ``json.dump`` and for ``pycocotools.mask.decode``.
    """
    if isinstance(mask_results, Tensor):
        mask_results = mask_results.detach().cpu().numpy()
    encoded = []
    for mask in mask_results:
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError('each mask in mask_results must have shape [H, W], '
                             f'but got {mask.shape}')
        rle = mask_util.encode(np.asfortranarray(mask[:, :, None], dtype=np.uint8))[0]
        rle['counts'] = rle['counts'].decode('utf-8')
        encoded.append(rle)
    return encoded


def mask2bbox(masks: Tensor) -> Tensor:
    """Tight boxes around binary masks.

    Args:
        masks (Tensor): Masks of shape [N, H, W].

    Returns:
        Tensor: Float boxes [N, 4] (x1, y1, x2, y2) with exclusive right/bottom edges; all
        zeros for empty masks.
    """
    n = masks.shape[0]
    bboxes = masks.new_zeros((n, 4), dtype=torch.float32)
    x_any = masks.any(dim=1)  # [N, W]
    y_any = masks.any(dim=2)  # [N, H]
    for i in range(n):
        xs = torch.where(x_any[i])[0]
        ys = torch.where(y_any[i])[0]
        if len(xs) > 0 and len(ys) > 0:
            bboxes[i] = bboxes.new_tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])
    return bboxes
